"""The adapter card: what an adapter was trained from and how, next to its weights.

``card.json`` is for programs (the registry folds it into its own card as ``training``); ``README.md``
is the same for people.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorastack.finetune.choices import RunChoices
from lorastack.finetune.config import TrainConfig
from lorastack import __version__
from lorastack.errors import LorastackError
from lorastack.models import BaseModel
from lorastack.serve.compatibility import inspect_adapter
from lorastack.serve.registry import TRAINING_CARD, file_sha256


def _base_revision(base: BaseModel) -> str | None:
    """A commit for hub models, the weights' content hash for local folders (None if unknown)."""
    if base.is_local:
        weights = sorted(Path(base.path).glob("*.safetensors"))
        return f"sha256:{file_sha256(weights[0])[:16]}" if len(weights) == 1 else None
    try:
        from huggingface_hub import model_info

        return model_info(base.path).sha
    except Exception:  # offline, gated, or renamed: the card records what it can
        return None


def _saved_lora(adapter_dir: Path, config: TrainConfig) -> dict[str, Any]:
    """The LoRA shape the adapter was saved with, as the registry reads it (with lora.init_from, the start adapter's
    shape, whatever lora.r and targets say); the config's if the folder cannot be read."""
    try:
        info = inspect_adapter(adapter_dir)
    except LorastackError:
        return {"r": config.lora.r, "alpha": config.lora.alpha, "target_modules": config.lora.target_modules}
    return {"r": info.rank, "alpha": info.alpha, "target_modules": info.target_modules}


def write_card(
    adapter_dir: Path,
    *,
    config: TrainConfig,
    base: BaseModel,
    choices: RunChoices,
    metrics: dict[str, Any],
    data_hash: str,
    template_hash: str,
    data_stats: Any,
    loss_curve: Path | None,
) -> dict[str, Any]:
    card = {
        "base_model": base.name,
        "base_model_path": base.path,
        "base_model_source": base.source,
        "base_model_revision": _base_revision(base),
        "data_sha256": data_hash,
        "data": str(data_stats),
        "chat_template_sha256": template_hash,
        "backend": choices.backend,
        "quantization": choices.quantization,
        "compute_dtype": choices.compute_dtype,
        "optimizer": choices.optimizer,
        "attention": choices.attention,
        "gradient_checkpointing": choices.gradient_checkpointing,
        "offload_activations": choices.offload_activations,
        "lora": _saved_lora(adapter_dir, config),
        "config": json.loads(config.model_dump_json()),
        "metrics": metrics,
        "loss_curve": loss_curve.name if loss_curve else None,  # next to adapter/, in the run folder
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "lorastack_version": __version__,
    }
    (adapter_dir / TRAINING_CARD).write_text(json.dumps(card, indent=2) + "\n")
    lines = [
        f"# LoRA adapter for {base.name}",
        "",
        f"Trained with lorastack {__version__} ({choices.backend} backend, base weights {choices.quantization}, "
        f"compute {choices.compute_dtype}).",
        "",
        f"- LoRA: r={card['lora']['r']}, alpha={card['lora']['alpha']:g}, targets {card['lora']['target_modules']}"
        + (f" (from {config.lora.init_from})" if config.lora.init_from else ""),
        f"- Data: {data_stats} (sha256 {data_hash[:16]})",
        f"- Chat template sha256: {template_hash[:16]}",
        *[f"- {k}: {v}" for k, v in metrics.items()],
        "",
        f"Serve it: `lorastack adapters register NAME {adapter_dir}` then `lorastack adapters load NAME`.",
    ]
    (adapter_dir / "README.md").write_text("\n".join(lines) + "\n")
    return card
