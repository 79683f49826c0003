"""What a training config's ``auto`` values become on a machine: the one resolver of backend, quantization,
compute dtype, optimizer, checkpointing, offloading, attention and loss.

``lorastack train`` resolves against this machine (:meth:`Machine.this`); ``lorastack plan`` against a described
CUDA GPU (:meth:`Machine.cuda_gpu`), so the memory it predicts is the run the trainer would make there.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from lorastack.errors import LorastackError
from lorastack.finetune.config import BNB_OPTIMIZERS, TrainConfig


@dataclass(frozen=True)
class Machine:
    """What the resolver needs to know of a machine."""

    cuda: bool
    """A CUDA GPU is visible."""
    bf16: bool = False
    """... and computes in bfloat16."""
    unsloth: bool = False
    """Unsloth is importable."""
    bitsandbytes: bool = False
    """bitsandbytes is importable (NF4/int8 bases, 8-bit optimizers)."""
    probed: bool = False
    """This machine, probed: asked for flash attention, the resolver also checks the flash-attn package and the GPU's
    compute capability. A described machine takes its GPU as one flash attention runs on."""

    @classmethod
    def this(cls) -> Machine:
        """The machine this process runs on."""
        import torch  # heavy: only once a run is resolved

        cuda = torch.cuda.is_available()
        return cls(cuda=cuda, bf16=cuda and torch.cuda.is_bf16_supported(), unsloth=importable("unsloth"),
                   bitsandbytes=importable("bitsandbytes"), probed=True)

    @classmethod
    def cuda_gpu(cls, unsloth: bool) -> Machine:
        """A described CUDA GPU with bfloat16 and bitsandbytes (what ``lorastack plan`` predicts for)."""
        return cls(cuda=True, bf16=True, unsloth=unsloth, bitsandbytes=True)


def importable(module: str) -> bool:
    """Whether ``module`` can be imported (found, not imported: Unsloth patches transformers on import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class RunChoices:
    """What a config's ``auto`` values resolved to on a machine, and why."""

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
    chunked_loss: bool = False
    """The loss from the last hidden state in chunks (lorastack.finetune.loss), where the model allows it; Unsloth
    fuses its own loss."""
    processes: int = 1
    """Training processes (one per GPU; lorastack train --gpus N runs them under torchrun)."""
    distributed: str = "none"
    """How the processes share the work: none (one process), ddp or fsdp (lorastack.finetune.distributed)."""
    distributed_reason: str = ""

    @property
    def on_gpu(self) -> bool:
        return self.backend != "cpu"

    @property
    def upcasts_unquantized(self) -> bool:
        """A quantized base computing in float16 keeps peft's fp32 upcast of the unquantized weights (frozen fp16
        norms and logits can overflow); the other runs keep them in the compute dtype."""
        return self.backend != "unsloth" and self.quantization != "none" and self.compute_dtype == "float16"

    def describe(self) -> str:
        """One line for the user: what was chosen and why."""
        attention = "Unsloth" if self.attention == "unsloth" else self.attention
        offloaded = " (layer inputs in host RAM)" if self.offload_activations else ""
        spread = (f" {self.processes} processes with {self.distributed.upper()} ({self.distributed_reason})."
                  if self.processes > 1 else "")
        return (f"Backend {self.backend} ({self.reason}); base weights {self.quantization}, "
                f"compute {self.compute_dtype}, attention {attention}, optimizer {self.optimizer}, "
                f"gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}{offloaded}.{spread}")


def resolve(config: TrainConfig, machine: Machine | None = None, processes: int = 1) -> RunChoices:
    """Turn the config's ``auto`` values into concrete choices for ``machine`` (default: this one), trained by
    ``processes`` processes (DDP or FSDP is decided later: :func:`lorastack.finetune.distributed.with_strategy`)."""
    machine = machine or Machine.this()
    backend = config.backend
    if backend == "unsloth" and processes > 1:
        raise LorastackError(f"backend unsloth trains on one GPU; {processes} processes were asked for.",
                             "Use backend: peft (or auto) with --gpus, or drop --gpus.")
    if config.method == "grpo" and processes > 1:
        raise LorastackError(f"method grpo trains in one process; {processes} were asked for.", "Drop --gpus.")
    peft_only = "GRPO" if config.method == "grpo" else "lora.init_from" if config.lora.init_from else None
    if backend == "auto":
        if not machine.cuda:
            backend, reason = "cpu", "no CUDA GPU: LoRA on the CPU with float32 compute"
        elif machine.unsloth and config.quantization != "int8" and peft_only:
            backend, reason = "peft", f"{peft_only} trains with peft + bitsandbytes (not Unsloth)"
        elif machine.unsloth and config.quantization != "int8" and processes > 1:
            backend = "peft"
            reason = f"Unsloth trains on one GPU only, so peft + bitsandbytes on {processes} processes"
        elif machine.unsloth and config.quantization != "int8":
            backend, reason = "unsloth", "CUDA and Unsloth are available (fastest, least memory)"
        else:
            backend = "peft"
            reason = "CUDA without Unsloth: peft + bitsandbytes (pip install 'lorastack[unsloth]' for more speed)"
    else:
        reason = "chosen in the config"
        if backend in ("unsloth", "peft") and not machine.cuda:
            raise LorastackError(f"backend {backend} needs a CUDA GPU and none is visible.", "Use backend: cpu (or auto).")
        if backend == "unsloth" and not machine.unsloth:
            raise LorastackError("backend unsloth: Unsloth is not installed.", "pip install 'lorastack[unsloth]', or use backend: peft.")
    quantization = config.quantization
    if quantization == "auto":
        quantization = "nf4" if backend != "cpu" else "none"
    if quantization in ("nf4", "int8") and not machine.bitsandbytes:
        raise LorastackError(f"quantization {quantization} needs bitsandbytes.", "pip install bitsandbytes, or quantization: none.")
    dtype = config.compute_dtype
    if dtype == "auto":
        dtype = "float32" if backend == "cpu" else ("bfloat16" if machine.bf16 else "float16")
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
    attention = _attention(config.attention, backend, dtype, machine)
    chunked = config.training.chunked_loss and backend != "unsloth"
    return RunChoices(backend, quantization, dtype, optimizer, gradient_checkpointing, reason, offload, attention,
                      chunked, processes)


def optimizer_under(strategy: str, config: TrainConfig, optimizer: str) -> str:
    """The optimizer of a run spread with ``strategy``: under FSDP, ``auto`` becomes torch's AdamW (bitsandbytes'
    kernels take plain tensors, FSDP2's sharded parameters are DTensors: on two H200s "optimizer_update_8bit_blockwise
    got mixed torch.Tensor and DTensor"; FSDP shards AdamW's states anyway). One named in the config stays: see
    :func:`lorastack.finetune.distributed.with_strategy` and the config's own check."""
    if strategy == "fsdp" and config.training.optimizer == "auto" and optimizer in BNB_OPTIMIZERS:
        return "adamw_torch"
    return optimizer


def offloads(setting: str, backend: str, quantization: str) -> bool:
    """Whether checkpointed layer inputs go to host RAM: always with Unsloth (its checkpointing does it); with
    peft when asked, or by default for quantized runs (measured on an H200, 8B QLoRA: 0.75 GiB less at
    about the same speed)."""
    if backend == "unsloth":
        return True
    return backend == "peft" and (setting == "on" or (setting == "auto" and quantization != "none"))


def _attention(setting: str, backend: str, dtype: str, machine: Machine) -> str:
    if backend == "unsloth":
        return "unsloth"  # Unsloth patches attention itself, whatever the setting
    if setting == "flash_attention_2":
        problem = _flash_attention_problem(backend, dtype, machine)
        if problem is not None:
            raise LorastackError(*problem)
    return setting


def _flash_attention_problem(backend: str, dtype: str, machine: Machine) -> tuple[str, str] | None:
    """Why flash_attention_2 cannot run here (message, what to do), or None."""
    if backend != "peft":
        return "attention flash_attention_2 runs on a CUDA GPU, not on the CPU.", "Use attention: sdpa."
    if dtype == "float32":
        return ("attention flash_attention_2 computes in bfloat16 or float16, not float32.",
                "Set compute_dtype: auto (or bfloat16), or use attention: sdpa.")
    if not machine.probed:
        return None  # a described GPU: no package or device here to check
    try:
        import flash_attn  # noqa: F401  (a build for another torch fails here, not halfway through loading)
    except ImportError as exc:
        return (f"attention flash_attention_2 needs a working flash-attn package ({exc}).",
                "pip install flash-attn --no-build-isolation (built against this torch), or use attention: sdpa.")
    import torch  # heavy: only when flash attention is asked for on this machine

    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        return (f"attention flash_attention_2 needs an Ampere or newer GPU; this one is compute capability "
                f"{major}.{minor}.", "Use attention: sdpa.")
    return None
