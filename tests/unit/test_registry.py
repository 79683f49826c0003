"""The registry: real SQLite file, real store folder, real adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorastack.errors import AdapterRejected, NotFound
from lorastack.serve.config import fitting_rank
from lorastack.serve.loading import load_adapter, unload_adapter
from lorastack.serve.registry import Registry, adapter_sha256, parse_ref


def test_register_copies_an_immutable_version_with_card(base_model, base_shapes, make_adapter) -> None:
    source = make_adapter(rank=8)
    registry = Registry()

    adapter = registry.register("support", source, base_model, base_shapes)

    assert adapter.ref == "support@v1"
    assert adapter.path.is_relative_to(registry.store)
    assert sorted(p.name for p in adapter.path.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "card.json",
    ]  # fmt: skip
    assert adapter.sha256 == adapter_sha256(source)
    card = json.loads((adapter.path / "card.json").read_text())
    assert card == adapter.card
    assert card["base_model"] == base_model.name
    assert card["rank"] == 8 and card["alpha"] == 16
    assert card["target_modules"] == ["q_proj", "v_proj"]
    assert card["source"] == str(source.resolve())
    assert card["created"] and card["version"] == 1


def test_versions_accumulate_and_latest_wins(base_model, base_shapes, make_adapter) -> None:
    registry = Registry()
    registry.register("support", make_adapter(seed=0), base_model, base_shapes)
    second = registry.register("support", make_adapter(seed=1), base_model, base_shapes)

    assert second.version == 2
    assert registry.get("support").version == 2
    assert registry.get("support@v1").version == 1
    assert registry.get("support@1").version == 1
    assert [a.ref for a in registry.list()] == ["support@v1", "support@v2"]


def test_registry_persists_across_instances(base_model, base_shapes, make_adapter, _isolated_home: Path) -> None:
    first = Registry()
    adapter = first.register("keep", make_adapter(), base_model, base_shapes)
    first.mark_loaded(adapter)

    again = Registry(_isolated_home)
    assert [a.ref for a in again.list()] == ["keep@v1"]
    assert [a.ref for a in again.loaded()] == ["keep@v1"]


def test_unknown_refs(base_model, base_shapes, make_adapter) -> None:
    registry = Registry()
    registry.register("a", make_adapter(), base_model, base_shapes)
    with pytest.raises(NotFound, match="No adapter 'b'"):
        registry.get("b")
    with pytest.raises(NotFound, match="No adapter 'a@v9'"):
        registry.get("a@v9")
    with pytest.raises(NotFound, match="is not NAME or NAME@vN"):
        parse_ref("a@latest")


def test_remove_one_version_and_refuse_a_loaded_one(base_model, base_shapes, make_adapter) -> None:
    registry = Registry()
    v1 = registry.register("a", make_adapter(seed=0), base_model, base_shapes)
    v2 = registry.register("a", make_adapter(seed=1), base_model, base_shapes)
    registry.mark_loaded(v2)

    with pytest.raises(AdapterRejected, match="a@v2 is loaded"):
        registry.remove(v2)
    registry.remove(v1)

    assert [a.ref for a in registry.list()] == ["a@v2"]
    assert not v1.path.exists() and v2.path.exists()


def test_load_without_server_marks_for_next_start(base_model, base_shapes, make_adapter) -> None:
    registry = Registry()
    registry.register("a", make_adapter(), base_model, base_shapes)

    result = load_adapter(registry, "a", server=None)

    assert not result.live
    assert [a.ref for a in registry.loaded()] == ["a@v1"]
    assert unload_adapter(registry, "a", server=None) is False
    assert registry.loaded() == []
    with pytest.raises(NotFound, match="is not loaded"):
        unload_adapter(registry, "a", server=None)


def test_loading_another_version_replaces_the_mark(base_model, base_shapes, make_adapter) -> None:
    registry = Registry()
    registry.register("a", make_adapter(seed=0), base_model, base_shapes)
    registry.register("a", make_adapter(seed=1), base_model, base_shapes)
    load_adapter(registry, "a@v1", server=None)
    load_adapter(registry, "a", server=None)
    assert [a.ref for a in registry.loaded()] == ["a@v2"]


@pytest.mark.parametrize(("ranks", "expected"), [([], 16), ([8], 16), ([16, 4], 16), ([17], 32), ([64, 8], 64), ([300], 320)])
def test_default_max_lora_rank_fits_every_adapter(ranks: list[int], expected: int) -> None:
    assert fitting_rank(ranks) == expected
