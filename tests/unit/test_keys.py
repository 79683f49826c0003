"""API keys: a real SQLite file in the temporary LORASTACK_HOME, and the CLI as a user runs it."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lorastack.cli import app
from lorastack.errors import LorastackError, NotFound
from lorastack.testing import one_line_error
from lorastack.serve.keys import KeyStore, Role, allows, parse_role
from lorastack.serve.registry import Registry


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys in the developer's own environment would make every store look enabled."""
    monkeypatch.delenv("LORASTACK_API_KEY", raising=False)
    monkeypatch.delenv("LORASTACK_ADMIN_KEY", raising=False)


def test_create_and_verify_both_roles() -> None:
    store = KeyStore()
    inference, inference_key = store.create(Role.inference, "ci")
    admin, admin_key = store.create(Role.admin)

    assert inference_key.startswith("lsk-") and len(inference_key) > 40
    assert inference.role is Role.inference and inference.label == "ci" and inference.created
    assert inference.id == hashlib.sha256(inference_key.encode()).hexdigest()[:8]
    assert admin.role is Role.admin and admin.label == ""
    assert store.role_of(inference_key) is Role.inference
    assert store.role_of(admin_key) is Role.admin
    assert KeyStore().role_of(admin_key) is Role.admin  # a second store (another process) reads the same file


def test_wrong_or_missing_key_has_no_role() -> None:
    store = KeyStore()
    _, key = store.create(Role.admin)
    assert store.role_of(key + "x") is None
    assert store.role_of(key[:-1]) is None
    assert store.role_of("") is None
    assert store.role_of(None) is None


def test_revoked_key_is_refused_at_once_by_every_store() -> None:
    """The front door holds its own store with cached digests; a revoke from the CLI must still count."""
    front_door = KeyStore()
    info, key = KeyStore().create(Role.inference)
    assert front_door.role_of(key) is Role.inference  # now cached

    revoked = KeyStore().revoke(info.id)

    assert revoked == info
    assert front_door.role_of(key) is None
    assert [k.id for k in front_door.list()] == []


def test_revoke_accepts_the_key_itself() -> None:
    store = KeyStore()
    info, key = store.create(Role.admin)
    assert store.revoke(key) == info
    assert store.role_of(key) is None


def test_admin_allows_inference_not_the_reverse() -> None:
    assert allows(Role.admin, Role.admin) and allows(Role.admin, Role.inference)
    assert allows(Role.inference, Role.inference)
    assert not allows(Role.inference, Role.admin)
    assert not allows(None, Role.inference) and not allows(None, Role.admin)


def test_enabled_only_while_a_key_exists() -> None:
    store = KeyStore()
    assert not store.enabled()
    info, _ = store.create(Role.inference)
    assert store.enabled()
    store.revoke(info.id)
    assert not store.enabled()


def test_env_keys_are_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore()
    assert store.role_of("env-inference-key") is None

    monkeypatch.setenv("LORASTACK_API_KEY", "env-inference-key")
    monkeypatch.setenv("LORASTACK_ADMIN_KEY", "env-admin-key\n")  # as read from a file with a newline
    assert store.enabled()
    assert store.role_of("env-inference-key") is Role.inference
    assert store.role_of("env-admin-key") is Role.admin
    assert store.role_of("env-other") is None
    assert store.list() == []  # not stored

    monkeypatch.setenv("LORASTACK_ADMIN_KEY", "")
    monkeypatch.delenv("LORASTACK_API_KEY")
    assert store.role_of("env-inference-key") is None
    assert not store.enabled()


def test_only_the_digest_is_stored() -> None:
    store = KeyStore()
    _, key = store.create(Role.admin, "ops")
    data = store.db_path.read_bytes()
    assert key.encode() not in data
    assert key.removeprefix("lsk-").encode() not in data
    assert hashlib.sha256(key.encode()).hexdigest().encode() in data


def test_list_never_shows_keys() -> None:
    store = KeyStore()
    (first, first_key), (second, second_key) = store.create(Role.inference, "a"), store.create(Role.admin, "b")
    listed = store.list()
    assert {k.id for k in listed} == {first.id, second.id}
    assert all(first_key not in repr(k) and second_key not in repr(k) for k in listed)

    result = CliRunner().invoke(app, ["keys", "list"])
    assert result.exit_code == 0, result.output
    assert first.id in result.output and second.id in result.output and "admin" in result.output
    assert first_key not in result.output and second_key not in result.output
    assert "lsk-" not in result.output


def test_revoke_unknown_id_is_one_clean_error() -> None:
    with pytest.raises(NotFound) as caught:
        KeyStore().revoke("deadbeef")
    assert str(caught.value) == "No API key with id 'deadbeef'. See lorastack keys list."


def test_keys_share_the_registry_database() -> None:
    registry = Registry()
    registry.set_setting("x", "1")
    store = KeyStore()
    _, key = store.create(Role.inference)
    assert store.db_path == registry.db_path
    assert registry.setting("x") == "1" and store.role_of(key) is Role.inference
    with sqlite3.connect(store.db_path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"api_keys", "adapters", "settings"} <= tables


def test_a_stored_key_of_unknown_role_grants_nothing_but_keeps_keys_required() -> None:
    """Fail closed: a row this version cannot read must neither let its key in nor open the front door."""
    store = KeyStore()
    digest = hashlib.sha256(b"k").hexdigest()
    with sqlite3.connect(store.db_path) as db:
        db.execute("INSERT INTO api_keys VALUES (?, 'root', '', ?, '2025-01-01')", (digest[:8], digest))
    assert store.role_of("k") is None
    assert store.enabled()


def test_parse_role() -> None:
    assert parse_role("Admin ") is Role.admin
    with pytest.raises(LorastackError, match="Use --role inference or --role admin"):
        parse_role("root")


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_create_prints_the_key_once_and_it_works() -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--role", "admin", "--label", "ops [team]"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()  # the key alone on stdout, so $(lorastack keys create ...) captures it
    assert key.startswith("lsk-") and "\n" not in key
    assert "only time the key is shown" in result.stderr
    assert "ops [team]" in result.stderr

    store = KeyStore()
    assert store.role_of(key) is Role.admin
    [info] = store.list()
    assert info.label == "ops [team]"

    listed = CliRunner().invoke(app, ["keys", "list"])
    assert info.id in listed.output and "ops [team]" in listed.output and key not in listed.output

    revoked = CliRunner().invoke(app, ["keys", "revoke", info.id])
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked admin key {info.id}" in revoked.output
    assert store.role_of(key) is None


def test_cli_list_when_empty_says_how_to_create() -> None:
    result = CliRunner().invoke(app, ["keys", "list"])
    assert result.exit_code == 0
    assert "lorastack keys create --role inference" in result.output


def _lorastack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorastack.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_bad_or_missing_role_is_one_line() -> None:
    line = one_line_error(_lorastack("keys", "create", "--role", "root"))
    assert "Unknown role 'root'. Use --role inference or --role admin" in line
    line = one_line_error(_lorastack("keys", "create"))
    assert "Add --role inference or --role admin." in line
    assert KeyStore().list() == []


def test_cli_revoke_unknown_is_one_line() -> None:
    line = one_line_error(_lorastack("keys", "revoke", "deadbeef"))
    assert "No API key with id 'deadbeef'. See lorastack keys list." in line
