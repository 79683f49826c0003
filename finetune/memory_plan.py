"""``lorastack plan``: a training config's peak memory, predicted for the run the trainer would make on a CUDA GPU.

The run shape is derived from the trainer's own resolution (:func:`lorastack.finetune.choices.resolve`) on a
described GPU, never from a second reading of the config's ``auto`` values.
"""

from __future__ import annotations

import dataclasses

from lorastack.finetune.choices import Machine, RunChoices, importable, optimizer_under, resolve
from lorastack.finetune.config import TrainConfig
from lorastack.finetune.loss import PLAIN_CAUSAL_LMS
from lorastack.finetune.memory import MemoryPlan, ModelShape, RunShape, estimate_memory, largest_batch
from lorastack.models import resolve_base_model


def planned_gpu(config: TrainConfig) -> Machine:
    """The GPU ``lorastack plan`` predicts for: CUDA with bfloat16 and bitsandbytes, and Unsloth where it is
    installed here or the config asks for it (planning an Unsloth run needs no Unsloth on this machine)."""
    return Machine.cuda_gpu(unsloth=config.backend == "unsloth" or importable("unsloth"))


def run_shape(config: TrainConfig, choices: RunChoices, model_type: str = "") -> RunShape:
    """The memory planner's shape of ``config`` run as ``choices`` says."""
    training = config.training
    return RunShape(
        batch_size=training.batch_size,
        seq_len=config.data.max_length,
        lora_r=config.lora.r,
        target_modules=config.lora.target_modules,
        quantization=choices.quantization,
        double_quant=config.double_quant,
        dtype=choices.compute_dtype,
        optimizer=choices.optimizer,
        gradient_checkpointing=choices.gradient_checkpointing,
        backend=choices.backend,
        # Unsloth's offloading is part of its own shape (estimate_memory's unsloth branch), not this switch.
        offload_activations=choices.offload_activations and choices.backend != "unsloth",
        fp32_unquantized=choices.upcasts_unquantized,
        chunked_loss=choices.chunked_loss and model_type in PLAIN_CAUSAL_LMS,
        processes=choices.processes,
        distributed=choices.distributed,
    )


def planned_run(
    config: TrainConfig, model_type: str = "", machine: Machine | None = None, gpus: int = 1, strategy: str = "none"
) -> RunShape:
    """The run ``config`` makes on ``machine`` (default: :func:`planned_gpu`), as the trainer resolves it there,
    on ``gpus`` GPUs with ``strategy`` (ddp or fsdp) when there are several."""
    choices = resolve(config, machine or planned_gpu(config), processes=gpus)
    if gpus > 1:
        optimizer = optimizer_under(strategy, config, choices.optimizer)
        choices = dataclasses.replace(choices, distributed=strategy, optimizer=optimizer)
    return run_shape(config, choices, model_type)


def plan_for(config: TrainConfig, gpu_gib: float, gpus: int = 1, strategy: str = "none") -> tuple[MemoryPlan, int]:
    """Peak-memory estimate (per GPU) for ``config`` and the largest batch size that fits ``gpu_gib``."""
    model = ModelShape.from_pretrained(resolve_base_model(config.base_model).path)
    run = planned_run(config, model.model_type, gpus=gpus, strategy=strategy)
    return estimate_memory(model, run), largest_batch(model, run, int(gpu_gib * 2**30))
