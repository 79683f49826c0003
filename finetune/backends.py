"""Training backends: Unsloth (CUDA), peft + bitsandbytes (CUDA), and CPU LoRA/QLoRA.

Each returns a PEFT model ready to train and its tokenizer. The choice is automatic, printed with its
reason, and can be forced with ``backend:``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass
from typing import Any

from lorastack.finetune.config import TrainConfig
from lorastack.errors import LorastackError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What ``auto`` resolved to on this machine, and why."""

    backend: str
    quantization: str
    compute_dtype: str
    optimizer: str
    gradient_checkpointing: bool
    reason: str
    offload_activations: bool = False
    """Checkpointed layer inputs wait in host RAM (Unsloth's checkpointing, or lorastack.finetune.offload for peft)."""
    attention: str = "sdpa"
    """The attention implementation the model is loaded with ("unsloth": Unsloth's own kernels)."""

    @property
    def on_gpu(self) -> bool:
        return self.backend != "cpu"


def _cuda() -> tuple[bool, bool]:
    import torch

    available = torch.cuda.is_available()
    return available, available and torch.cuda.is_bf16_supported()


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve(config: TrainConfig) -> Plan:
    """Turn the config's ``auto`` values into concrete choices for this machine."""
    cuda, bf16 = _cuda()
    backend = config.backend
    if backend == "auto":
        if not cuda:
            backend, reason = "cpu", "no CUDA GPU: LoRA on the CPU with float32 compute"
        elif _has("unsloth") and config.quantization != "int8":
            backend, reason = "unsloth", "CUDA and Unsloth are available (fastest, least memory)"
        else:
            backend = "peft"
            reason = "CUDA without Unsloth: peft + bitsandbytes (pip install 'lorastack[unsloth]' for more speed)"
    else:
        reason = "chosen in the config"
        if backend in ("unsloth", "peft") and not cuda:
            raise LorastackError(f"backend {backend} needs a CUDA GPU and none is visible.", "Use backend: cpu (or auto).")
        if backend == "unsloth" and not _has("unsloth"):
            raise LorastackError("backend unsloth: Unsloth is not installed.", "pip install 'lorastack[unsloth]', or use backend: peft.")
    quantization = config.quantization
    if quantization == "auto":
        quantization = "nf4" if backend != "cpu" else "none"
    if quantization in ("nf4", "int8") and not _has("bitsandbytes"):
        raise LorastackError(f"quantization {quantization} needs bitsandbytes.", "pip install bitsandbytes, or quantization: none.")
    dtype = config.compute_dtype
    if dtype == "auto":
        dtype = "float32" if backend == "cpu" else ("bfloat16" if bf16 else "float16")
    optimizer = config.training.optimizer
    if optimizer == "auto":
        optimizer = "adamw_torch" if backend == "cpu" else "paged_adamw_8bit"
    checkpointing = config.training.gradient_checkpointing
    gradient_checkpointing = checkpointing == "on" or (checkpointing == "auto" and backend != "cpu")
    if config.training.offload_activations == "on" and backend == "peft" and not gradient_checkpointing:
        raise LorastackError(
            "training.offload_activations offloads what gradient checkpointing keeps, and checkpointing is off.",
            "Set training.gradient_checkpointing: on (or auto), or offload_activations: auto.",
        )
    # On the CPU there is nowhere to offload to (it is ignored there).
    offload = gradient_checkpointing and offloads(config.training.offload_activations, backend, quantization)
    attention = _attention(config.attention, backend, dtype)
    return Plan(backend, quantization, dtype, optimizer, gradient_checkpointing, reason, offload, attention)


def _attention(setting: str, backend: str, dtype: str) -> str:
    if backend == "unsloth":
        return "unsloth"  # Unsloth patches attention itself, whatever the setting
    if setting == "flash_attention_2":
        problem = _flash_attention_problem(backend, dtype)
        if problem is not None:
            raise LorastackError(*problem)
    return setting


def _flash_attention_problem(backend: str, dtype: str) -> tuple[str, str] | None:
    """Why flash_attention_2 cannot run here (message, what to do), or None."""
    if backend != "peft":
        return "attention flash_attention_2 runs on a CUDA GPU, not on the CPU.", "Use attention: sdpa."
    if dtype == "float32":
        return ("attention flash_attention_2 computes in bfloat16 or float16, not float32.",
                "Set compute_dtype: auto (or bfloat16), or use attention: sdpa.")
    try:
        import flash_attn  # noqa: F401  (a build for another torch fails here, not halfway through loading)
    except ImportError as exc:
        return (f"attention flash_attention_2 needs a working flash-attn package ({exc}).",
                "pip install flash-attn --no-build-isolation (built against this torch), or use attention: sdpa.")
    import torch

    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        return (f"attention flash_attention_2 needs an Ampere or newer GPU; this one is compute capability "
                f"{major}.{minor}.", "Use attention: sdpa.")
    return None


def offloads(setting: str, backend: str, quantization: str) -> bool:
    """Whether checkpointed layer inputs go to host RAM: always with Unsloth (its checkpointing does it); with
    peft when asked, or by default for quantized runs (measured on an H200, 8B QLoRA: 0.75 GiB less at
    about the same speed)."""
    if backend == "unsloth":
        return True
    return backend == "peft" and (setting == "on" or (setting == "auto" and quantization != "none"))


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


def load_model(config: TrainConfig, plan: Plan, model_path: str, max_length: int) -> tuple[Any, Any]:
    """The PEFT model to train and its tokenizer, loaded the way ``plan`` says."""
    if plan.backend == "unsloth":
        return _load_unsloth(config, plan, model_path, max_length)
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    dtype = _torch_dtype(plan.compute_dtype)
    quant = None
    if plan.quantization == "nf4":
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=config.double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
    elif plan.quantization == "int8":
        quant = BitsAndBytesConfig(load_in_8bit=True)
    device_map = {"": torch.cuda.current_device()} if plan.on_gpu else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(
        model_path, quantization_config=quant, dtype=dtype, device_map=device_map, attn_implementation=plan.attention
    )
    # fp16 compute (GPUs without bf16) keeps peft's fp32 upcast: frozen fp16 norms and logits can overflow.
    upcast = quant is not None and plan.compute_dtype == "float16"
    _freeze_base(model, plan.gradient_checkpointing, plan.offload_activations, upcast)
    model = get_peft_model(model, _lora_config(config, _target_modules(config)))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return model, tokenizer


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
            from lorastack.finetune import offload

            offload.enable(model)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # (gradient_checkpointing_enable also makes the embeddings' output require grad, which checkpointed
        # layers need for gradients to reach LoRA.)


_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _load_unsloth(config: TrainConfig, plan: Plan, model_path: str, max_length: int) -> tuple[Any, Any]:
    if "transformers" in sys.modules and "unsloth" not in sys.modules:
        logger.warning("transformers was imported before Unsloth; Unsloth patches fewer kernels then")
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_path,
        max_seq_length=max_length,
        load_in_4bit=plan.quantization == "nf4",
        dtype=_torch_dtype(plan.compute_dtype),
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
        use_gradient_checkpointing="unsloth" if plan.gradient_checkpointing else False,
        random_state=config.training.seed,
        max_seq_length=max_length,
    )
    return model, tokenizer
