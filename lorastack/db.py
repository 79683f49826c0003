"""SQLite transactions shared by the registry and the API key store (one file, ``LORASTACK_HOME/registry.db``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection whose ``with`` block is one transaction: committed, or rolled back on any error.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so two processes never both read-then-write stale data;
    the 30 s timeout waits out the other's transaction.
    """
    with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
