"""Training backends: Unsloth (CUDA), peft + bitsandbytes (CUDA), and CPU LoRA/QLoRA.

Each returns a PEFT model ready to train and its tokenizer, loaded as :class:`RunChoices` says (which backend,
quantization, dtype ... :func:`lorastack.finetune.choices.resolve` picks them).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from lorastack.finetune.choices import RunChoices
from lorastack.finetune.config import TrainConfig
from lorastack.errors import LorastackError

logger = logging.getLogger(__name__)


def _torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def _target_modules(config: TrainConfig) -> list[str] | str:
    targets = config.lora.target_modules
    if targets == "all-linear":
        return targets
    return list(targets)


def _lora_config(config: TrainConfig, targets: list[str] | str) -> Any:
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        use_rslora=lora.use_rslora,
        init_lora_weights=True if lora.init == "default" else lora.init,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_model(config: TrainConfig, choices: RunChoices, model_path: str, max_length: int) -> tuple[Any, Any]:
    """The PEFT model to train and its tokenizer, loaded the way ``choices`` says."""
    if choices.backend == "unsloth":
        return _load_unsloth(config, choices, model_path, max_length)
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    dtype = _torch_dtype(choices.compute_dtype)
    quant = None
    if choices.quantization == "nf4":
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=config.double_quant,
            bnb_4bit_compute_dtype=dtype,
            # FSDP shards parameters of one floating dtype: 4-bit weights packed in the compute dtype shard with
            # the rest (the FSDP-QLoRA recipe); uint8, the default, cannot.
            bnb_4bit_quant_storage=dtype if choices.distributed == "fsdp" else torch.uint8,
        )
    elif choices.quantization == "int8":
        quant = BitsAndBytesConfig(load_in_8bit=True)
    device_map = {"": _device(choices)}
    model = AutoModelForCausalLM.from_pretrained(
        model_path, quantization_config=quant, dtype=dtype, device_map=device_map, attn_implementation=choices.attention
    )
    _freeze_base(model, choices.gradient_checkpointing, choices.offload_activations, choices.upcasts_unquantized)
    if config.lora.init_from is not None:  # an earlier adapter's weights, trainable, in its own shape
        try:
            model = PeftModel.from_pretrained(model, str(config.lora.init_from), is_trainable=True)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:  # checked at the start; what slips through
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise LorastackError(
                f"lora.init_from: {config.lora.init_from} does not load onto this base model ({first}).",
                "Name the adapter/ folder of a run trained on this base model.",
            ) from None
        model.peft_config["default"].base_model_name_or_path = model_path  # this run's base, as a new adapter's
        logger.info("LoRA weights from %s", config.lora.init_from)
    else:
        model = get_peft_model(model, _lora_config(config, _target_modules(config)))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return model, tokenizer


def _device(choices: RunChoices) -> Any:
    """Where the model loads: this process's GPU; the CPU for the CPU backend and for FSDP of unquantized weights
    (FSDP moves each shard to the GPU, so no GPU ever holds the whole model). A 4-bit base is quantized on the GPU
    whole, then sharded (bitsandbytes quantizes where the weights land)."""
    import torch

    if not choices.on_gpu or (choices.distributed == "fsdp" and choices.quantization == "none"):
        return "cpu"
    return torch.cuda.current_device()


def _freeze_base(
    model: Any, gradient_checkpointing: bool, offload_activations: bool = False, upcast: bool = False
) -> None:
    """Freeze the base weights and set up gradient checkpointing, keeping every weight in the dtype it loaded in
    unless ``upcast``.

    peft's ``prepare_model_for_kbit_training`` (what TRL calls on a quantized base) also upcasts every weight
    that is not quantized (embeddings, norms, lm_head) to fp32; the embeddings then emit fp32, so the residual
    stream, each layer's saved input and the logits are fp32 too: twice the activation memory of bf16 for
    frozen weights. Unsloth keeps them in bf16, and so does this (RMSNorm computes in fp32 inside anyway); with
    ``upcast`` (fp16 compute) it upcasts as peft does.
    """
    import torch

    for param in model.parameters():
        param.requires_grad_(False)
        if upcast and param.dtype in (torch.float16, torch.bfloat16) and type(param).__name__ != "Params4bit":
            param.data = param.data.float()
    if gradient_checkpointing:
        if offload_activations:
            from lorastack.finetune import offload  # torch's checkpoint hooks: peft runs on CUDA only

            offload.enable(model)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # (gradient_checkpointing_enable also makes the embeddings' output require grad, which checkpointed
        # layers need for gradients to reach LoRA.)


_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _load_unsloth(config: TrainConfig, choices: RunChoices, model_path: str, max_length: int) -> tuple[Any, Any]:
    if "transformers" in sys.modules and "unsloth" not in sys.modules:
        logger.warning("transformers was imported before Unsloth; Unsloth patches fewer kernels then")
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_path,
        max_seq_length=max_length,
        load_in_4bit=choices.quantization == "nf4",
        dtype=_torch_dtype(choices.compute_dtype),
    )
    targets = _target_modules(config)
    lora = config.lora
    model = FastLanguageModel.get_peft_model(
        model,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # Unsloth takes module names; all-linear on a decoder means the seven projections.
        target_modules=_ALL_LINEAR if targets == "all-linear" else targets,
        use_rslora=lora.use_rslora,
        init_lora_weights=True if lora.init == "default" else lora.init,
        bias="none",
        use_gradient_checkpointing="unsloth" if choices.gradient_checkpointing else False,
        random_state=config.training.seed,
        max_seq_length=max_length,
    )
    return model, tokenizer
