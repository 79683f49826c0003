"""The adapter registry: a SQLite database plus a store of immutable adapter versions.

Layout under ``LORASTACK_HOME``::

    registry.db                       adapters (name, version, sha256, card) and the loaded set
    store/<name>/v<version>/          adapter_config.json, adapter_model.safetensors, card.json

A version is written to a temporary folder and renamed into place, then recorded in one
transaction, so a failure at any point leaves the registry as it was. The temporary folder
(``store/.incoming-<host>-<pid>-<random>``) of a register that was killed is swept when a
registry next opens the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorastack.db import transaction
from lorastack.errors import AdapterRejected, NotFound
from lorastack.models import BaseModel
from lorastack.paths import home_dir
from lorastack.serve.compatibility import (
    CONFIG_FILE, WEIGHTS_FILE, check_alias, check_compatible, check_name, inspect_adapter,
)  # fmt: skip
from lorastack.serve.sources import Origin

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
TRAINING_CARD = "training_card.json"
"""Written by lorastack train next to the weights; folded into the registry card as "training"."""
_COPIED = (CONFIG_FILE, WEIGHTS_FILE, "README.md", TRAINING_CARD)
STAGING_PREFIX = ".incoming-"
STAGING_MAX_AGE = 3600.0
"""Seconds after which a staging folder is taken for a leftover even if its pid is alive (the pid may be reused,
or live in another container); a register stages for seconds, not an hour."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS adapters (
    name     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    card     TEXT NOT NULL,
    created  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS loaded (
    name     TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    FOREIGN KEY (name, version) REFERENCES adapters (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    alias    TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    updated  TEXT NOT NULL,
    FOREIGN KEY (name, version) REFERENCES adapters (name, version)
);
CREATE TABLE IF NOT EXISTS alias_history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    alias    TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    at       TEXT NOT NULL,
    parent   INTEGER
);
CREATE TABLE IF NOT EXISTS settings (
    key      TEXT PRIMARY KEY,
    value    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
    model    TEXT PRIMARY KEY,
    pinned   INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class AdapterVersion:
    name: str
    version: int
    sha256: str
    card: dict
    created: str
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"


def _update(digest: Any, path: Path) -> None:
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    _update(digest, path)
    return digest.hexdigest()


def adapter_sha256(folder: Path) -> str:
    """One digest over the adapter's config and weights, in a fixed order."""
    digest = hashlib.sha256()
    for file_name in (CONFIG_FILE, WEIGHTS_FILE):
        digest.update(file_name.encode() + b"\0")
        _update(digest, folder / file_name)
    return digest.hexdigest()


def _training_card(folder: Path) -> dict | None:
    try:
        card = json.loads((folder / TRAINING_CARD).read_text())
    except (OSError, ValueError):
        return None  # optional: adapters from elsewhere have none, and a damaged one is not fatal
    return card if isinstance(card, dict) else None


def _alias_row(db: sqlite3.Connection, alias: str) -> sqlite3.Row | None:
    """The adapters row ``alias`` points to, read in the caller's transaction."""
    return db.execute(
        "SELECT a.* FROM adapters a JOIN aliases USING (name, version) WHERE alias = ?", (alias,)
    ).fetchone()


def _history_head(db: sqlite3.Connection, alias: str) -> sqlite3.Row | None:
    """The newest history row of ``alias``: the one that set what it serves now."""
    return db.execute("SELECT * FROM alias_history WHERE alias = ? ORDER BY id DESC LIMIT 1", (alias,)).fetchone()


def _rollback_row(db: sqlite3.Connection, alias: str, current: sqlite3.Row) -> sqlite3.Row | None:
    """The history row a rollback of ``alias`` (serving ``current``) returns to: walking the line back from its
    newest row, the first version that is not ``current`` and is still registered; None at the line's start."""
    rows = {r["id"]: r for r in db.execute("SELECT * FROM alias_history WHERE alias = ?", (alias,))}
    registered = {(r["name"], r["version"]) for r in db.execute("SELECT name, version FROM adapters")}
    row = rows[max(rows)] if rows else None
    while row is not None:
        row = rows.get(row["parent"]) if row["parent"] is not None and row["parent"] < row["id"] else None
        ref = (row["name"], row["version"]) if row is not None else None
        if ref is not None and ref != (current["name"], current["version"]) and ref in registered:
            return row
    return None


def _host() -> str:
    """This machine's name, as it may appear in a staging folder's name (no '-', which separates the fields)."""
    return socket.gethostname().replace("-", "_") or "unknown"


def _staging_owner(folder_name: str) -> tuple[str, int] | None:
    """(host, pid) from ``.incoming-<host>-<pid>-<random>``; None for any other name."""
    host, _, rest = folder_name.removeprefix(STAGING_PREFIX).partition("-")
    pid, _, random = rest.partition("-")
    return (host, int(pid)) if host and pid.isdigit() and random else None


def _alive(host: str, pid: int) -> bool:
    """Whether process ``pid`` may still be running; a process on another host is taken to be."""
    if host != _host():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name@vN`` (``name@N``) -> (name, version or None for the latest)."""
    name, _, version = ref.partition("@")
    if not version:
        return name, None
    digits = version[1:] if version[:1] in "vV" else version
    if not digits.isdigit():
        raise NotFound(f"{ref!r} is not NAME or NAME@vN.", "Write e.g. support or support@v2.")
    return name, int(digits)


class Registry:
    """Adapters known to lorastack, and which of them the server should have loaded."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or home_dir()
        self.store = self.home / "store"
        self.db_path = self.home / "registry.db"
        self.home.mkdir(parents=True, exist_ok=True)
        self.store.mkdir(exist_ok=True)
        with closing(sqlite3.connect(self.db_path, timeout=30)) as db:
            db.executescript(_SCHEMA)  # executescript manages its own transaction
        with self._connect() as db:
            if "parent" not in {r["name"] for r in db.execute("PRAGMA table_info(alias_history)")}:
                # A registry from before rollbacks were recorded: read its history as one line of promotions.
                db.execute("ALTER TABLE alias_history ADD COLUMN parent INTEGER")
                db.execute(
                    "UPDATE alias_history SET parent = (SELECT MAX(h.id) FROM alias_history h "
                    "WHERE h.alias = alias_history.alias AND h.id < alias_history.id)"
                )
            columns = {r["name"] for r in db.execute("PRAGMA table_info(adapters)")}
            for column in ("source_url", "source_revision"):  # a registry from before remote sources: NULL, a folder
                if column not in columns:
                    db.execute(f"ALTER TABLE adapters ADD COLUMN {column} TEXT")
        self._sweep_staging()

    def _sweep_staging(self) -> None:
        """Delete the staging folders that a killed ``register`` left in the store.

        A folder is named ``.incoming-<host>-<pid>-<random>`` by the register that owns it: it is a leftover once
        that process is gone (checked on the same host only, since pids of other machines or containers mean
        nothing here) or once it is older than :data:`STAGING_MAX_AGE`, never while a register could still use it.
        Folders named before the pid was part of the name go by age alone.
        """
        now = time.time()
        for folder in self.store.glob(STAGING_PREFIX + "*"):
            try:
                age = now - folder.stat().st_mtime
            except FileNotFoundError:
                continue  # its register finished (or another sweep took it) meanwhile
            owner = _staging_owner(folder.name)
            if age > STAGING_MAX_AGE or (owner is not None and not _alive(*owner)):
                logger.info("Removing %s, left by an interrupted register.", folder)
                shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose ``with`` block is one transaction (committed, or rolled back on error)."""
        with transaction(self.db_path) as db:
            yield db

    # -- reading -----------------------------------------------------------------------------------

    def _row(self, row: sqlite3.Row) -> AdapterVersion:
        return AdapterVersion(
            name=row["name"],
            version=row["version"],
            sha256=row["sha256"],
            card=json.loads(row["card"]),
            created=row["created"],
            path=self.version_dir(row["name"], row["version"]),
        )

    def version_dir(self, name: str, version: int) -> Path:
        """The store folder of one version; refuses anything that would resolve outside the store."""
        path = (self.store / name / f"v{version}").resolve()
        if not path.is_relative_to(self.store.resolve()):
            raise AdapterRejected(
                f"Adapter {name!r} resolves to {path}, outside the store {self.store}.",
                "The registry entry is corrupt: remove it with lorastack adapters remove.",
            )
        return path

    def list(self) -> list[AdapterVersion]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM adapters ORDER BY name, version").fetchall()
        return [self._row(r) for r in rows]

    def get(self, ref: str) -> AdapterVersion:
        """Look up ``name`` (latest version) or ``name@vN``."""
        name, version = parse_ref(ref)
        with self._connect() as db:
            if version is None:
                row = db.execute(
                    "SELECT * FROM adapters WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
                ).fetchone()
            else:
                row = db.execute("SELECT * FROM adapters WHERE name = ? AND version = ?", (name, version)).fetchone()
        if row is None:
            raise NotFound(f"No adapter {ref!r} in the registry.", "See lorastack adapters list.")
        return self._row(row)

    def loaded(self) -> list[AdapterVersion]:
        """Adapters marked loaded: the server loads these whenever it starts."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT a.* FROM adapters a JOIN loaded l USING (name, version) ORDER BY a.name"
            ).fetchall()
        return [self._row(r) for r in rows]

    def loaded_version(self, name: str) -> int | None:
        with self._connect() as db:
            row = db.execute("SELECT version FROM loaded WHERE name = ?", (name,)).fetchone()
        return row["version"] if row else None

    def alias(self, alias: str) -> AdapterVersion | None:
        """The version ``alias`` points to, or None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT a.* FROM adapters a JOIN aliases USING (name, version) WHERE alias = ?", (alias,)
            ).fetchone()
        return self._row(row) if row else None

    def aliases(self) -> dict[str, AdapterVersion]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT alias, a.* FROM adapters a JOIN aliases USING (name, version) ORDER BY alias"
            ).fetchall()
        return {r["alias"]: self._row(r) for r in rows}

    def alias_history(self, alias: str) -> list[tuple[str, int, str]]:
        """(name, version, when) of every version ``alias`` has pointed to, newest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, version, at FROM alias_history WHERE alias = ? ORDER BY id DESC", (alias,)
            ).fetchall()
        return [(r["name"], r["version"], r["at"]) for r in rows]

    def rollback_target(self, alias: str) -> tuple[AdapterVersion, AdapterVersion]:
        """(current, previous): what ``alias`` serves and the version a rollback returns it to.

        ``previous`` is the version promoted before the current one in the alias's line (see :meth:`set_alias`),
        skipping versions removed since and versions that rollbacks already stepped back from: repeated
        rollbacks walk back through the promotions, and the first version of the line has nothing older.
        """
        with self._connect() as db:
            current = _alias_row(db, alias)
            if current is None:
                raise NotFound(f"No alias {alias!r}.", "See lorastack adapters list.")
            target = _rollback_row(db, alias, current)
            current_version = self._row(current)
            if target is None:
                raise NotFound(
                    f"{alias!r} has nothing older to roll back to: {current_version.ref} is the oldest version of its "
                    "history that is still registered.",
                    f"Promote the version you want instead: lorastack adapters promote NAME@vN --alias {alias}",
                )
            previous = db.execute(
                "SELECT * FROM adapters WHERE name = ? AND version = ?", (target["name"], target["version"])
            ).fetchone()
        return current_version, self._row(previous)

    def setting(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def verify(self, adapter: AdapterVersion) -> None:
        """Refuse a stored version whose files no longer match the digest taken at register time."""
        try:
            actual = adapter_sha256(adapter.path)
        except FileNotFoundError as exc:
            raise AdapterRejected(
                f"{adapter.ref} is missing from the store ({exc.filename}).",
                f"Register it again: lorastack adapters remove {adapter.ref}, then register.",
            ) from None
        if actual != adapter.sha256:
            raise AdapterRejected(
                f"{adapter.ref}'s files no longer match their sha256 in the registry (changed on disk).",
                f"Register the adapter again: lorastack adapters remove {adapter.ref}, then register.",
            )

    # -- writing -----------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        source: Path,
        base: BaseModel,
        base_shapes: dict[str, tuple[int, ...]],
        origin: Origin | None = None,
    ) -> AdapterVersion:
        """Check ``source`` and copy it into the store as the next version of ``name``. ``origin``: the remote URL
        (and the revision it resolved to) that ``source`` was downloaded from; None for a local folder."""
        check_name(name)
        source = source.expanduser()
        info = inspect_adapter(source)
        check_compatible(info, base, base_shapes)
        staging = self.store / f"{STAGING_PREFIX}{_host()}-{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for file_name in _COPIED:
                if (source / file_name).is_file():
                    shutil.copy2(source / file_name, staging / file_name)
            sha = adapter_sha256(staging)
            created = datetime.now(UTC).isoformat(timespec="seconds")
            card = {
                "base_model": base.name,
                "base_model_source": base.source,
                "trained_on": info.base_model,
                "rank": info.rank,
                "alpha": info.alpha,
                "target_modules": info.target_modules,
                "created": created,
                "source": origin.url if origin else str(source.resolve()),
                "sha256": sha,
            }
            if origin is not None:
                card["source_revision"] = origin.revision
            training = _training_card(staging)
            if training is not None:
                card["training"] = training
            with self._connect() as db:
                row = db.execute("SELECT MAX(version) FROM adapters WHERE name = ?", (name,)).fetchone()
                version = (row[0] or 0) + 1
                card["version"] = version
                (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
                target = self.version_dir(name, version)
                if target.exists():  # left by a crash between rename and commit: not in the db, so stale
                    shutil.rmtree(target)
                target.parent.mkdir(exist_ok=True)
                staging.rename(target)
                try:
                    db.execute(
                        "INSERT INTO adapters (name, version, sha256, card, created, source_url, source_revision) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (name, version, sha, json.dumps(card), created, card["source"], card.get("source_revision")),
                    )
                except BaseException:
                    shutil.rmtree(target, ignore_errors=True)
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(f"{name}@v{version}")

    def mark_loaded(self, adapter: AdapterVersion) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO loaded (name, version) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                (adapter.name, adapter.version),
            )

    def pins(self) -> dict[str, bool]:
        """Served model name -> pinned (True) or explicitly unpinned (False); names not here take the default."""
        with self._connect() as db:
            return {r["model"]: bool(r["pinned"]) for r in db.execute("SELECT model, pinned FROM pins")}

    def set_pin(self, model: str, pinned: bool) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO pins (model, pinned) VALUES (?, ?) "
                "ON CONFLICT (model) DO UPDATE SET pinned = excluded.pinned",
                (model, int(pinned)),
            )

    def mark_unloaded(self, name: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM loaded WHERE name = ?", (name,))

    def set_alias(self, alias: str, adapter: AdapterVersion) -> AdapterVersion | None:
        """Point ``alias`` at ``adapter`` (one transaction); returns what it pointed to before.

        Every change is one row of the alias's history, whose ``parent`` is the row before it in the alias's line
        of promotions. A promotion extends the line from the current row. Pointing the alias at the version that
        :meth:`rollback_target` names is a rollback, whoever asks for it (the front door and the CLI both roll back
        by setting that version): its row takes the place of that version's own row in the line, so the next
        rollback steps back from there, and a promotion after rollbacks starts a new line from where they ended.
        An alias that did not exist (new, or dropped) starts a line of its own.
        """
        check_alias(alias)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as db:
            current = _alias_row(db, alias)
            previous = self._row(current) if current is not None else None
            parent = None
            if current is not None:
                target = _rollback_row(db, alias, current)
                if target is not None and (target["name"], target["version"]) == (adapter.name, adapter.version):
                    parent = target["parent"]  # a rollback: the line continues from before the version restored
                else:
                    head = _history_head(db, alias)
                    parent = head["id"] if head is not None else None
            db.execute(
                "INSERT INTO aliases (alias, name, version, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (alias) DO UPDATE SET name = excluded.name, version = excluded.version, "
                "updated = excluded.updated",
                (alias, adapter.name, adapter.version, now),
            )
            db.execute(
                "INSERT INTO alias_history (alias, name, version, at, parent) VALUES (?, ?, ?, ?, ?)",
                (alias, adapter.name, adapter.version, now, parent),
            )
        return previous

    def drop_alias(self, alias: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM aliases WHERE alias = ?", (alias,))

    def set_setting(self, key: str, value: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def remove(self, adapter: AdapterVersion) -> None:
        """Delete one version from the registry and the store. Refuses a loaded or aliased version."""
        if self.loaded_version(adapter.name) == adapter.version:
            raise AdapterRejected(
                f"{adapter.ref} is loaded.", f"Unload it first: lorastack adapters unload {adapter.name}."
            )
        pointing = [a for a, v in self.aliases().items() if v.ref == adapter.ref]
        if pointing:
            raise AdapterRejected(
                f"{adapter.ref} is what the alias {pointing[0]!r} serves.",
                f"Promote another version to {pointing[0]!r} first (lorastack adapters promote).",
            )
        with self._connect() as db:
            db.execute("DELETE FROM adapters WHERE name = ? AND version = ?", (adapter.name, adapter.version))
            # Delete the files inside the transaction: if that fails the row comes back.
            trash = adapter.path.with_name(f".removed-{uuid.uuid4().hex}")
            if adapter.path.exists():
                adapter.path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        parent = adapter.path.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
