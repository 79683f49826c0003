"""Helpers shared by the tests and the benchmarks (not used by the product itself)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def make_random_adapter(
    base_path: str, out: Path, rank: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj"), seed: int = 0
) -> Path:
    """Save a real PEFT LoRA adapter for ``base_path`` with random, non-zero A and B.

    peft's default initialisation zeroes B, which would leave the model's outputs unchanged; random B
    makes each adapter answer differently, so tests and benchmarks can tell them apart.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


def one_line_error(result: Any) -> str:
    """The single stderr line of a failed CLI run (a ``subprocess.CompletedProcess``); asserts there is no
    traceback and nothing else."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def vary_adapter(source: Path, out: Path, seed: int, scale: float = 1.0) -> Path:
    """A copy of adapter ``source`` with new random LoRA B weights (seeded): another adapter of the same shape in
    milliseconds, where :func:`make_random_adapter` loads the base model each time."""
    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "adapter_config.json", out / "adapter_config.json")
    generator = torch.Generator().manual_seed(seed)
    tensors = load_file(source / "adapter_model.safetensors")
    for key, tensor in tensors.items():
        if "lora_B" in key:
            tensors[key] = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * scale * tensor.std()
    save_file(tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
    return out
