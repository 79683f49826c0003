"""Predict the peak GPU memory of a LoRA/QLoRA training run, with a breakdown, and the largest batch that fits.

The estimate is bookkeeping, not a regression: it adds up the tensors alive at the three moments where a
training step peaks (the loss backward, one decoder layer's backward, the optimizer step) and reports the
largest. It was built on a raw training loop (``gpu_train_probe.py``, the yardstick of
benchmarks/gpu/train_bench.sh: transformers + peft + bitsandbytes, or Unsloth) and reproduces the six peaks that
loop reached on an H100 (benchmarks/results/) within 1%, and 13 more configurations within 4%; ``RunShape``'s
switches (``fp32_unquantized``, ``chunked_loss``, ``offload_activations``) tell that loop from lorastack's
trainer, whose measured peaks it predicts within 8%. The peft side has no fitted constant; Unsloth's has one.

    model = ModelShape.from_pretrained("meta-llama/Llama-3.2-1B")   # reads config.json only
    run = RunShape(batch_size=8, seq_len=2048, quantization="nf4")
    print(estimate_memory(model, run).table()); largest_batch(model, run, 24 * GIB)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lorastack.finetune.loss import CHUNK_ELEMENTS
from lorastack.errors import LorastackError, NotFound

GIB = 2**30

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers of a Llama-style decoder layer: what LoRA adapts ("all-linear" is all seven)."""

# Storage formats, read from bitsandbytes 0.50.2's source.
_NF4_BLOCK = 64  # Params4bit: one absmax per 64 weights
_NF4_NESTED_BLOCK = 256  # double quant: the absmaxes become uint8, with one fp32 scale per 256 of them
_OPT8_BLOCK = 256  # 8-bit optimizers: one fp32 absmax per 256 values of each of the 2 states
_OPT8_MIN_SIZE = 4096  # ... but fp32 states for tensors smaller than this (min_8bit_size)

# The one fitted constant: bytes per token per MLP-intermediate unit that Unsloth's fused LoRA MLP backward
# allocates beyond the tensors counted in _layer_bytes (about five bf16 intermediate-wide gradients and
# products). Fitted to the probe's measured Unsloth peaks (1B 1.63 GiB: -1.0%, 8B 5.82 GiB: +0.1%); 9 or 11 stay
# within 3%. The two shapes cannot tell an intermediate-width term from a hidden-width one.
_UNSLOTH_MLP_TEMP = 10

# Unsloth's fused cross-entropy (unsloth_zoo fused_losses) splits the tokens into chunks so that a chunk,
# costed at 16 bytes a logit, stays under its target (half the free memory, at most 4 GiB): at most 2**28
# logits a chunk. A compiled chunk keeps about 2 bytes a logit (bf16 logits, the gradient written over
# them): the 1B peak of 1.63 GiB has no room for more than ~3. So at most 0.5 GiB; less with < 8 GiB free.
_UNSLOTH_CE_TARGET = 4 * GIB
_UNSLOTH_CE_COSTED = 16
_UNSLOTH_CE_LIVE = 2

# Not measured (the probe reads torch.cuda.max_memory_allocated, which excludes both): the CUDA context
# (~0.5 GiB with torch 2.x's lazily loaded kernels) and the caching allocator's rounding and fragmentation
# (reserved is typically 5-15% above allocated in training). Only `total_bytes` includes them.
_CUDA_CONTEXT = GIB // 2
_ALLOCATOR_SLACK = 0.10

_DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
_DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
_FAMILIES = {"llama", "mistral", "qwen2", "qwen3"}
_MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


SHIPPED_CONFIGS = Path(__file__).parent / "model_configs"
"""config.json of the hub models the shipped recipes name, as ``<org>--<name>.json`` (the hub's own files)."""


def shipped_config(hub_id: str) -> Path | None:
    """The config.json lorastack ships for ``hub_id``, if any: a released model's config does not change."""
    file = SHIPPED_CONFIGS / (hub_id.replace("/", "--") + ".json")
    return file if "/" in hub_id and file.is_file() else None


