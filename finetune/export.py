"""``lorastack export --merge``: fold an adapter into its base model's weights."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from lorastack import __version__
from lorastack.errors import AlreadyExists
from lorastack.models import BaseModel, resolve_base_model, resolve_recorded_base
from lorastack.serve.compatibility import CONFIG_FILE, inspect_adapter
from lorastack.serve.registry import TRAINING_CARD

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
    copy_card(adapter_dir, partial, base.name)
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return out


def copy_card(adapter_dir: Path, out: Path, base_name: str) -> None:
    """Give merged model folder ``out`` the adapter's training card (``training_card.json`` with a ``merged`` entry
    saying so) and README.md (with a line saying so), where the adapter has them."""
    when = datetime.now(UTC).isoformat(timespec="seconds")
    card_file = adapter_dir / TRAINING_CARD
    if card_file.is_file():
        card = json.loads(card_file.read_text())
        card["merged"] = {"into": base_name, "from_adapter": str(adapter_dir.resolve()), "created": when,
                          "lorastack_version": __version__}  # fmt: skip
        (out / TRAINING_CARD).write_text(json.dumps(card, indent=2) + "\n")
    readme = adapter_dir / "README.md"
    if readme.is_file():
        note = (f"Merged into the base weights of {base_name} by `lorastack export` (lorastack {__version__}, {when}): "
                "this folder is a plain model, served without LoRA; the LoRA details above describe its training.")
        # The adapter's "Serve it: lorastack adapters register ..." line does not apply to a merged model.
        kept = [line for line in readme.read_text().splitlines() if not line.startswith("Serve it:")]
        (out / "README.md").write_text("\n".join(kept).rstrip("\n") + "\n\n" + note + "\n")
