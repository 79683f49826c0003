"""Aliases, promotion without a server, rollback, and the bundled demo adapter, on a real registry."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
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


@pytest.fixture
def three_versions(two_versions, base_model, base_shapes, make_adapter):
    registry, v1, v2 = two_versions
    v3 = registry.register("tools", make_adapter(seed=3), base_model, base_shapes)
    for version in (v1, v2, v3):
        promote(registry, version.ref, "support", None)
    return registry, v1, v2, v3


def _refs(registry: Registry) -> list[str]:
    return [f"{name}@v{version}" for name, version, _ in registry.alias_history("support")]


def test_rollback_walks_back_through_the_promotions(three_versions, base_model, base_shapes, make_adapter) -> None:
    """Pins the bug: rollback flipped between the last two versions (v3 -> v2 -> v3 ...) instead of stepping back.

    Chosen: v1 -> v2 -> v3 promoted, each rollback steps back one promotion (v2, then v1) and then refuses
    (nothing older). A promotion after rollbacks starts a new line from where they ended, as an undo history
    does: promoting v4 while v1 serves makes the line v1 -> v4, so the next rollback returns to v1 (the version
    v4 replaced), not to the v2 or v3 that were rolled back.
    """
    registry, v1, v2, v3 = three_versions

    first = rollback(registry, "support", None)
    assert (first.adapter.ref, first.previous) == (v2.ref, v3.ref)
    second = rollback(registry, "support", None)
    assert (second.adapter.ref, second.previous) == (v1.ref, v2.ref)
    assert registry.alias("support").ref == v1.ref
    with pytest.raises(NotFound, match="nothing older to roll back to") as refused:
        rollback(registry, "support", None)
    assert "promote" in refused.value.hint
    assert registry.alias("support").ref == v1.ref

    v4 = registry.register("tools", make_adapter(seed=4), base_model, base_shapes)
    promote(registry, v4.ref, "support", None)
    assert rollback(registry, "support", None).adapter.ref == v1.ref
    with pytest.raises(NotFound, match="nothing older"):
        rollback(registry, "support", None)
    # Every switch stays in the history, newest first.
    assert _refs(registry) == [v1.ref, v4.ref, v1.ref, v2.ref, v3.ref, v2.ref, v1.ref]


def test_promotion_after_one_rollback_keeps_the_older_versions(three_versions, base_model, base_shapes,
                                                               make_adapter) -> None:  # fmt: skip
    """v1 -> v2 -> v3, rollback to v2, promote v4: the line is v1 -> v2 -> v4, so rollbacks go v2, then v1."""
    registry, v1, v2, _ = three_versions
    rollback(registry, "support", None)
    v4 = registry.register("tools", make_adapter(seed=4), base_model, base_shapes)
    promote(registry, v4.ref, "support", None)

    assert rollback(registry, "support", None).adapter.ref == v2.ref
    assert rollback(registry, "support", None).adapter.ref == v1.ref


def test_rollback_the_way_the_front_door_does_it(three_versions) -> None:
    """The front door asks rollback_target, then promotes that version through set_alias: the same walk."""
    registry, v1, v2, v3 = three_versions
    for expected_current, expected in ((v3, v2), (v2, v1)):
        current, previous = registry.rollback_target("support")
        assert (current.ref, previous.ref) == (expected_current.ref, expected.ref)
        assert registry.set_alias("support", previous).ref == current.ref
    with pytest.raises(NotFound, match="nothing older"):
        registry.rollback_target("support")
    with pytest.raises(NotFound, match="No alias"):
        registry.rollback_target("nothing")


def test_rollback_skips_removed_versions(three_versions) -> None:
    registry, v1, v2, _ = three_versions
    registry.remove(v2)
    assert rollback(registry, "support", None).adapter.ref == v1.ref
    with pytest.raises(NotFound, match="nothing older"):
        rollback(registry, "support", None)


def test_history_from_before_rollbacks_were_recorded_reads_as_promotions(three_versions) -> None:
    """A registry.db written before the history's parent column: opening it adds the column, and its history
    counts as one line of promotions."""
    registry, v1, v2, _ = three_versions
    with sqlite3.connect(registry.db_path) as db:
        db.execute("ALTER TABLE alias_history DROP COLUMN parent")
    registry = Registry(registry.home)
    assert rollback(registry, "support", None).adapter.ref == v2.ref
    assert rollback(registry, "support", None).adapter.ref == v1.ref


def test_rollback_with_no_other_version_refuses(two_versions) -> None:
    registry, _, _ = two_versions
    promote(registry, "tools@v1", "support", None)
    with pytest.raises(NotFound, match="nothing older"):
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
    # Marked loaded too, so a start serves it under its own name (model="tools-demo" was a 404).
    assert [a.ref for a in registry.loaded()] == [demo.ref]
    assert demo.card["training"]["config"]["lora"]["r"] == demo.card["rank"]  # its training card came along
    # Once only: a user who unloads, re-points or removes it is not overruled at the next start.
    registry.drop_alias(DEFAULT_ALIAS)
    registry.mark_unloaded(DEMO_NAME)
    assert install_demo_adapter(registry, base_model) is None
    assert registry.alias(DEFAULT_ALIAS) is None and len(registry.list()) == 1
    assert registry.loaded() == []


def _release(base_model: BaseModel, weights: Path, tmp_path: Path) -> BaseModel:
    """The base model as a lorastack release that bundles ``weights`` as its tools-demo folder ships them."""
    folder = tmp_path / f"release-{weights.name}" / DEMO_NAME
    shutil.copytree(weights, folder)
    return dataclasses.replace(base_model, bundled_adapter=folder)


def test_an_upgrade_with_new_bundled_weights_moves_what_still_follows_the_old_ones(
    base_model: BaseModel, make_adapter, tmp_path: Path
) -> None:
    first, second, third = (_release(base_model, make_adapter(seed=s), tmp_path) for s in (0, 1, 2))
    registry = Registry()
    assert install_demo_adapter(registry, first).ref == f"{DEMO_NAME}@v1"
    assert install_demo_adapter(registry, first) is None  # same weights: nothing to do

    upgraded = install_demo_adapter(registry, second)
    assert upgraded.ref == f"{DEMO_NAME}@v2" and upgraded.sha256 != registry.get(f"{DEMO_NAME}@v1").sha256
    assert registry.alias(DEFAULT_ALIAS).ref == upgraded.ref
    assert [a.ref for a in registry.loaded()] == [upgraded.ref]

    # A user who re-pointed the default alias and unloaded the name keeps both as they were.
    registry.set_alias(DEFAULT_ALIAS, registry.get(f"{DEMO_NAME}@v1"))
    registry.mark_unloaded(DEMO_NAME)
    assert install_demo_adapter(registry, third).ref == f"{DEMO_NAME}@v3"
    assert registry.alias(DEFAULT_ALIAS).ref == f"{DEMO_NAME}@v1" and registry.loaded() == []


def test_a_removed_demo_adapter_is_not_brought_back_by_an_upgrade(
    base_model: BaseModel, make_adapter, tmp_path: Path
) -> None:
    registry = Registry()
    installed = install_demo_adapter(registry, base_model)
    registry.drop_alias(DEFAULT_ALIAS)
    registry.mark_unloaded(DEMO_NAME)
    registry.remove(installed)
    assert install_demo_adapter(registry, _release(base_model, make_adapter(seed=1), tmp_path)) is None
    assert registry.list() == []


def test_demo_adapter_is_left_out_for_other_base_models(base_model: BaseModel) -> None:
    other = BaseModel("another-model", base_model.path, "test")
    assert install_demo_adapter(Registry(), other) is None


def test_bundled_demo_adapter_is_small_and_names_the_embedded_model() -> None:
    folder = demo_adapter_dir()
    config = json.loads((folder / "adapter_config.json").read_text())
    card = json.loads((folder / "training_card.json").read_text())
    assert config["base_model_name_or_path"] == "SmolLM2-135M-Instruct"
    assert (folder / "adapter_model.safetensors").stat().st_size < 12 * 2**20
    assert card["config"]["data"]["path"] == "data/tools-broad/train.jsonl"  # what the README's command writes
