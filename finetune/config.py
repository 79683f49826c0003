"""The one typed config of ``lorastack train``: a YAML recipe plus ``key=value`` overrides.

Field docstrings are the documentation: ``lorastack train --help`` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lorastack.finetune.data import DataConfig
from lorastack.errors import LorastackError, NotFound, validation_message
from lorastack.lora import MAX_LORA_RANK
from lorastack.sources import SourceError, is_remote, parse

_STRICT = ConfigDict(use_attribute_docstrings=True, extra="forbid")


# bitsandbytes' optimizers: their kernels take plain tensors, not FSDP's sharded DTensor parameters.
BNB_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")


class LoraSettings(BaseModel):
    model_config = _STRICT

    r: int = Field(
        16, ge=1, le=MAX_LORA_RANK,
        description=f"LoRA rank: higher learns more and costs more memory (vLLM serves up to {MAX_LORA_RANK}).",
    )
    alpha: float = Field(32, gt=0)
    """LoRA scale numerator (the update is scaled by alpha/r, or alpha/sqrt(r) with rslora)."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the LoRA input (0 is fastest; Unsloth is fastest at 0)."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module name suffixes to adapt (e.g. [q_proj, v_proj]) or all-linear (every linear layer but the output head)."""
    use_rslora: bool = False
    """Rank-stabilised LoRA: scale by alpha/sqrt(r), which keeps high ranks stable."""
    init: Literal["default", "gaussian", "pissa", "olora"] = "default"
    """Initialisation of the LoRA weights (peft's init_lora_weights): default zeroes B."""
    save_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype of the saved adapter weights: bfloat16 halves the file (vLLM computes in the model's dtype anyway)."""
    init_from: Path | None = None
    """Start from this adapter's weights (a folder with adapter_config.json, e.g. an earlier run's adapter/) instead
    of new ones: to train it on, or a GRPO step after supervised training. Its own rank, alpha and target modules
    are used (the r, alpha and target_modules here are not). peft backend."""

    @field_validator("init_from")
    @classmethod
    def _expanded(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    def check_init_from(self) -> None:
        """Refuse a start adapter that is not there (checked when the run starts, as the data is)."""
        if self.init_from is not None and not (self.init_from / "adapter_config.json").is_file():
            raise NotFound(
                f"lora.init_from: {self.init_from} holds no adapter_config.json.",
                "Name the adapter/ folder of a finished run (e.g. runs/NAME/adapter).",
            )


class TrainingSettings(BaseModel):
    model_config = _STRICT

    epochs: float = Field(1.0, gt=0)
    """Passes over the training data (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Optimizer steps to run (-1 = as many as the epochs take)."""
    batch_size: int = Field(4, ge=1)
    """Sequences per step per device."""
    grad_accum: int = Field(1, ge=1)
    """Gradient accumulation steps: the effective batch is batch_size x grad_accum x devices."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate."""
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up."""
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    """Share of the steps spent warming the learning rate up."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradient clipping norm."""
    optimizer: Literal["auto", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd"] = "auto"
    """Optimizer. auto: paged 8-bit AdamW on CUDA (bitsandbytes), adamw_torch on CPU and under FSDP (bitsandbytes
    cannot update its sharded parameters)."""
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    """Recompute activations to save memory. auto: on with a GPU, off on CPU (slower there, little gain)."""
    offload_activations: Literal["auto", "on", "off"] = "auto"
    """With gradient checkpointing on CUDA, keep each layer's saved input in host RAM until the backward (what
    Unsloth's checkpointing does): layers x tokens x hidden x 2 bytes less GPU memory (1 GiB for an 8B model at
    4 x 1024 tokens; the peak fell by 0.75 GiB) for two host copies per layer and step. auto: on for quantized
    (QLoRA) runs, where memory is the point. peft backend; Unsloth always offloads."""
    chunked_loss: bool = True
    """Compute the loss from the last hidden state a chunk of labelled tokens at a time, never holding all the
    logits (GiBs for large vocabularies). For Llama, Mistral, Qwen2/3, Phi-3, SmolLM3, OLMo 2, StarCoder2 and
    Gemma on one process with the peft backend; other models, and Unsloth (its own fused loss), use theirs."""

    @field_validator("gradient_checkpointing", "offload_activations", mode="before")
    @classmethod
    def _yaml_switch(cls, value: Any) -> Any:
        # YAML reads a bare on/off as a boolean.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    distributed: Literal["auto", "ddp", "fsdp"] = "auto"
    """With several processes (lorastack train --gpus N): ddp gives each GPU the whole model and a share of every
    batch; fsdp shards the weights (4-bit ones too), gradients and optimizer states over the GPUs, for a model one
    GPU cannot hold. auto: DDP when lorastack plan says the run fits one GPU, else FSDP (the reason is printed)."""
    memory_check: bool = True
    """Before the first step, refuse a run whose planned peak memory (lorastack plan's model of it, at the data's
    longest batch) is more than 1.25 times what the GPU, or this machine's RAM, holds (a warning when over by less):
    the refusal says which batch size fits. false: start anyway (the plan is an estimate)."""
    logging_steps: int = Field(10, ge=1)
    """Log loss and tokens/s every N steps."""
    eval_steps: int = 50
    """Evaluate on the eval split every N steps (-1 = only at the end)."""
    save_steps: int = Field(100, ge=1)
    """Write a checkpoint every N steps (what --resume continues from)."""
    save_total_limit: int = Field(2, ge=1)
    """Checkpoints to keep."""
    seed: int = 42
    """Random seed (data order, LoRA init, eval split)."""
    report_to: list[Literal["tensorboard", "wandb"]] = []
    """Also log to TensorBoard and/or Weights & Biases (their packages must be installed)."""


class GrpoSettings(BaseModel):
    model_config = _STRICT

    generations: int = Field(8, ge=2)
    """Answers sampled per prompt; each is scored against the others of its group (the G of GRPO)."""
    max_completion_tokens: int = Field(160, ge=8, le=32768)
    """Longest sampled answer in tokens (the plan and the tool call; no tool runs during sampling)."""
    temperature: float = Field(1.0, gt=0, le=10, allow_inf_nan=False)
    """Sampling temperature: variety within a group is what GRPO learns from."""
    beta: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Weight of the KL penalty towards the starting model (0: none, TRL's default; no reference copy is kept)."""


class TrainConfig(BaseModel):
    model_config = _STRICT

    method: Literal["sft", "grpo"] = "sft"
    """sft: learn the data's assistant turns (cross-entropy). grpo: reinforcement learning (TRL's GRPO) on the
    data's tool decisions: for each conversation, the turns before the first assistant reply after its last user
    turn are the prompt; sampled replies earn 1 when their tool call does what the data's does (the calculator's
    same value; the same function with the same arguments; search) or when they call nothing where the data calls
    nothing, else 0. Start it from a supervised adapter (lora.init_from). training.batch_size counts sampled
    replies, a multiple of grpo.generations. One process."""

    base_model: str | None = None
    """Base model: a Hugging Face hub id, a local folder, hf://ORG/REPO[@REVISION][/SUBFOLDER] or s3://BUCKET/PREFIX
    (fetched before training), or unset for the embedded SmolLM2-135M-Instruct."""
    backend: Literal["auto", "unsloth", "peft", "cpu"] = "auto"
    """auto: Unsloth when CUDA and Unsloth are present, else peft (+ bitsandbytes for QLoRA) on CUDA, else CPU."""
    quantization: Literal["auto", "nf4", "int8", "none"] = "auto"
    """Base weights: nf4 (QLoRA, 4-bit NormalFloat), int8, or none (16/32-bit LoRA). auto: nf4 on CUDA, none on CPU."""
    double_quant: bool = True
    """QLoRA double quantization: quantize the 4-bit scales too (about 0.4 bit per weight saved)."""
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Compute dtype: auto is bfloat16 on GPUs that have it, float32 on CPU (bf16 is 8-25x slower without bf16 hardware)."""
    attention: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    """Attention kernels for the peft and CPU backends (Unsloth patches its own). flash_attention_2 (a CUDA GPU
    of the Ampere generation or newer, and the flash-attn package) runs padding-free batches as one flat row
    with no padding at all; sdpa packs them into rows kept apart by a mask."""
    output_dir: Path = Path("runs/adapter")
    """Run folder: checkpoints/, the final adapter/ with its card, loss_curve.png. Relative to the current directory
    (data paths in a recipe are relative to the recipe's folder)."""
    data: DataConfig
    """Training data (see the data.* fields)."""
    lora: LoraSettings = LoraSettings()
    """LoRA settings (see the lora.* fields)."""
    training: TrainingSettings = TrainingSettings()
    """Optimisation settings (see the training.* fields)."""
    grpo: GrpoSettings = GrpoSettings()
    """GRPO settings (see the grpo.* fields), for method grpo."""

    @field_validator("base_model")
    @classmethod
    def _source_is_well_formed(cls, value: str | None) -> str | None:
        # A malformed hf:// or s3:// URL is refused with the config, before anything loads; fetching waits for training.
        if value is not None and is_remote(value):
            try:
                parse(value)
            except SourceError as exc:
                raise ValueError(str(exc).rstrip(".")) from None
        return value

    @model_validator(mode="after")
    def _backend_fits_quantization(self) -> TrainConfig:
        if self.backend == "unsloth" and self.quantization == "int8":
            raise ValueError("backend unsloth does not train int8 bases: use quantization nf4 or none")
        if self.backend == "unsloth" and (self.method == "grpo" or self.lora.init_from is not None):
            raise ValueError("method grpo and lora.init_from train with the peft backend: use backend peft or auto")
        if self.method == "grpo" and self.training.batch_size % self.grpo.generations:
            raise ValueError(
                f"method grpo: training.batch_size ({self.training.batch_size}) counts sampled replies and must be "
                f"a multiple of grpo.generations ({self.grpo.generations})"
            )
        if self.training.distributed == "fsdp" and self.training.optimizer in BNB_OPTIMIZERS:
            raise ValueError(
                f"training.optimizer {self.training.optimizer} (bitsandbytes) cannot update FSDP's sharded parameters: "
                "use optimizer adamw_torch (or auto) with distributed fsdp, or distributed ddp"
            )
        return self


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``lora.r=32``-style overrides on a raw config dict. Values are read as YAML (numbers, lists, ...)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LorastackError(f"Override {item!r} is not KEY=VALUE.", "Write e.g. lora.r=32 or training.max_steps=100.")
        node = raw
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise LorastackError(f"Override {item!r}: {part} is not a section.", "See lorastack train --help.")
        node[leaf] = yaml.safe_load(value)
    return raw


RECIPE_RELATIVE = (("data", "path"), ("data", "eval_path"), ("data", "chat_template"))
"""Paths a recipe file names relative to its own folder, so data shipped beside a recipe is found from anywhere.
``output_dir`` is not among them: like torchtune and axolotl, a run lands relative to where it is started."""


def _anchor_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Make the recipe's relative :data:`RECIPE_RELATIVE` paths relative to ``folder`` (the recipe's)."""
    for section, key in RECIPE_RELATIVE:
        node = raw.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            node[key] = str(folder / value)
    return raw


def load_train_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML recipe (or nothing) and apply overrides; errors name the file and the field.

    The recipe's own data paths (:data:`RECIPE_RELATIVE`) are relative to the recipe's folder; ``output_dir`` and
    every ``KEY=VALUE`` override are relative to the current directory."""
    raw: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise NotFound(f"Config file {path} does not exist.", "See the recipes in finetune/recipes/.")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise LorastackError(f"{path} is not valid YAML: {exc}".replace("\n", " "), "Fix the file.") from None
        if not isinstance(raw, dict):
            raise LorastackError(f"{path} must hold a mapping of settings.", "See the recipes in finetune/recipes/.")
        raw = _anchor_paths(raw, path.parent)
    raw = apply_overrides(raw, list(overrides))
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        problems = "; ".join(
            # a check of the whole config (a model validator) has no field to name
            ": ".join(filter(None, [".".join(map(str, e["loc"])), validation_message(e)]))
            for e in exc.errors()
        )
        raise LorastackError(f"Invalid training config{where}: {problems}.", "See lorastack train --help.") from None


def field_docs(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, docstring) for every leaf field: the text of ``lorastack train --help``."""
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += field_docs(annotation, f"{prefix}{name}.")
            continue
        default = "required" if field.is_required() else repr(field.default)
        rows.append((f"{prefix}{name}", default, " ".join((field.description or "").split())))  # one paragraph
    return rows
