"""Recipes as a new user meets them: planned offline, data found beside the recipe, help that shows its examples,
and a merged export that keeps the training card."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorastack.cli import app
from lorastack.errors import LorastackError
from lorastack.finetune.choices import importable
from lorastack.finetune.config import load_train_config
from lorastack.finetune.data import validate
from lorastack.finetune.memory import ModelShape
from lorastack.finetune.memory_plan import plan_for

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "finetune" / "recipes").glob("**/*.yaml"))


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The network is unreachable: offline mode, and any hub download fails at once."""
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)


def test_every_shipped_recipe_plans_offline(no_hub) -> None:
    """`lorastack plan` of the 8B recipe waited 25 s for the hub, then failed: its config now ships with lorastack."""
    assert len(RECIPES) >= 3
    started = time.perf_counter()
    for recipe in RECIPES:
        estimate, largest = plan_for(load_train_config(recipe), 24)
        assert estimate.allocated_bytes > 0 and largest >= 1, recipe
    assert time.perf_counter() - started < 30


def test_the_8b_recipe_plans_the_real_llama_31_8b(no_hub) -> None:
    """Golden figure (lorastack's planner as of this commit, peft backend, no Unsloth installed): 7.17 GiB of tensors,
    8.39 GiB in all. The benchmark's 8B shape (vocabulary 49,152) plans 5.97 GiB."""
    shape = ModelShape.from_pretrained("meta-llama/Llama-3.1-8B-Instruct")
    assert (shape.hidden_size, shape.intermediate_size, shape.num_layers, shape.num_heads, shape.num_kv_heads,
            shape.vocab_size, shape.tie_word_embeddings) == (4096, 14336, 32, 32, 8, 128256, False)  # fmt: skip
    estimate, _ = plan_for(load_train_config(ROOT / "finetune" / "recipes" / "llama-3.1-8b-qlora.yaml"), 24)
    if not importable("unsloth"):  # with Unsloth installed here, plan predicts Unsloth's own shape
        assert round(estimate.allocated_bytes / 2**30, 2) == 7.17


def test_plan_command_works_offline(no_hub) -> None:
    result = CliRunner().invoke(app, ["plan", str(ROOT / "finetune" / "recipes" / "llama-3.1-8b-qlora.yaml")])
    assert result.exit_code == 0, result.output
    assert "Largest batch_size" in result.output


def test_recipe_data_is_found_beside_the_recipe(tmp_path: Path, one_chat: Path, monkeypatch) -> None:
    """Data paths resolved from the current directory: a recipe run from elsewhere said "does not exist"."""
    recipes = tmp_path / "recipes"
    (recipes / "data").mkdir(parents=True)
    (recipes / "data" / "chats.jsonl").write_text(one_chat.read_text())
    (recipes / "tpl.jinja").write_text("{{ messages }}")
    (recipes / "r.yaml").write_text(
        "data:\n  path: data/chats.jsonl\n  eval_path: data/chats.jsonl\n  chat_template: tpl.jinja\noutput_dir: runs/x\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_train_config(Path("../recipes/r.yaml"))
    assert config.data.path.resolve() == (recipes / "data" / "chats.jsonl").resolve()
    assert config.data.eval_path.resolve() == config.data.path.resolve()
    assert config.data.chat_template.resolve() == (recipes / "tpl.jinja").resolve()
    assert config.output_dir == Path("runs/x")  # the run lands where it is started, as in torchtune and axolotl
    validate(config.data)  # found and checked

    # KEY=VALUE overrides stay relative to the current directory.
    (elsewhere / "mine.jsonl").write_text(one_chat.read_text())
    assert load_train_config(Path("../recipes/r.yaml"), ["data.path=mine.jsonl"]).data.path == Path("mine.jsonl")
    with pytest.raises(LorastackError, match="does not exist"):
        validate(load_train_config(Path("../recipes/r.yaml"), ["data.path=data/chats.jsonl"]).data)


def test_shipped_sample_recipe_runs_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    validate(load_train_config(ROOT / "finetune" / "recipes" / "smollm2-135m-tools.yaml").data)


def test_train_help_shows_bracketed_examples() -> None:
    """Rich read "(e.g. [q_proj, v_proj])" as a markup tag and showed "(e.g. )"."""
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "(e.g. )" not in text and "(e.g. [q_proj, v_proj])" in text


def test_merged_export_keeps_the_training_card(tmp_path: Path) -> None:
    """A merged model folder had no training card."""
    from lorastack.finetune.export import copy_card

    adapter, out = tmp_path / "adapter", tmp_path / "merged"
    adapter.mkdir()
    out.mkdir()
    (adapter / "training_card.json").write_text(json.dumps({"base_model": "B", "metrics": {"steps": 3}}))
    (adapter / "README.md").write_text("# LoRA adapter for B\n\n- steps: 3\n\nServe it: `lorastack adapters register`\n")
    copy_card(adapter, out, "B")
    card = json.loads((out / "training_card.json").read_text())
    assert card["metrics"] == {"steps": 3} and card["merged"]["into"] == "B"
    assert card["merged"]["from_adapter"] == str(adapter.resolve())
    readme = (out / "README.md").read_text()
    assert "- steps: 3" in readme and "Merged into the base weights of B" in readme and "Serve it" not in readme
