"""Aliases, promotion without a server, rollback, and the bundled demo adapter, on a real registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorastack.errors import AdapterRejected, AlreadyExists, NotFound, ServerError
from lorastack.models import BaseModel
from lorastack.serve.demo import DEMO_NAME, demo_adapter_dir, install_demo_adapter
from lorastack.evaluation import EvalRequirement
from lorastack.serve.promote import promote, rollback
from lorastack.access import DEFAULT_ALIAS
from lorastack.serve.registry import Registry


@pytest.fixture
def two_versions(base_model, base_shapes, make_adapter):
    registry = Registry()
    v1 = registry.register("tools", make_adapter(seed=1), base_model, base_shapes)
    v2 = registry.register("tools", make_adapter(seed=2), base_model, base_shapes)
    return registry, v1, v2


def test_promote_without_a_server_records_the_alias_for_the_next_start(two_versions) -> None:
    registry, v1, v2 = two_versions

    first = promote(registry, "tools@v1", "support", None)
    second = promote(registry, "tools", "support", None)

    assert first.previous is None and second.previous == v1.ref
    assert registry.alias("support").ref == v2.ref
    assert [(n, v) for n, v, _ in registry.alias_history("support")] == [("tools", 2), ("tools", 1)]
    with pytest.raises(AlreadyExists):
        promote(registry, "tools@v2", "support", None)


def test_rollback_returns_to_the_previous_version_and_back(two_versions) -> None:
    registry, v1, v2 = two_versions
    promote(registry, "tools@v1", "support", None)
    promote(registry, "tools@v2", "support", None)

    assert rollback(registry, "support", None).adapter.ref == v1.ref
    assert registry.alias("support").ref == v1.ref
    assert rollback(registry, "support", None).adapter.ref == v2.ref
    with pytest.raises(NotFound, match="No alias"):
        rollback(registry, "nothing", None)


def test_rollback_with_no_other_version_refuses(two_versions) -> None:
    registry, _, _ = two_versions
    promote(registry, "tools@v1", "support", None)
    with pytest.raises(NotFound, match="no other version"):
        rollback(registry, "support", None)
    assert registry.alias("support").version == 1


def test_an_aliased_version_cannot_be_removed(two_versions) -> None:
    registry, v1, _ = two_versions
    promote(registry, "tools@v1", "support", None)
    registry.mark_unloaded("tools")
    with pytest.raises(AdapterRejected, match="alias 'support'"):
        registry.remove(v1)
    assert registry.get("tools@v1").path.is_dir()


def test_bad_alias_names_and_gate_without_server(two_versions, tmp_path: Path) -> None:
    registry, _, _ = two_versions
    with pytest.raises(AdapterRejected):
        promote(registry, "tools@v1", "Not An Alias!", None)
    with pytest.raises(ServerError, match="runs in the server"):
        promote(registry, "tools@v1", "support", None, EvalRequirement(tmp_path / "eval.jsonl"))
    assert registry.aliases() == {}


def test_demo_adapter_is_installed_once_as_the_default(base_model: BaseModel) -> None:
    registry = Registry()

    demo = install_demo_adapter(registry, base_model)

    assert demo is not None and demo.ref == f"{DEMO_NAME}@v1"
    assert registry.alias(DEFAULT_ALIAS).ref == demo.ref
    assert demo.card["training"]["config"]["lora"]["r"] == demo.card["rank"]  # its training card came along
    # Once only: a user who unloads, re-points or removes it is not overruled at the next start.
    registry.drop_alias(DEFAULT_ALIAS)
    assert install_demo_adapter(registry, base_model) is None
    assert registry.alias(DEFAULT_ALIAS) is None and len(registry.list()) == 1


def test_demo_adapter_is_left_out_for_other_base_models(base_model: BaseModel) -> None:
    other = BaseModel("another-model", base_model.path, "test")
    assert install_demo_adapter(Registry(), other) is None


def test_bundled_demo_adapter_is_small_and_names_the_embedded_model() -> None:
    folder = demo_adapter_dir()
    config = json.loads((folder / "adapter_config.json").read_text())
    card = json.loads((folder / "training_card.json").read_text())
    assert config["base_model_name_or_path"] == "SmolLM2-135M-Instruct"
    assert (folder / "adapter_model.safetensors").stat().st_size < 12 * 2**20
    assert card["config"]["data"]["path"] == "data/tools/train.jsonl"  # what the README's command writes
