"""The registry: real SQLite file, real store folder, real adapters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorastack.errors import AdapterRejected, NotFound
from lorastack.serve.config import fitting_rank
from lorastack.serve.loading import load_adapter, unload_adapter
from lorastack.serve.registry import STAGING_MAX_AGE, Registry, _host, adapter_sha256, parse_ref


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


def _killed_register(home: Path, source: Path) -> None:
    """Run ``register`` in a child process that dies (no cleanup, as under kill -9) midway through copying."""
    script = (
        "import os, shutil, sys\n"
        "from pathlib import Path\n"
        "from lorastack.models import resolve_base_model\n"
        "from lorastack.serve import registry as r\n"
        "def copy_then_die(src, dst):\n"
        "    shutil.copyfile(src, dst)\n"
        "    os._exit(9)\n"
        "r.shutil.copy2 = copy_then_die\n"
        "base = resolve_base_model(None)\n"
        "r.Registry(Path(sys.argv[1])).register('a', Path(sys.argv[2]), base, base.weight_shapes())\n"
    )
    args = [sys.executable, "-c", script, str(home), str(source)]
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr


def test_staging_folders_of_killed_registers_are_swept(base_model, base_shapes, make_adapter, tmp_path) -> None:
    """Pins the bug: `.incoming-*` folders that a killed `register` left in the store stayed there forever."""
    home = tmp_path / "home"
    Registry(home)
    _killed_register(home, make_adapter())
    leftovers = list((home / "store").glob(".incoming-*"))
    assert len(leftovers) == 1 and any(leftovers[0].iterdir())  # a real, half-copied staging folder

    registry = Registry(home)

    assert list(registry.store.glob(".incoming-*")) == []
    assert registry.register("a", make_adapter(), base_model, base_shapes).ref == "a@v1"
    assert [p.name for p in registry.store.iterdir()] == ["a"]


def test_sweep_spares_the_staging_folder_of_a_register_still_running(tmp_path) -> None:
    """Only a folder whose owner is gone, or that is over an hour old, is a leftover."""
    registry = Registry(tmp_path / "home")
    host = _host()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as running:
        try:
            gone = _exited_pid()
            kept = [
                f".incoming-{host}-{running.pid}-abc",  # another process, registering right now
                f".incoming-{host}-{os.getpid()}-abc",  # this one
                f".incoming-otherhost-{gone}-abc",  # a pid of another machine means nothing here
                ".incoming-0123abcd",  # the old naming, fresh: go by age
            ]
            swept = [f".incoming-{host}-{gone}-abc", ".incoming-old", f".incoming-{host}-{running.pid}-old"]
            for name in kept + swept:
                (registry.store / name).mkdir()
                (registry.store / name / "adapter_config.json").write_text("{}")
            hour_ago = time.time() - STAGING_MAX_AGE - 60
            for name in swept[1:]:
                os.utime(registry.store / name, (hour_ago, hour_ago))

            Registry(registry.home)

            assert sorted(p.name for p in registry.store.iterdir()) == sorted(kept)
        finally:
            running.kill()


def _exited_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