def _hub_config(hub_id: str) -> Path:
    """config.json of ``hub_id`` from the local hub cache, else downloaded (the cache first: no network wait)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(hub_id, "config.json", local_files_only=True))
    except Exception:  # not cached (or a wrong id): ask the hub
        pass
    try:
        return Path(hf_hub_download(hub_id, "config.json"))
    except Exception as exc:  # offline, gated or a wrong id: all leave us without the shape
        raise LorastackError(
            f"Could not read config.json of {hub_id} from the Hugging Face hub ({exc}).",
            "Check the id, your network and HF_TOKEN, or download the model (or just its config.json) into a "
            "folder and pass that folder as base_model.",
        ) from exc


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a dense Llama-style decoder (Llama, Mistral, Qwen2/3) that decide its training memory."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    model_type: str = ""
    name: str = ""
    assumptions: tuple[str, ...] = ()
    """What the config did not say and was assumed (``lorastack plan`` prints these)."""

    @classmethod
    def from_config(cls, cfg: Any, name: str = "") -> ModelShape:
        """From a transformers ``PretrainedConfig`` or the dict of a config.json.

        Assumed of every model: pre-norm decoder layers of q/k/v/o attention and a gated (SwiGLU) MLP with
        RMSNorm, as in Llama, Mistral and Qwen2/3. Other dense families are read the same way, with a note.
        """
        raw = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        if "hidden_size" not in raw and isinstance(raw.get("text_config"), dict):  # multimodal wrappers
            raw = {"model_type": raw.get("model_type"), **raw["text_config"]}
        name = name or raw.get("_name_or_path") or raw.get("model_type") or "the model"
        required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
        missing = [key for key in required if raw.get(key) is None]
        if missing:
            raise LorastackError(f"The config of {name} has no {', '.join(missing)}: not a Llama-style decoder.",
                                 "lorastack plan models Llama, Mistral and Qwen2-style decoders.")
        if any(raw.get(key) for key in _MOE_KEYS):
            raise LorastackError(f"{name} is a mixture-of-experts model.", "lorastack plan models dense decoders only.")
        notes = []
        family = raw.get("model_type") or "unknown"
        if family not in _FAMILIES:
            notes.append(f"model_type {family} read as a Llama-style decoder (q/k/v/o attention, gated MLP)")
        heads = raw["num_attention_heads"]
        kv_heads = raw.get("num_key_value_heads")
        if kv_heads is None:
            kv_heads = heads
            notes.append("num_key_value_heads missing: assumed equal to the attention heads (no GQA)")
        head_dim = raw.get("head_dim")
        if head_dim is None:
            head_dim = raw["hidden_size"] // heads
            notes.append(f"head_dim missing: assumed hidden_size / heads = {head_dim}")
        tied = raw.get("tie_word_embeddings")
        if tied is None:  # the Llama, Mistral and Qwen2 config classes all default to a separate lm_head
            tied = False
            notes.append("tie_word_embeddings missing: assumed False (a separate lm_head)")
        attention_bias = bool(raw.get("attention_bias"))
        return cls(
            hidden_size=raw["hidden_size"], num_layers=raw["num_hidden_layers"], num_heads=heads,
            num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=raw["intermediate_size"],
            vocab_size=raw["vocab_size"], tie_word_embeddings=bool(tied),
            qkv_bias=attention_bias or family == "qwen2",  # Qwen2 always has q/k/v biases and no flag for it
            o_bias=attention_bias, mlp_bias=bool(raw.get("mlp_bias")), qk_norm=family == "qwen3", model_type=family,
            name=str(name), assumptions=tuple(notes),
        )

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str) -> ModelShape:
        """Read only config.json: from a local model folder, the copy lorastack ships for the hub ids its recipes
        name (:data:`SHIPPED_CONFIGS`, so planning them needs no network), the hub cache, or the hub."""
        path = Path(path_or_hub_id).expanduser()
        if path.is_dir():
            file, name = path / "config.json", path.name
            if not file.is_file():
                raise NotFound(f"{path} has no config.json.", "Point at the folder that holds the model's config.json.")
        elif path_or_hub_id.startswith((".", "/", "~")) or path_or_hub_id.count("/") > 1:
            raise NotFound(f"Model folder {path_or_hub_id} does not exist.", "Check the path, or give a hub id.")
        elif (shipped := shipped_config(path_or_hub_id)) is not None:
            file, name = shipped, path_or_hub_id
        else:
            file, name = _hub_config(path_or_hub_id), path_or_hub_id
        try:
            raw = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise LorastackError(f"Could not read {file}: {exc}.", "Check that it is a model's config.json.") from exc
        return cls.from_config(raw, name=name)

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer of one decoder layer."""
        h, q, kv, i = self.hidden_size, self.num_heads * self.head_dim, self.kv_dim, self.intermediate_size
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        """Weights of the decoder layers' linear layers: what bitsandbytes quantizes."""
        return self.num_layers * sum(a * b for a, b in self.projections().values())

    @property
    def other_params(self) -> int:
        """What stays unquantized: embeddings, lm_head (unless tied), norms, biases."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.num_heads * self.head_dim, self.kv_dim
        per_layer = (2 * h + self.qkv_bias * (q + 2 * kv) + self.o_bias * h + self.mlp_bias * (2 * i + h)
                     + self.qk_norm * 2 * self.head_dim)
        return self.vocab_size * h * (1 if self.tie_word_embeddings else 2) + self.num_layers * per_layer + h

    @property
    def param_count(self) -> int:
        return self.linear_params + self.other_params


class RunShape(BaseModel):
    """What of a training run decides its memory (``TrainConfig`` maps onto it)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)

    batch_size: int = Field(4, ge=1)
    """Sequences per step per device."""
    seq_len: int = Field(1024, ge=1)
    """Tokens per sequence as the model sees them (padded or packed length)."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module suffixes to adapt (q_proj ... down_proj), or all-linear (all seven)."""
    quantization: Literal["none", "nf4", "int8"] = "nf4"
    """How the decoder layers' linear weights are stored."""
    double_quant: bool = True
    """NF4 double quantization (uint8 absmax with fp32 second-level scales)."""
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    """Dtype of the weights that are not quantized and of the compute (bfloat16 etc. are accepted too)."""
    optimizer: Literal["adamw", "adamw_torch", "paged_adamw_32bit", "adamw_8bit", "paged_adamw_8bit", "sgd"] = "adamw"
    """AdamW keeps two states per trainable parameter (fp32, or 8-bit); sgd (no momentum) keeps none."""
    gradient_checkpointing: bool = True
    """Recompute each layer in the backward (Unsloth: and offload the layer inputs to host RAM)."""
    backend: Literal["unsloth", "peft", "cpu"] = "peft"
    """Unsloth's fused kernels, transformers + peft (+ bitsandbytes) on CUDA, or peft on the CPU (host RAM)."""
    offload_activations: bool = False
    """peft with lorastack.finetune.offload: checkpointed layer inputs wait in host RAM (Unsloth always does this)."""
    chunked_loss: bool = False
    """The loss from the last hidden state a chunk of tokens at a time: no [tokens, vocab] logits held. Off here
    (the probe's loop); ``lorastack plan`` turns it on where ``training.chunked_loss`` applies."""
    fp32_unquantized: bool = False
    """On a quantized base, the weights that are not quantized (embeddings, norms, lm_head) upcast to fp32, as
    peft's prepare_model_for_kbit_training (and TRL, which calls it) does; lorastack's backends keep them."""
    processes: int = Field(1, ge=1)
    """Training processes, one per GPU (the estimate is per GPU)."""
    distributed: Literal["none", "ddp", "fsdp"] = "none"
    """ddp: a whole model per GPU plus DDP's gradient buckets; fsdp: weights, LoRA, gradients and optimizer states
    sharded over the processes, with the head and two decoder layers gathered whole at a time."""

    @field_validator("dtype", mode="before")
    @classmethod
    def _short_dtype(cls, value: Any) -> Any:
        return _DTYPE_ALIASES.get(value, value)

    @field_validator("target_modules")
    @classmethod
    def _known_modules(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and (not value or set(value) - set(PROJECTIONS)):
            unknown = sorted(set(value) - set(PROJECTIONS)) or "[]"
            raise ValueError(f"target_modules {unknown} not among {', '.join(PROJECTIONS)} (or all-linear)")
        return value

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def targets(self) -> tuple[str, ...]:
        return PROJECTIONS if self.target_modules == "all-linear" else tuple(dict.fromkeys(self.target_modules))


@dataclass(frozen=True)
class MemoryItem:
    name: str
    bytes: int
    note: str


@dataclass(frozen=True)
class MemoryPlan:
    """The predicted peak: the tensors alive at that moment, then what lies outside torch's count."""

    items: tuple[MemoryItem, ...]
    """Live at the peak; they sum to ``allocated_bytes``."""
    overhead: MemoryItem
    phase: str
    """When the peak happens: the loss backward, a layer's backward or the optimizer step."""
    device: str = "GPU"
    notes: tuple[str, ...] = ()

    @property
    def allocated_bytes(self) -> int:
        """Comparable with ``torch.cuda.max_memory_allocated()``, what the probe measured."""
        return sum(item.bytes for item in self.items)

    @property
    def total_bytes(self) -> int:
        """What the device needs: the peak plus the CUDA context and the allocator's slack."""
        return self.allocated_bytes + self.overhead.bytes

    def get(self, name: str) -> int:
        return sum(item.bytes for item in self.items if item.name == name)

    def rows(self) -> list[tuple[str, float, str]]:
        """(name, GiB, note) per line: the live tensors, the overhead, the total."""
        rows = [(item.name, item.bytes / GIB, item.note) for item in (*self.items, self.overhead)]
        return rows + [("total", self.total_bytes / GIB, f"during {self.phase}")]

    def table(self) -> str:
        rows = self.rows()
        width = max(len(name) for name, _, _ in rows)
        return "\n".join([f"{name:<{width}}  {gib:7.2f} GiB  {note}" for name, gib, note in rows]
                         + [f"note: {note}" for note in self.notes])

    @property
    def summary(self) -> str:
        return (f"peak {self.total_bytes / GIB:.2f} GiB of {self.device} memory "
                f"({self.allocated_bytes / GIB:.2f} GiB of tensors, during {self.phase})")


def estimate_memory(model: ModelShape, run: RunShape) -> MemoryPlan:
    """Predict the peak memory of a training step of ``run`` on ``model``."""
    unsloth = run.backend == "unsloth"
    tokens, h, vocab, layers = run.tokens, model.hidden_size, model.vocab_size, model.num_layers
    width = _DTYPE_BYTES[run.dtype]
    # On a quantized base peft's prepare_model_for_kbit_training (TRL calls it too) upcasts every unquantized
    # parameter to fp32: embeddings, norms and lm_head then emit fp32, so the residual stream, the layer
    # activations and the logits are fp32 too. Unsloth and lorastack's peft backend keep the model dtype.
    upcast = run.fp32_unquantized and run.quantization != "none" and not unsloth
    act = 4 if upcast else width

    lora_sizes = _lora_matrices(model, run)
    lora = 4 * sum(lora_sizes)  # fp32: peft (autocast_adapter_dtype) and Unsloth both upcast 16-bit adapters
    optim, optim_note = _optimizer_states(lora_sizes, run.optimizer)
    static = [
        MemoryItem("base weights", *_quantized_weights(model, run)),
        MemoryItem("embeddings, lm_head, norms", model.other_params * act,
                   f"{model.other_params / 1e6:.1f}M params, {'fp32 (peft upcasts them)' if upcast else run.dtype}"),
        MemoryItem("LoRA parameters", lora, f"{sum(lora_sizes) / 1e6:.2f}M params, r={run.lora_r}, fp32"),
        # Counted at every phase although the probe creates them only when the backward reaches the layers:
        # this overstates a loss-phase peak by their size (0.04 GiB on the 1B shape, 0.16 GiB on the 8B).
        MemoryItem("LoRA gradients", lora, "fp32"),
        MemoryItem("optimizer states", optim, optim_note),
    ]

    saved, temps = _layer_bytes(model, run, act)
    if unsloth:
        loss = _unsloth_ce(tokens, vocab)
        loss_note = "Unsloth's chunked cross-entropy: bf16 logits of a chunk, gradient written in place"
        held = 0  # it returns no logits
        final = 3 * 2 * h * tokens  # last hidden state, its norm, the loss's gradient for it
        kept = 2 * 2 * h * tokens  # offloaded checkpointing: a layer input on its way to or from host RAM
    else:
        logit = 4 if upcast else width
        if run.chunked_loss:
            chunk = min(tokens, max(1, CHUNK_ELEMENTS // vocab))
            # One chunk as below, plus the labelled positions' hidden states gathered and their gradient.
            loss = chunk * vocab * (logit + 12) + 2 * tokens * h * act
            loss_note = f"chunks of {chunk} x {vocab} logits, fp32 log-softmax and 2 fp32 gradients"
            held = 0  # no logits are returned
        else:
            # transformers' ForCausalLMLoss inside log_softmax's backward: the logits (the output keeps them),
            # the log-softmax of their fp32 copy, its gradient and the logits' fp32 gradient.
            loss = tokens * vocab * (logit + 12)
            loss_note = f"{tokens} x {vocab} logits ({logit * 8}-bit), fp32 log-softmax and 2 fp32 gradients"
            held = tokens * vocab * logit  # the probe's `out` keeps the logits through backward and step
        final = (2 * act + 4 * (act == 2)) * h * tokens  # last hidden state, the final norm (fp32 inside)
        # Checkpointing keeps every layer's input, or (offloaded) one on its way to or from host RAM.
        kept = (2 if run.offload_activations else layers) * act * h * tokens
    if run.gradient_checkpointing:
        stored, layer = kept, saved + temps
        offloaded = unsloth or run.offload_activations
        where = "layer inputs on their way to host RAM" if offloaded else f"the {layers} layers' inputs"
        layer_note = f"{where}, one layer recomputed and its backward"
    else:
        stored, layer = layers * (saved + act * h * tokens), temps
        where = layer_note = f"all {layers} layers' activations"

    phases = {
        "the loss backward": [("activations", stored + final, f"{where}, final hidden state"),
                              ("logits + loss", loss, loss_note)],
        "a layer's backward": [("activations", stored + layer, layer_note),
                               ("logits + loss", held, "logits still held by the output")],
        # torch's foreach AdamW makes about one fp32 copy of the parameters; SGD and bnb's fused kernels none.
        "the optimizer step": [("logits + loss", held, "logits still held by the output"),
                               ("optimizer temporaries", lora * (run.optimizer in ("adamw", "adamw_torch")),
                                "inside optimizer.step()")],
    }
    phase = max(phases, key=lambda p: sum(size for _, size, _ in phases[p]))
    static = _spread(static, model, run, act, lora)
    items = tuple(static + [MemoryItem(name, int(size), note) for name, size, note in phases[phase]])

    notes = list(model.assumptions)
    if run.backend == "cpu":
        overhead, device = MemoryItem("CUDA context + allocator", 0, "none on the CPU"), "host"
        notes.append("backend cpu: host RAM for tensors, on top of the Python process and its libraries")
    else:
        slack = int(_CUDA_CONTEXT + _ALLOCATOR_SLACK * sum(item.bytes for item in items))
        overhead, device = MemoryItem("CUDA context + allocator", slack, "~0.5 GiB + 10%, not measured"), "GPU"
    if (unsloth or run.offload_activations) and run.gradient_checkpointing:
        who = "Unsloth" if unsloth else "offload_activations"
        notes.append(f"{who} moves {layers * act * h * tokens / GIB:.2f} GiB of layer inputs to host RAM")
    if run.optimizer.startswith("paged"):
        notes.append("paged optimizer states move to host RAM when the GPU runs short")
    return MemoryPlan(items=items, overhead=overhead, phase=phase, device=device, notes=tuple(notes))


def _spread(static: list[MemoryItem], model: ModelShape, run: RunShape, act: int, lora: int) -> list[MemoryItem]:
    """The per-GPU share of the run's lasting tensors with several processes.

    DDP keeps a whole model per GPU and copies the gradients into its all-reduce buckets (as big as the trainable
    parameters in fp32). FSDP (accelerate's FSDP2 layout: a unit per decoder layer, the embeddings one, the final
    norm and the head one that stays gathered from the forward's end through the backward) keeps 1/N of every
    parameter, gradient and optimizer state, plus what is gathered whole at a time: the head unit, and two decoder
    layers (the one computing and the next one being fetched)."""
    n = run.processes
    if n == 1 or run.distributed == "none":
        return static
    if run.distributed == "ddp":
        return [*static, MemoryItem("DDP gradient buckets", lora, "a copy of the LoRA gradients (fp32) for all-reduce")]
    shard = [MemoryItem(item.name, -(-item.bytes // n), f"{item.note}; 1/{n} per GPU (FSDP)") for item in static]
    weights = _quantized_weights(model, run)[0]
    layer = weights // model.num_layers + 2 * model.hidden_size * act
    head = model.vocab_size * model.hidden_size * act + model.hidden_size * act
    gathered = 2 * layer + head + 2 * 4 * sum(_lora_matrices(model, run)) // model.num_layers
    note = "2 decoder layers (computing, prefetched) and the head, whole while they run"
    return [*shard, MemoryItem("FSDP gathered weights", int(gathered), note)]


def largest_batch(model: ModelShape, run: RunShape, gpu_bytes: int, limit: int = 1 << 16) -> int:
    """The largest batch_size (up to ``limit``) whose predicted total fits in ``gpu_bytes``; 0 if 1 does not."""

    def fits(batch: int) -> bool:
        return estimate_memory(model, run.model_copy(update={"batch_size": batch})).total_bytes <= gpu_bytes

    if not fits(1):
        return 0
    low, high = 1, 2  # memory grows with the batch: double until it does not fit, then bisect
    while high <= limit and fits(high):
        low, high = high, 2 * high
    high = min(high, limit + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def _quantized_weights(model: ModelShape, run: RunShape) -> tuple[int, str]:
    """Bytes of the decoder layers' linear weights as stored, with their quantization constants."""
    n = model.linear_params
    if run.quantization == "none":
        return n * _DTYPE_BYTES[run.dtype], f"{n / 1e9:.2f}B params, {run.dtype}"
    if run.quantization == "int8":  # LLM.int8: a byte a weight and an fp32 scale per output row
        rows = model.num_layers * sum(out for _, out in model.projections().values())
        return n + 4 * rows, f"{n / 1e9:.2f}B params, int8 + fp32 row scales"
    blocks = [math.ceil(a * b / _NF4_BLOCK) for a, b in model.projections().values()] * model.num_layers
    if run.double_quant:
        absmax = sum(b + 4 * math.ceil(b / _NF4_NESTED_BLOCK) for b in blocks)
        how = "uint8 absmax per 64 + fp32 per 16384 (double quant)"
    else:
        absmax, how = 4 * sum(blocks), "fp32 absmax per 64"
    return n // 2 + absmax, f"{n / 1e9:.2f}B params, NF4 + {how}"


def _lora_matrices(model: ModelShape, run: RunShape) -> list[int]:
    """Element counts of every LoRA A and B matrix."""
    shapes = model.projections()
    return [run.lora_r * side for t in run.targets for side in shapes[t]] * model.num_layers


def _optimizer_states(sizes: list[int], optimizer: str) -> tuple[int, str]:
    if optimizer == "sgd":
        return 0, "SGD without momentum keeps none"
    if optimizer.endswith("8bit"):
        total = sum(2 * (n + 4 * math.ceil(n / _OPT8_BLOCK)) if n >= _OPT8_MIN_SIZE else 8 * n for n in sizes)
        return total, "2 states per param, 8-bit blockwise (bitsandbytes)"
    return 8 * sum(sizes), "2 fp32 states per param (AdamW)"


def _layer_bytes(model: ModelShape, run: RunShape, act: int) -> tuple[int, int]:
    """Bytes one decoder layer saves for its backward, and the most its backward adds on top.

    Counted from the forward code of transformers' Llama layer under peft (torch saves an op's input only
    when a gradient needs it; frozen weights need none) and of Unsloth's fused kernels; checked on the H100
    against 13 probe runs besides the six in benchmarks/results/ (1B/8B, bf16/fp32/QLoRA-like, checkpointing on/off).
    """
    h, kv, i, t = model.hidden_size, model.kv_dim, model.intermediate_size, run.tokens
    q, chosen, r = model.num_heads * model.head_dim, set(run.targets), run.lora_r
    if run.backend == "unsloth":
        # Two norm outputs, Q, the attention output and its contiguous copy, the residual sum; K and V; the
        # fused LoRA MLP's gate and up. Its kernels cast the LoRA weights to bf16, so inputs are not copied.
        scale = act / 2
        saved = scale * (2 * (4 * h + 2 * q) + 2 * 2 * kv + 2 * 2 * i) + 4 * r * len(chosen)
        temps = scale * (4 * h + _UNSLOTH_MLP_TEMP * i)  # dY and dX, and the fitted MLP backward
        return int(saved * t), int(temps * t)
    attn_lora, mlp_lora = chosen & set(PROJECTIONS[:4]), chosen & set(PROJECTIONS[4:])
    if act == 4:
        # fp32 stream (QLoRA after the upcast, or fp32 weights): LoRA keeps the very input it shares with
        # its neighbours (a norm output, the attention output's contiguous copy, the SwiGLU product).
        lora_attn = 4 * h * bool(attn_lora - {"o_proj"}) + 4 * q * ("o_proj" in chosen)
        lora_mlp = 4 * h * bool(mlp_lora - {"down_proj"}) + 4 * i * ("down_proj" in chosen)
        norm1, norm2 = 0, 4 * h  # a norm keeps its input; the first one's is the layer input, held anyway
    else:
        # 16-bit stream with fp32 LoRA: every adapted layer keeps its own fp32 copy of its input.
        fan_in = {m: shape[0] for m, shape in model.projections().items()}
        lora_attn, lora_mlp = sum(4 * fan_in[m] for m in attn_lora), sum(4 * fan_in[m] for m in mlp_lora)
        norm1 = norm2 = 4 * h  # RMSNorm keeps its fp32 upcast of the input
    lora_attn += 4 * r * len(attn_lora)  # LoRA A outputs
    lora_mlp += 4 * r * len(mlp_lora)
    attention = act * (2 * q + 2 * kv)  # SDPA keeps q, k, v and its output
    attention_temps = attention  # their gradients
    if act == 4 and model.num_kv_heads < model.num_heads:
        # fp32 with GQA: flash needs 16 bit and the memory-efficient kernel refuses enable_gqa, so SDPA takes
        # its math path. It keeps the softmax (heads x seq_len per token) and peaks at four of that size:
        # measured, +2.0 GiB on the 1B and 8B shapes when seq_len doubles at the same number of tokens.
        scores = act * model.num_heads * run.seq_len
        attention, attention_temps = attention + scores, attention_temps + 3 * scores
    mlp = act * 3 * i  # gate (for SiLU's backward), SiLU(gate) and up (for the product's backward)
    mlp_temps = act * (2 * i + 2 * h)  # gradients of two MLP intermediates and of the layer's output and input
    saved_attn, saved_mlp = norm1 + attention + lora_attn, norm2 + mlp + lora_mlp
    # The MLP's backward runs first, with everything saved; by the attention's backward the MLP's saved
    # tensors are freed. The worse of the two moments counts.
    return (saved_attn + saved_mlp) * t, max(mlp_temps, attention_temps - saved_mlp) * t


def _unsloth_ce(tokens: int, vocab: int) -> int:
    # A chunk holds at most target / 16 bytes worth of logits; the real chunk (tokens split evenly) is at
    # most that, and taking the cap keeps the estimate growing with the batch, as largest_batch needs.
    return min(tokens * vocab, _UNSLOTH_CE_TARGET // _UNSLOTH_CE_COSTED) * _UNSLOTH_CE_LIVE
