"""API keys for the front door: who may call models (``inference``) and who may also manage them (``admin``).

Keys live in the ``api_keys`` table of ``LORASTACK_HOME/registry.db``, beside the registry's tables. Only a
key's SHA-256 digest is stored; the key itself is shown once, when it is created. Compose deployments can
also pass keys in the environment: ``LORASTACK_API_KEY`` (inference) and ``LORASTACK_ADMIN_KEY`` (admin).

The front door asks for a key only once one exists (:meth:`KeyStore.enabled`)::

    store = KeyStore()
    if store.enabled() and not allows(store.role_of(presented_key), Role.inference):
        ...  # 401
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lorastack.access import ENV_KEYS, Role, allows  # noqa: F401  (re-exported: the store's callers use them)
from lorastack.db import transaction
from lorastack.errors import LorastackError, NotFound
from lorastack.paths import home_dir

logger = logging.getLogger(__name__)

KEY_PREFIX = "lsk-"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id       TEXT PRIMARY KEY,
    role     TEXT NOT NULL,
    label    TEXT NOT NULL,
    digest   TEXT NOT NULL UNIQUE,
    created  TEXT NOT NULL
);
"""
_MAX_AGE = 1.0
"""Seconds the cached digests are trusted without a re-read, however unchanged the database file looks."""


_ROLE_VALUES = frozenset(r.value for r in Role)


def parse_role(value: str) -> Role:
    """``inference`` or ``admin`` (any case), else an error that lists both."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise LorastackError(
            f"Unknown role {value!r}.", f"Use --role {' or --role '.join(Role)} (admin may also do inference)."
        ) from None


@dataclass(frozen=True)
class KeyInfo:
    """A stored key, without the key: it cannot be recovered from the digest."""

    id: str
    role: Role
    label: str
    created: str


def _digest(key: str) -> str:
    # Keys are 256-bit random tokens, not passwords: no one can guess them, so a slow salted hash (bcrypt,
    # argon2) would buy nothing and cost milliseconds per request. A plain SHA-256 is what GitHub and Stripe
    # store for their tokens. surrogatepass: any str hashes, even one decoded with surrogateescape.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The front door's API keys. ``role_of`` is cheap enough to call on every request."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or home_dir()
        self.db_path = self.home / "registry.db"
        self.home.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.db_path, timeout=30)) as db:
            db.executescript(_SCHEMA)  # executescript manages its own transaction
        # (file signature, when read, [(digest, role)]): replaced whole, never changed in place.
        self._cache: tuple[tuple, float, list[tuple[str, Role | None]]] | None = None
        self._fd: int | None = None  # the database file, kept open for the change counter (see _signature)
        self._fd_inode = 0
        self._fd_lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One short transaction (committed, or rolled back on error)."""
        with transaction(self.db_path) as db:
            yield db
        self._cache = None  # our own writes count at once

    # -- managing ----------------------------------------------------------------------------------

    def create(self, role: Role, label: str = "") -> tuple[KeyInfo, str]:
        """Store a new key of ``role``; returns its info and the key, which cannot be shown again."""
        role = Role(role)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        for _ in range(5):  # the id is 32 bits of the digest: a clash is unlikely, and then we draw again
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            digest = _digest(key)
            info = KeyInfo(id=digest[:8], role=role, label=label, created=created)
            try:
                with self._connect() as db:
                    db.execute(
                        "INSERT INTO api_keys (id, role, label, digest, created) VALUES (?, ?, ?, ?, ?)",
                        (info.id, role.value, label, digest, created),
                    )
            except sqlite3.IntegrityError:
                continue
            logger.debug("Created %s key %s", role, info.id)
            return info, key
        raise LorastackError("Could not draw an unused key id.", "Try again.")

    def list(self) -> list[KeyInfo]:
        with self._connect() as db:
            rows = db.execute("SELECT id, role, label, created FROM api_keys ORDER BY created, id").fetchall()
        return [KeyInfo(r["id"], Role(r["role"]), r["label"], r["created"]) for r in rows]

    def revoke(self, key_id: str) -> KeyInfo:
        """Delete a key by id (or by the key itself); the front door refuses it from the next request on."""
        key_id = _digest(key_id)[:8] if key_id.startswith(KEY_PREFIX) else key_id.strip().lower()
        with self._connect() as db:
            row = db.execute("SELECT id, role, label, created FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise NotFound(f"No API key with id {key_id!r}.", "See lorastack keys list.")
            db.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
        logger.debug("Revoked key %s", key_id)
        return KeyInfo(row["id"], Role(row["role"]), row["label"], row["created"])

    # -- checking (per request) --------------------------------------------------------------------

    def role_of(self, key: str | None) -> Role | None:
        """The role ``key`` grants (the highest, if it is several), or None for a missing or unknown key."""
        if not key:
            return None
        digest = _digest(key)
        found: Role | None = None
        for stored, role in (*_env_digests(), *self._stored()):
            # Every digest is compared, in constant time, so timing says nothing about which one matched.
            if hmac.compare_digest(stored, digest) and found is not Role.admin:
                found = role or found
        return found

    def enabled(self) -> bool:
        """Whether any key exists (stored or in the environment): only then does the front door ask for one."""
        return bool(_env_digests() or self._stored())

    def _stored(self) -> list[tuple[str, Role | None]]:
        """The stored digests, re-read when the database file changed and at least every second."""
        signature = self._signature()  # taken before reading: a write in between makes the next call re-read
        now = time.monotonic()
        cache = self._cache
        if cache is not None and cache[0] == signature and now - cache[1] < _MAX_AGE:
            return cache[2]
        digests: list[tuple[str, Role | None]] = []
        if signature:
            with closing(sqlite3.connect(self.db_path, timeout=30)) as db:
                rows = db.execute("SELECT digest, role FROM api_keys").fetchall()
            for digest, role in rows:
                if role not in _ROLE_VALUES:  # written by something else: it grants nothing, yet keeps keys on
                    logger.warning("API key with unknown role %r: refused", role)
                digests.append((digest, Role(role) if role in _ROLE_VALUES else None))
        self._cache = (signature, now, digests)
        return digests

    def _signature(self) -> tuple:
        """What changes when the database does. SQLite bumps a change counter in the file header (bytes 24-27)
        on every commit, which mtime can miss for writes within one clock tick; in WAL mode neither moves
        until a checkpoint, which the one-second limit in ``_stored`` covers.

        On every request of the front door, so two system calls: a stat of the path (a replaced or deleted file
        shows there) and a read of the counter through a descriptor kept open (no open and close each time)."""
        try:
            stat = os.stat(self.db_path)
        except FileNotFoundError:
            return ()  # deleted under us: no stored keys
        with self._fd_lock:
            if self._fd is None or self._fd_inode != stat.st_ino:
                self._close()
                try:
                    self._fd = os.open(self.db_path, os.O_RDONLY)
                except FileNotFoundError:
                    return ()
                self._fd_inode = os.fstat(self._fd).st_ino
            counter = os.pread(self._fd, 4, 24)
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns, counter)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)


def _env_digests() -> list[tuple[str, Role]]:
    """Keys from the environment, read at every call so a changed variable counts at once."""
    found: list[tuple[str, Role]] = []
    for variable, role in ENV_KEYS.items():
        key = os.environ.get(variable, "").strip()
        if key:
            found.append((_env_digest(key), role))
    return found


@functools.lru_cache(maxsize=8)
def _env_digest(key: str) -> str:
    """The digest of an environment key, computed once per value (the variable is read at every call)."""
    return _digest(key)
