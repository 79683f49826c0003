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
FINE_TUNED_PATTERN = re.compile(
    r"ft:[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?:[A-Za-z0-9._-]{0,64}:[a-z0-9][a-z0-9-]{0,63}"
)
"""The alias a fine-tuning job's result is served under: ``ft:BASE:SUFFIX:JOB_ID`` (OpenAI's shape)."""
ALL_LINEAR = "all-linear"
"""peft's shorthand for every linear layer but the output layer; it fits any base model that has linear layers."""

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
    target_spec: str | tuple[str, ...] = ()
    """``target_modules`` as written: names (a module whose path ends with one is a target), or one regex string
    that a module's whole path must match (peft's rules), or ``all-linear``."""


def check_name(name: str) -> str:
    """Refuse adapter names that would not be safe as a served model name and a folder name."""
    if not NAME_PATTERN.fullmatch(name) or len(name) > NAME_MAX:
        raise AdapterRejected(
            f"Adapter name {name!r} is not allowed.",
            f"Use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, "
            f"at most {NAME_MAX} characters (e.g. 'support-v2').",
        )
    return name


def check_alias(alias: str) -> str:
    """An alias is an adapter-style name, or a fine-tuned model name (``ft:BASE:SUFFIX:JOB_ID``); never a path."""
    if FINE_TUNED_PATTERN.fullmatch(alias) and len(alias) <= 256:
        return alias
    return check_name(alias)


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
    raw_targets = config.get("target_modules") or []
    if not isinstance(raw_targets, (str, list)) or not all(isinstance(t, str) for t in raw_targets):
        raise AdapterRejected(
            f"{config_file} has target_modules {raw_targets!r}; peft expects a list of module names or a regex.",
            "Re-save the adapter with peft's save_pretrained.",
        )
    targets = [raw_targets] if isinstance(raw_targets, str) else list(raw_targets)
    saved = config.get("modules_to_save") or []
    if saved:
        raise AdapterRejected(
            f"{path} also trains whole modules (modules_to_save: {saved!r}); vLLM serves only the LoRA weights and "
            "would silently serve those modules untrained, so the served adapter would not be the trained one.",
            "Retrain without modules_to_save (LoRA on those layers instead, e.g. target_modules='all-linear'), "
            "or merge the adapter into the base model (lorastack export) and serve that.",
        )

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
        target_spec=raw_targets if isinstance(raw_targets, str) else tuple(raw_targets),
    )


def check_compatible(info: AdapterInfo, base: BaseModel, base_shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse an adapter that was trained on another base model or targets modules the base lacks."""
    if info.base_model and not base.matches(info.base_model):
        raise AdapterRejected(
            f"{info.path.name} was trained on {info.base_model}, but the base model here is {base.name}.",
            f"Retrain it on {base.name}, or serve {info.base_model} with --base-model.",
        )
    base_modules = {k[: -len(".weight")] for k in base_shapes if k.endswith(".weight")}
    _check_targets(info, base, base_modules)
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


def _check_targets(info: AdapterInfo, base: BaseModel, base_modules: set[str]) -> None:
    """Refuse ``target_modules`` (in adapter_config.json) that name modules the base model lacks.

    The weights alone can fit while the config does not: peft (0.21) refuses a config none of whose targets the
    base has, and loads one with only some missing without a word. Either way the config was written for another
    model, so every entry must name a module here.
    """
    spec = info.target_spec
    hint = (
        f"Fix target_modules in {CONFIG_FILE} to name modules {base.name} has (e.g. 'q_proj', or 'all-linear'), "
        "or retrain the adapter on this base model."
    )
    if isinstance(spec, str):
        if spec.lower() == ALL_LINEAR:
            return
        try:
            pattern = re.compile(spec)
        except re.error as exc:
            raise AdapterRejected(
                f"{info.path.name}'s target_modules {spec!r} is not a valid regular expression ({exc}).", hint
            ) from None
        if not any(pattern.fullmatch(module) for module in base_modules):
            example = next((m for m in sorted(base_modules) if ".0." in m), min(base_modules, default="-"))
            raise AdapterRejected(
                f"{info.path.name}'s target_modules regex {spec!r} matches no module of {base.name} (the regex "
                f"must match a whole module path, such as {example}).",
                hint,
            )
        return
    # peft: a name matches a module whose whole path is the name or ends with "." + the name.
    missing = [t for t in spec if not any(m == t or m.endswith("." + t) for m in base_modules)]
    if missing:
        raise AdapterRejected(
            f"{info.path.name}'s {CONFIG_FILE} names target_modules that {base.name} lacks: "
            f"{', '.join(sorted(missing))}.",
            hint,
        )


def check_rank(info: AdapterInfo, max_lora_rank: int) -> None:
    """Refuse an adapter whose rank is above what a running server allows."""
    if info.rank > max_lora_rank:
        raise AdapterRejected(
            f"{info.path.name} has LoRA rank {info.rank}, above the server's --max-lora-rank {max_lora_rank}.",
            "Restart the server (lorastack serve sizes --max-lora-rank to fit every registered adapter).",
        )
