"""From a training config to the memory planner's shapes (``lorastack plan``)."""

from __future__ import annotations

from lorastack.finetune.backends import _has, offloads
from lorastack.finetune.config import TrainConfig
from lorastack.finetune.loss import PLAIN_CAUSAL_LMS
from lorastack.finetune.plan import MemoryPlan, ModelShape, RunShape, estimate_memory, largest_batch
from lorastack.models import resolve_base_model


def run_shape(config: TrainConfig, model_type: str = "") -> RunShape:
    """The run as it would go on a CUDA GPU: ``auto`` values resolved the way the trainer resolves them there."""
    backend = config.backend
    if backend in ("auto", "cpu"):
        backend = "unsloth" if backend == "auto" and _has("unsloth") and config.quantization != "int8" else "peft"
    quantization = "nf4" if config.quantization == "auto" else config.quantization
    dtype = "bfloat16" if config.compute_dtype == "auto" else config.compute_dtype
    training = config.training
    optimizer = "paged_adamw_8bit" if training.optimizer == "auto" else training.optimizer
    return RunShape(
        batch_size=training.batch_size,
        seq_len=config.data.max_length,
        lora_r=config.lora.r,
        target_modules=config.lora.target_modules,
        quantization=quantization,
        double_quant=config.double_quant,
        dtype=dtype,
        optimizer=optimizer,
        gradient_checkpointing=training.gradient_checkpointing != "off",
        backend=backend,
        # Unsloth's offloading is part of its own shape (estimate_memory's unsloth branch), not this switch.
        offload_activations=backend == "peft" and offloads(training.offload_activations, backend, quantization),
        fp32_unquantized=backend == "peft" and quantization != "none" and dtype == "float16",
        chunked_loss=training.chunked_loss and backend == "peft" and model_type in PLAIN_CAUSAL_LMS,
    )


def plan_for(config: TrainConfig, gpu_gib: float) -> tuple[MemoryPlan, int]:
    """Peak-memory estimate for ``config`` and the largest batch size that fits ``gpu_gib``."""
    model = ModelShape.from_pretrained(resolve_base_model(config.base_model).path)
    run = run_shape(config, model.model_type)
    return estimate_memory(model, run), largest_batch(model, run, int(gpu_gib * 2**30))
