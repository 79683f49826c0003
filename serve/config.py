"""The one typed config of ``lorastack serve``. Field docstrings are the CLI's ``--help`` text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lorastack.lora import VLLM_LORA_RANKS


DEFAULT_MIN_RANK = 16


class ServeConfig(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    base_model: str | None = None
    """Base model: a Hugging Face hub id, a local model folder, hf://ORG/REPO[@REVISION][/SUBFOLDER] or
    s3://BUCKET/PREFIX (fetched first), or unset for the embedded default (SmolLM2-135M-Instruct)."""
    host: str = "127.0.0.1"
    """Address to listen on. The default is this machine only; 0.0.0.0 exposes the server to the network."""
    port: int = Field(8000, ge=1, le=65535)
    """TCP port of the OpenAI-compatible API."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Which vLLM build to run: auto picks CUDA when the official vllm package and a GPU are present, else
    the CPU build."""
    max_lora_rank: int | None = None
    """Largest LoRA rank the server accepts (one of 1, 8, 16, 32, 64, 128, 256, 320, 512). Unset: the
    smallest of those that fits every registered adapter, at least 16."""
    max_loras: int | None = Field(None, ge=1)
    """How many adapters can be active in one batch. Unset: 8 on CUDA, 4 on CPU (each slot costs GPU memory
    for max_lora_rank-sized weights; fewer slots than adapters in use make requests wait for a free one)."""
    max_cpu_loras: int | None = Field(None, ge=1)
    """How many adapters vLLM keeps in host memory (>= max_loras). Unset: 4 x max_loras on CUDA, so adapters in
    rotation and versions loaded beside them in a promotion are never read from disk again mid-batch; vLLM's
    default (max_loras) on CPU."""
    max_loaded: int | None = Field(None, ge=1)
    """Most adapters kept loaded at once: a request for another registered adapter unloads the least recently used
    one that is not pinned (versions behind aliases are, unless unpinned; see lorastack adapters pin). Also sizes
    vLLM's slots: max_cpu_loras = max_loaded, max_loras = at most max_loaded. Unset: no limit."""
    load_on_request: bool = True
    """Load a registered adapter (or an alias's version) when a request first names it, instead of answering 404
    until lorastack adapters load."""
    max_model_len: int = Field(2048, ge=128)
    """Context length in tokens (prompt + completion)."""
    dtype: str = "auto"
    """Weight dtype for vLLM. auto: float32 on CPU (faster than bfloat16 without bf16 hardware), the
    model's own dtype on CUDA."""
    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs to shard the model over (CUDA only)."""
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """Share of each GPU's memory vLLM may use (CUDA only)."""
    cpu_kv_cache_gib: int = Field(1, ge=1)
    """KV-cache size in GiB (CPU only)."""
    chat_template: Path | None = None
    """A Jinja chat template file to use instead of the model's own. Unset: the model's own, except for the
    embedded default, which gets lorastack's tool-aware ChatML template."""
    tool_call_parser: str | None = None
    """vLLM tool-call parser (hermes, llama3_json, mistral, ...) for OpenAI tool calling; 'none' turns it off.
    Unset: hermes for the embedded default; off for other models (the agent then uses its text ReAct mode)."""
    vllm_url: str | None = None
    """Attach the front door to a vLLM server that is already running (e.g. the vllm service of compose.yaml)
    instead of starting one; it must run with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True."""
    vllm_api_key: str | None = None
    """With --vllm-url: the API key that vLLM was started with (its --api-key), if any. A vLLM that lorastack starts
    gets a new random key at every start, known to the front door only."""
    demo_adapter: bool = True
    """On the embedded model, register and load the bundled tools-demo adapter as the default alias (the
    first time only; afterwards the registry decides)."""
    workers: int | None = Field(None, ge=1, le=64)
    """Front-door worker processes sharing the port, each relaying streams on a core of its own, behind one control
    process that keeps aliases, loads and promotions. Unset: 1 on CPU (one process does both); on CUDA, a quarter
    of this machine's cores, at most 4 (one Python process relays about 12k streamed tokens/s)."""
    startup_timeout: float = Field(900, gt=0)
    """Seconds to wait for the server to become healthy."""
    jobs_recipe: Path | None = None
    """A training recipe (YAML, as for lorastack train) that every fine-tuning job of the API starts from: LoRA
    settings, data.max_length, save_steps... The job's data, n_epochs, batch_size and learning_rate_multiplier (times
    the recipe's learning_rate) go over it. Unset: lorastack train's defaults."""
    max_file_mib: int = Field(512, ge=1)
    """Largest file the files API accepts (POST /v1/files), in MiB."""
    extra_args: list[str] = []
    """Further vLLM arguments, passed through unchanged."""

    @field_validator("max_lora_rank")
    @classmethod
    def _rank_vllm_accepts(cls, value: int | None) -> int | None:
        if value is not None and value not in VLLM_LORA_RANKS:
            raise ValueError(f"max_lora_rank ({value}) must be one of {', '.join(map(str, VLLM_LORA_RANKS))}")
        return value

    @model_validator(mode="after")
    def _cpu_loras_hold_a_batch(self) -> ServeConfig:
        if self.max_cpu_loras is not None and self.max_cpu_loras < (self.max_loras or 1):
            raise ValueError(f"max_cpu_loras ({self.max_cpu_loras}) must be >= max_loras ({self.max_loras})")
        return self

    @model_validator(mode="after")
    def _loaded_fit_the_slots(self) -> ServeConfig:
        if self.max_loaded is not None and self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loaded:
            raise ValueError(f"max_cpu_loras ({self.max_cpu_loras}) must be >= max_loaded ({self.max_loaded})")
        return self

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def lora_slots(config: ServeConfig, device: str) -> tuple[int, int | None]:
    """``(max_loras, max_cpu_loras)`` the server runs with on ``device`` (cpu, cuda, or external: a vLLM that
    compose.yaml runs on a GPU); None leaves vLLM's default.

    On CUDA, 8 batch slots keep 8 adapters in round-robin from queueing for a slot (vLLM alone on an H200, 1B
    shape: 8 adapters round-robin at 0.895x base-only throughput with 8 slots), and 4 x that in host memory
    keeps hot-loaded adapters and promotion candidates from evicting one another.
    With ``max_loaded``, vLLM's host cache holds exactly the adapters the front door keeps loaded (so none is read
    from disk again while it stays loaded) and no more batch slots than that are reserved.
    """
    if config.max_loaded is not None:
        max_loras = min(config.max_loras or (4 if device == "cpu" else 8), config.max_loaded)
        return max_loras, config.max_cpu_loras or max(config.max_loaded, max_loras)
    if device == "cpu":
        return config.max_loras or 4, config.max_cpu_loras
    max_loras = config.max_loras or 8
    return max_loras, config.max_cpu_loras or 4 * max_loras


def fitting_rank(ranks: list[int]) -> int:
    """The smallest rank vLLM accepts that fits all ``ranks`` (never below :data:`DEFAULT_MIN_RANK`)."""
    need = max([DEFAULT_MIN_RANK, *ranks])
    return next(r for r in VLLM_LORA_RANKS if r >= need)


def front_door_workers(config: ServeConfig, device: str) -> int:
    """How many front-door worker processes ``config`` runs with on ``device`` (1: the front door is one process)."""
    if config.workers is not None:
        return config.workers
    if device == "cpu":
        return 1
    return max(1, min(4, (os.cpu_count() or 1) // 4))
