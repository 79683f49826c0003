"""`lorastack train --gpus 2` on two CUDA GPUs (NCCL): DDP and FSDP, bf16 LoRA and QLoRA, on a small random-init
Llama; each writes one adapter that loads on top of the base. Skipped without two GPUs (and QLoRA without
bitsandbytes)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .test_training import DATA, _random_llama

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_llama(tmp_path_factory.mktemp("llama"))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_two_gpus_train_one_adapter(small_llama: Path, tmp_path: Path, strategy: str, quantization: str) -> None:
    if quantization == "nf4" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("QLoRA needs bitsandbytes")
    out = tmp_path / "run"
    args = [sys.executable, "-m", "lorastack.cli", "train", f"base_model={small_llama}", f"data.path={DATA}",
            "data.max_length=256", "data.eval_fraction=0", "backend=peft", f"quantization={quantization}",
            f"training.distributed={strategy}", "training.max_steps=4", "training.save_steps=2",
            "training.batch_size=2", "training.logging_steps=1", f"output_dir={out}", "--gpus", "2"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"2 processes with {strategy.upper()}" in done.stderr
    metrics = json.loads((out / "adapter" / "training_card.json").read_text())["metrics"]
    assert (metrics["processes"], metrics["distributed"], metrics["steps"]) == (2, strategy, 4)
    assert metrics["peak_gpu_memory_gib"] > 0
    assert not (out / "adapter" / "training_args.bin").exists()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(small_llama, dtype=torch.bfloat16)
    PeftModel.from_pretrained(base, out / "adapter")  # every LoRA weight present, shapes whole (not shards)
