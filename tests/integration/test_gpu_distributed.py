"""`lorastack train --gpus 2` on two CUDA GPUs (NCCL): DDP and FSDP, bf16 LoRA and QLoRA, on a small random-init
Llama; each writes one adapter that loads on top of the base. Skipped without two GPUs (and QLoRA without
bitsandbytes)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lorastack

from .test_training import DATA, _random_llama

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_llama(tmp_path_factory.mktemp("llama"))


# The tool-aware ChatML template of the installed package (the random Llama's tokenizer renders no tool calls).
TEMPLATE = Path(lorastack.__file__).parent / "templates" / "chatml_tools.jinja"


def _run(small_llama: Path, out: Path, quantization: str, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "lorastack.cli", "train", f"base_model={small_llama}", f"data.path={DATA}",
            f"data.chat_template={TEMPLATE}", "data.max_length=256", "data.eval_fraction=0", "backend=peft",
            f"quantization={quantization}", "training.max_steps=4", "training.save_steps=2", "training.logging_steps=1",
            f"output_dir={out}", *extra]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _first_loss(stderr: str) -> float:
    return float(re.search(r"step 1/4  loss ([0-9.]+)", stderr).group(1))


@pytest.fixture(scope="module")
def one_gpu(small_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """The first step's loss on one GPU with the same global batch (4), per quantization: the same seed, so the same
    LoRA weights and the same 4 examples."""
    losses = {}
    for quantization in ("none", "nf4"):
        if quantization == "nf4" and importlib.util.find_spec("bitsandbytes") is None:
            continue
        out = tmp_path_factory.mktemp(f"one-{quantization}") / "run"
        losses[quantization] = _first_loss(_run(small_llama, out, quantization, "training.batch_size=4").stderr)
    return losses


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_two_gpus_train_one_adapter(small_llama: Path, tmp_path: Path, strategy: str, quantization: str,
                                    one_gpu: dict[str, float]) -> None:  # fmt: skip
    if quantization == "nf4" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("QLoRA needs bitsandbytes")
    out = tmp_path / "run"
    done = _run(small_llama, out, quantization, f"training.distributed={strategy}", "training.batch_size=2",
                "--gpus", "2")  # fmt: skip
    assert f"2 processes with {strategy.upper()}" in done.stderr
    # The loss from the last hidden state in chunks, under FSDP too (its root weights gathered by the forward), and
    # the same first-step loss as one GPU with the same global batch (bf16: 2%).
    assert "Loss: from the last hidden state in chunks" in done.stderr
    assert _first_loss(done.stderr) == pytest.approx(one_gpu[quantization], rel=2e-2)
    metrics = json.loads((out / "adapter" / "training_card.json").read_text())["metrics"]
    assert (metrics["processes"], metrics["distributed"], metrics["steps"]) == (2, strategy, 4)
    assert metrics["peak_gpu_memory_gib"] > 0
    assert not (out / "adapter" / "training_args.bin").exists()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(small_llama, dtype=torch.bfloat16)
    PeftModel.from_pretrained(base, out / "adapter")  # every LoRA weight present, shapes whole (not shards)
