"""The compatibility check: each bad adapter is refused with its reason and fix, and nothing changes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from lorastack.errors import AdapterRejected, NotFound
from lorastack.serve.compatibility import check_name, check_rank, inspect_adapter
from lorastack.serve.loading import checked
from lorastack.serve.registry import Registry
from lorastack.serve.state import ServerState


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _rewrite_weights(folder: Path, rename=lambda k: k, reshape=None) -> None:
    path = folder / "adapter_model.safetensors"
    tensors = load_file(path)
    out = {}
    for key, tensor in tensors.items():
        out[rename(key)] = reshape(key, tensor) if reshape else tensor
    save_file(out, path)


def no_config(f: Path) -> None:
    (f / "adapter_config.json").unlink()


def garbled_config(f: Path) -> None:
    (f / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8,')


def not_lora(f: Path) -> None:
    _edit_config(f, peft_type="PREFIX_TUNING")


def pickle_weights(f: Path) -> None:
    (f / "adapter_model.safetensors").rename(f / "adapter_model.bin")


def no_weights(f: Path) -> None:
    (f / "adapter_model.safetensors").unlink()


def garbled_weights(f: Path) -> None:
    (f / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")


def rank_too_high(f: Path) -> None:
    _edit_config(f, r=1024)


def missing_modules(f: Path) -> None:
    _rewrite_weights(f, rename=lambda k: k.replace("q_proj", "qkv_proj"))


def config_targets_missing_module(f: Path) -> None:
    """The weights fit, but the config names a module the base lacks (peft 0.21 refuses a config with no
    existing target and silently loads this one; lorastack refuses both)."""
    _edit_config(f, target_modules=["q_proj", "v_proj", "qkv_proj"])


def config_regex_matches_nothing(f: Path) -> None:
    _edit_config(f, target_modules=r".*\.attention\.(query|value)")


def config_regex_invalid(f: Path) -> None:
    _edit_config(f, target_modules=r".*(q_proj")


def modules_to_save(f: Path) -> None:
    _edit_config(f, modules_to_save=["lm_head"])


def other_base_by_name(f: Path) -> None:
    _edit_config(f, base_model_name_or_path="meta-llama/Llama-3.1-8B-Instruct")


def other_base_by_shape(f: Path) -> None:
    import torch

    # Same module names, but the input width of a 1B Llama (2048) instead of 576.
    def widen(key: str, tensor: torch.Tensor) -> torch.Tensor:
        return torch.zeros(tensor.shape[0], 2048) if "lora_A" in key else tensor

    _rewrite_weights(f, reshape=widen)


BAD_ADAPTERS = [
    (no_config, "has no adapter_config.json", "save_pretrained"),
    (garbled_config, "is not valid JSON", "Re-save"),
    (not_lora, "PREFIX_TUNING adapter, not LoRA", "LoraConfig"),
    (pickle_weights, "pickle weights (adapter_model.bin)", "safe_serialization=True"),
    (no_weights, "has no adapter_model.safetensors", "Re-save"),
    (garbled_weights, "not a readable safetensors file", "Re-save"),
    (rank_too_high, "LoRA rank 1024; vLLM serves ranks up to 512", "r <= 512"),
    (missing_modules, "targets modules that SmolLM2-135M-Instruct lacks", "target_modules"),
    (
        config_targets_missing_module,
        "names target_modules that SmolLM2-135M-Instruct lacks: qkv_proj",
        "target_modules",
    ),
    (config_regex_matches_nothing, "matches no module of SmolLM2-135M-Instruct", "target_modules"),
    (config_regex_invalid, "is not a valid regular expression", "target_modules"),
    (modules_to_save, "modules_to_save: ['lm_head']", "without modules_to_save"),
    (other_base_by_name, "was trained on meta-llama/Llama-3.1-8B-Instruct", "--base-model"),
    (other_base_by_shape, "does not fit SmolLM2-135M-Instruct", "retrain it on SmolLM2-135M-Instruct"),
]


def _snapshot(registry: Registry) -> tuple:
    return (
        [(a.ref, a.sha256) for a in registry.list()],
        sorted(p.relative_to(registry.store) for p in registry.store.rglob("*")),
    )


@pytest.mark.parametrize(("damage", "reason", "fix"), BAD_ADAPTERS, ids=[c[0].__name__ for c in BAD_ADAPTERS])
def test_register_refuses_bad_adapter_and_changes_nothing(
    damage, reason, fix, adapter_copy: Path, base_model, base_shapes, make_adapter
) -> None:
    registry = Registry()
    registry.register("keep", make_adapter(), base_model, base_shapes)
    before = _snapshot(registry)
    damage(adapter_copy)

    with pytest.raises(AdapterRejected) as refused:
        registry.register("bad", adapter_copy, base_model, base_shapes)

    assert reason in refused.value.message
    assert fix in refused.value.hint
    assert _snapshot(registry) == before


@pytest.mark.parametrize(
    "targets",
    [r".*\.self_attn\.(q_proj|v_proj)", r"model\.layers\.\d+\.self_attn\.[qv]_proj", "all-linear", "ALL-LINEAR"],
)
def test_target_modules_as_regex_or_all_linear_are_accepted(
    targets: str, adapter_copy: Path, base_model, base_shapes
) -> None:
    """peft allows target_modules as one regex over the whole module path, or the all-linear shorthand."""
    _edit_config(adapter_copy, target_modules=targets)
    registry = Registry()

    adapter = registry.register("ok", adapter_copy, base_model, base_shapes)

    assert adapter.card["target_modules"] == [targets]
    assert checked(registry, "ok", _state(base_model, 16)).ref == "ok@v1"  # the check on load agrees


@pytest.mark.parametrize("name", ["Bad", "has space", "-lead", ".hidden", "../escape", "a/b", "x" * 65, "", "n@v2"])
def test_bad_names_are_refused(name: str, adapter_copy: Path, base_model, base_shapes) -> None:
    registry = Registry()
    with pytest.raises(AdapterRejected, match="is not allowed") as refused:
        registry.register(name, adapter_copy, base_model, base_shapes)
    assert "lower-case letters" in refused.value.hint
    assert registry.list() == []


@pytest.mark.parametrize("name", ["support", "a", "v2.1_final-x", "0day"])
def test_good_names_pass(name: str) -> None:
    assert check_name(name) == name


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        inspect_adapter(tmp_path / "nope")


def test_file_instead_of_folder(tmp_path: Path) -> None:
    file = tmp_path / "adapter_model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(AdapterRejected, match="is a file; an adapter is a folder"):
        inspect_adapter(file)


def test_rank_above_server_limit(make_adapter) -> None:
    info = inspect_adapter(make_adapter(rank=32))
    check_rank(info, 32)
    with pytest.raises(AdapterRejected, match="rank 32, above the server's --max-lora-rank 16") as refused:
        check_rank(info, 16)
    assert "Restart the server" in refused.value.hint


def _state(base_model, max_rank: int) -> ServerState:
    # Nothing listens at this address: the check must refuse before it talks to the server.
    return ServerState("http://127.0.0.1:9", 0, base_model.name, base_model.path, base_model.source, "cpu", max_rank, 4)


def test_changed_weights_fail_the_sha256_check(base_model, base_shapes, make_adapter) -> None:
    registry = Registry()
    adapter = registry.register("a", make_adapter(), base_model, base_shapes)
    weights = adapter.path / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))

    with pytest.raises(AdapterRejected, match="no longer match their sha256") as refused:
        checked(registry, "a", _state(base_model, 16))
    assert "register" in refused.value.hint
    assert registry.loaded() == []


def test_load_gate_checks_server_rank(base_model, base_shapes, make_adapter) -> None:
    registry = Registry()
    registry.register("big", make_adapter(rank=32), base_model, base_shapes)
    with pytest.raises(AdapterRejected, match="above the server's --max-lora-rank 16"):
        checked(registry, "big", _state(base_model, 16))
    assert checked(registry, "big", _state(base_model, 32)).name == "big"


def test_store_escape_is_refused(base_model, base_shapes, make_adapter) -> None:
    """A registry row whose name points outside the store (a corrupt or hand-edited db) is never used."""
    registry = Registry()
    registry.register("ok", make_adapter(), base_model, base_shapes)
    with sqlite3.connect(registry.db_path) as db:
        db.execute("UPDATE adapters SET name = '../../outside' WHERE name = 'ok'")
    with pytest.raises(AdapterRejected, match="outside the store"):
        registry.get("../../outside")
