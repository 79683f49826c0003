"""The compatibility check: can this adapter folder be served on this base model?

Every refusal is an :class:`AdapterRejected` whose message says what is wrong and whose hint says
how to fix it. The check only reads; it never changes the registry or the server.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lorastack.errors import AdapterRejected, NotFound
from lorastack.lora import MAX_LORA_RANK
from lorastack.models import BaseModel, safetensors_shapes

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
NAME_MAX = 64
"""The largest ``--max-lora-rank`` vLLM accepts."""

_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class AdapterInfo:
    """What the check read from an adapter folder."""

    path: Path
    rank: int
    alpha: float
    target_modules: list[str]
    base_model: str | None
    # module path -> (lora_A shape, lora_B shape)
    modules: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)


def check_name(name: str) -> str:
    """Refuse adapter names that would not be safe as a served model name and a folder name."""
    if not NAME_PATTERN.fullmatch(name) or len(name) > NAME_MAX:
        raise AdapterRejected(
            f"Adapter name {name!r} is not allowed.",
            f"Use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, "
            f"at most {NAME_MAX} characters (e.g. 'support-v2').",
        )
    return name


def inspect_adapter(path: Path) -> AdapterInfo:
    """Read and check an adapter folder on its own (no base model needed)."""
    if not path.exists():
        raise NotFound(f"Adapter folder {path} does not exist.", "Check the path.")
    if not path.is_dir():
        raise AdapterRejected(
            f"{path} is a file; an adapter is a folder.",
            f"Give the folder that holds {CONFIG_FILE} and {WEIGHTS_FILE}.",
        )
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise AdapterRejected(
            f"{path} has no {CONFIG_FILE}, so it is not a PEFT adapter.",
            "Save the adapter with peft's model.save_pretrained(folder) (or lorastack train).",
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterRejected(
            f"{config_file} is not valid JSON ({exc}).",
            "Re-save the adapter with peft's save_pretrained; do not edit the file by hand.",
        ) from None
    if not isinstance(config, dict):
        raise AdapterRejected(f"{config_file} is not a JSON object.", "Re-save the adapter with peft.")
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise AdapterRejected(
            f"{path} is a {peft_type or 'untyped'} adapter, not LoRA (peft_type in {CONFIG_FILE}).",
            "vLLM serves LoRA adapters only: train one with LoraConfig (or lorastack train).",
        )
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterRejected(
            f"{config_file} has no valid LoRA rank 'r' (found {rank!r}).",
            "Re-save the adapter with peft's save_pretrained.",
        )
    ranks = [rank, *[v for v in (config.get("rank_pattern") or {}).values() if isinstance(v, int)]]
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)

    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        pickled = [p for p in PICKLE_WEIGHTS if (path / p).is_file()]
        if pickled:
            raise AdapterRejected(
                f"{path} has pickle weights ({pickled[0]}); lorastack accepts safetensors only, since "
                "loading a pickle can run arbitrary code.",
                "Re-save with model.save_pretrained(folder, safe_serialization=True).",
            )
        raise AdapterRejected(f"{path} has no {WEIGHTS_FILE}.", "Re-save the adapter with peft's save_pretrained.")
    try:
        shapes = safetensors_shapes(weights)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise AdapterRejected(
            f"{weights} is not a readable safetensors file ({exc}).", "Re-save the adapter; the file is damaged."
        ) from None
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        m = _LORA_KEY.match(key)
        if m:
            modules.setdefault(m["module"], {})[m["ab"]] = shape
    if not modules:
        raise AdapterRejected(f"{weights} holds no LoRA weights (no lora_A/lora_B tensors).", "Re-save the adapter.")
    if max(ranks) > MAX_LORA_RANK:
        raise AdapterRejected(
            f"{path} has LoRA rank {max(ranks)}; vLLM serves ranks up to {MAX_LORA_RANK}.",
            f"Retrain with r <= {MAX_LORA_RANK}.",
        )
    return AdapterInfo(
        path=path,
        rank=max(ranks),
        alpha=float(config.get("lora_alpha") or rank),
        target_modules=sorted(targets),
        base_model=config.get("base_model_name_or_path"),
        modules=modules,
    )


def check_compatible(info: AdapterInfo, base: BaseModel, base_shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse an adapter that was trained on another base model or targets modules the base lacks."""
    if info.base_model and not base.matches(info.base_model):
        raise AdapterRejected(
            f"{info.path.name} was trained on {info.base_model}, but the base model here is {base.name}.",
            f"Retrain it on {base.name}, or serve {info.base_model} with --base-model.",
        )
    base_modules = {k[: -len(".weight")] for k in base_shapes if k.endswith(".weight")}
    missing = sorted(m for m in info.modules if m not in base_modules)
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise AdapterRejected(
            f"{info.path.name} targets modules that {base.name} lacks: {', '.join(missing[:3])}{more}.",
            "Train the adapter on this base model, with target_modules it has (e.g. 'all-linear').",
        )
    for module, ab in info.modules.items():
        out_features, in_features = base_shapes[module + ".weight"][:2]
        a, b = ab.get("A"), ab.get("B")
        if (a and a[-1] != in_features) or (b and b[0] != out_features):
            raise AdapterRejected(
                f"{info.path.name} does not fit {base.name}: {module} is {in_features}->{out_features} in "
                f"the base model but the adapter's weights are shaped {a} and {b}.",
                f"The adapter was trained on another base model: retrain it on {base.name}.",
            )


def check_rank(info: AdapterInfo, max_lora_rank: int) -> None:
    """Refuse an adapter whose rank is above what a running server allows."""
    if info.rank > max_lora_rank:
        raise AdapterRejected(
            f"{info.path.name} has LoRA rank {info.rank}, above the server's --max-lora-rank {max_lora_rank}.",
            "Restart the server (lorastack serve sizes --max-lora-rank to fit every registered adapter).",
        )
