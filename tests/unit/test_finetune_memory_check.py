"""The check before the first step: a run whose planned peak cannot fit is refused with what would fit."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from lorastack.finetune.choices import Machine, resolve
from lorastack.finetune.config import load_train_config
from lorastack.finetune.memory import GIB
from lorastack.finetune.memory_check import check_memory_fits, host_memory_bytes
from lorastack.errors import LorastackError
from lorastack.models import resolve_base_model

CPU = Machine(cuda=False)
GPU = Machine.cuda_gpu(unsloth=False)
BROAD = [  # the broad recipe's shape: padded batches of 16 x up to 1280 tokens, no checkpointing, r=16 everywhere
    "data.path=unused.jsonl", "data.max_length=1280", "data.packing=false", "training.batch_size=16", "lora.r=16",
    "training.gradient_checkpointing=off",
]  # fmt: skip


def _check(overrides: list[str], capacity_gib: float, longest: int | None = 1280, machine: Machine = CPU) -> None:
    config = load_train_config(None, overrides)
    base = resolve_base_model(config.base_model)
    check_memory_fits(config, resolve(config, machine), base.path, longest, int(capacity_gib * GIB))


def _suggested(message: str) -> list[str]:
    """The overrides a refusal's first fix names."""
    return re.search(r"What fits: (training\.batch_size=\d+ training\.grad_accum=\d+)", message).group(1).split()


@pytest.mark.parametrize("machine", [CPU, GPU], ids=["host", "cuda"])
def test_a_run_that_cannot_fit_is_refused_with_a_batch_that_does(machine: Machine, caplog) -> None:
    with pytest.raises(LorastackError) as refused:
        _check(BROAD, 12, machine=machine)
    message = str(refused.value)
    assert "at its longest batch (16 x 1,280 tokens" in message and "holds 12.0 GiB" in message
    fix = _suggested(message)
    batch, accum = (int(part.split("=")[1]) for part in fix)
    assert 1 <= batch < 16 and batch * accum == 16  # the global batch is kept exactly
    _check([*BROAD, *fix], 12, machine=machine)  # what it suggests passes the same check
    larger = min(b for b in (2, 4, 8, 16) if b > batch)  # the next batch size that keeps the global batch
    bigger = [*BROAD, f"training.batch_size={larger}", f"training.grad_accum={16 // larger}"]
    with caplog.at_level(logging.WARNING, "lorastack.finetune.memory_check"):
        try:
            _check(bigger, 12, machine=machine)
        except LorastackError:
            pass
        else:
            assert "It may not fit" in caplog.text  # over, within the plan's error: warned about


def test_checkpointing_is_offered_where_it_fits() -> None:
    with pytest.raises(LorastackError, match=r"training\.gradient_checkpointing=on \(\d+\.\d GiB\)") as refused:
        _check(BROAD, 12)
    need = float(re.search(r"checkpointing=on \((\d+\.\d) GiB", str(refused.value)).group(1))
    assert need <= 12
    _check([*BROAD, "training.gradient_checkpointing=on"], 12)


def test_padded_batches_are_planned_at_the_longest_example_packed_ones_at_max_length() -> None:
    _check(BROAD, 12, longest=64)  # short data: every padded batch is short
    with pytest.raises(LorastackError, match=r"16 x 1,280 tokens"):
        _check([*BROAD, "data.packing=true"], 12, longest=64)
    with pytest.raises(LorastackError, match=r"16 x 1,280 tokens"):
        _check(BROAD, 12, longest=None)  # streamed: the length is not known before the run


def test_a_plan_over_by_less_than_its_error_is_warned_about_not_refused(caplog) -> None:
    with caplog.at_level(logging.WARNING, "lorastack.finetune.memory_check"):
        _check(BROAD, 53.6 / 1.2)  # the plan: 53.6 GiB
    assert "It may not fit. What fits: training.batch_size=" in caplog.text
    with pytest.raises(LorastackError):
        _check(BROAD, 53.6 / 1.3)


def test_nothing_fits_says_so_and_the_check_can_be_turned_off() -> None:
    with pytest.raises(LorastackError, match="Even one sequence does not fit"):
        _check(BROAD, 0.25)
    _check([*BROAD, "training.memory_check=false"], 0.25)


def test_a_model_the_plan_cannot_shape_is_not_checked(tmp_path: Path) -> None:
    config = load_train_config(None, BROAD)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mixtral", "num_local_experts": 8}))
    check_memory_fits(config, resolve(config, CPU), tmp_path, 1280, 1)


def test_host_memory_is_this_machine_or_its_container() -> None:
    import os

    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < host_memory_bytes() <= physical
