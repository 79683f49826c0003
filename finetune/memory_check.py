"""Before the first step: a run whose planned peak cannot fit the memory it trains in is refused in one line.

The plan is ``lorastack plan``'s own model of the run (:func:`lorastack.finetune.memory.estimate_memory`), for the
run as resolved on this machine and at the data's longest batch (padded batches are as long as their longest
example; packed ones are always ``data.max_length``). Without the check, a GPU run fails at its first long batch
with CUDA's out-of-memory traceback, and a CPU run is killed by the kernel with no message at all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lorastack.errors import LorastackError
from lorastack.finetune.choices import RunChoices
from lorastack.finetune.config import TrainConfig
from lorastack.finetune.memory import GIB, ModelShape, RunShape, estimate_memory, largest_batch
from lorastack.finetune.memory_plan import run_shape

logger = logging.getLogger(__name__)

_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
"""cgroup v2, then v1: a container's memory limit, lower than the host's RAM that os.sysconf reports."""


REFUSE_OVER = 1.25
"""A run is refused when its plan is more than this times the memory there, warned about between 1x and this: the
plan came within 15% of the peaks measured on GPUs, and above the measured peak on the CPU (14.3 GiB planned for
a host RSS of 11.2 GiB, libraries included)."""


def host_memory_bytes() -> int:
    """This machine's RAM, or the container's memory limit where one is set and lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit in _CGROUP_LIMITS:
        try:
            text = limit.read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (v2) means no limit
            total = min(total, int(text))
        break
    return total


def check_memory_fits(config: TrainConfig, choices: RunChoices, base_path: Path, longest: int | None,
                      capacity: int) -> None:  # fmt: skip
    """Raise :class:`LorastackError` when the planned peak of this run is more than :data:`REFUSE_OVER` times
    ``capacity`` bytes, with the batch size (and the gradient checkpointing) that would fit; a warning with the same
    fixes when it is over by less; nothing when it fits, when ``training.memory_check`` is off, or when the model
    cannot be planned (logged)."""
    if not config.training.memory_check:
        return
    try:
        model = ModelShape.from_pretrained(base_path)
    except LorastackError as exc:
        logger.debug("Memory not checked: %s", exc)
        return
    seq_len = config.data.max_length if config.data.packing or longest is None else min(longest, config.data.max_length)
    run = run_shape(config, choices, model.model_type).model_copy(update={"seq_len": seq_len})
    plan = estimate_memory(model, run)
    if plan.total_bytes <= capacity:
        logger.debug("Planned %s; %.1f GiB here.", plan.summary, capacity / GIB)
        return
    where = "GPU" if choices.on_gpu else "this machine's RAM"
    message = (
        f"This run would need about {plan.total_bytes / GIB:.1f} GiB at its longest batch ({run.batch_size} x "
        f"{seq_len:,} tokens; the peak comes in {plan.phase}) and {where} holds {capacity / GIB:.1f} GiB."
    )
    fix = _fix(config, model, run, capacity, choices.on_gpu)
    if plan.total_bytes <= capacity * REFUSE_OVER:  # within the plan's error: it may still fit
        logger.warning("%s It may not fit. %s.", message, fix)
        return
    raise LorastackError(
        message,
        f"{fix}; `lorastack plan` shows where the memory goes, and training.memory_check=false starts anyway.",
    )


def _fix(config: TrainConfig, model: ModelShape, run: RunShape, capacity: int, on_gpu: bool) -> str:
    """What would fit: a smaller batch (the global batch kept through accumulation), checkpointing, or neither."""
    fixes = []
    fitting = largest_batch(model, run, capacity, limit=run.batch_size)
    steps = run.batch_size * config.training.grad_accum  # sequences per optimizer step, per process
    batch = max((b for b in range(1, fitting + 1) if steps % b == 0), default=0)  # one that keeps it exactly
    if batch:
        fixes.append(f"training.batch_size={batch} training.grad_accum={steps // batch} (the same global batch)")
    if not run.gradient_checkpointing:
        recomputed = run.model_copy(update={"gradient_checkpointing": True})
        need = estimate_memory(model, recomputed).total_bytes
        if need <= capacity:
            fixes.append(f"training.gradient_checkpointing=on ({need / GIB:.1f} GiB)")
    if not fixes:
        quantized = ", or train a quantized base (quantization=nf4)" if on_gpu and run.quantization == "none" else ""
        return f"Even one sequence does not fit: lower data.max_length{quantized}"
    return "What fits: " + ", or ".join(fixes)
