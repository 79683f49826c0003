"""``lorastack export --merge``: fold an adapter into its base model's weights."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from lorastack.errors import AlreadyExists
from lorastack.models import BaseModel, resolve_base_model, resolve_recorded_base
from lorastack.serve.compatibility import CONFIG_FILE, inspect_adapter

logger = logging.getLogger(__name__)


def _adapter_folder(ref: str) -> Path:
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    from lorastack.serve.registry import Registry  # only for a registered name, not a folder

    return Registry().get(ref).path


def _base_for(adapter_dir: Path, base_model: str | None) -> BaseModel:
    """``--base-model`` if given, else what the adapter was trained on (a folder, a hub id, or the embedded one)."""
    if base_model is not None:
        return resolve_base_model(base_model)
    recorded = json.loads((adapter_dir / CONFIG_FILE).read_text()).get("base_model_name_or_path") or ""
    return resolve_recorded_base(recorded)


def export_merged(ref: str, out: Path, base_model: str | None = None) -> Path:
    """Merge adapter ``ref`` (a folder or a registered name) into its base model; write the result to ``out``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out.exists() and any(out.iterdir()):
        raise AlreadyExists(f"{out} is not empty.", "Choose a new --out folder.")
    adapter_dir = _adapter_folder(ref)
    inspect_adapter(adapter_dir)  # the same compatibility check as serving: LoRA, safetensors, readable
    base = _base_for(adapter_dir, base_model)
    logger.info("Merging %s into %s...", adapter_dir, base.name)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    if base.chat_template is not None:
        # Served on its own, the merged model should speak the template it was trained in.
        tokenizer.chat_template = base.chat_template.read_text()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return out
