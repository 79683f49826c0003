"""A persistent cache of web results, so that asking the same question again does not ask DuckDuckGo again.

One SQLite file (``SearchConfig.cache_path``), keyed by the normalised query and everything else that
changes the answer (result count, engines, region). Entries older than the TTL are ignored and purged.
The cache is only a saving: if it cannot be read or written, the search goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from lorastack.tools.search.results import SearchResult

logger = logging.getLogger(__name__)


def normalize_query(query: str) -> str:
    """Case, spacing and a trailing question mark do not change what a search engine returns."""
    return " ".join(query.casefold().split()).rstrip("?!. ")


def cache_key(query: str, *parts: object) -> str:
    return hashlib.sha256(json.dumps([normalize_query(query), *parts]).encode()).hexdigest()


class ResultCache:
    def __init__(self, path: Path, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.ttl = ttl
        self._clock = clock

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5)
        try:
            with db:  # one transaction
                db.execute(
                    "CREATE TABLE IF NOT EXISTS results "
                    "(key TEXT PRIMARY KEY, created REAL NOT NULL, json TEXT NOT NULL)"
                )
                yield db
        finally:
            db.close()

    def get(self, key: str) -> list[SearchResult] | None:
        """The cached results, or None if there are none younger than the TTL."""
        try:
            with self._db() as db:
                row = db.execute(
                    "SELECT json FROM results WHERE key = ? AND created >= ?", (key, self._clock() - self.ttl)
                ).fetchone()
            return None if row is None else [SearchResult(**item) for item in json.loads(row[0])]
        except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
            logger.warning("Search cache %s unreadable, searching without it: %s", self.path, exc)
            return None

    def put(self, key: str, results: list[SearchResult]) -> None:
        now = self._clock()
        payload = json.dumps([{k: v for k, v in asdict(r).items() if k != "path"} for r in results])
        try:
            with self._db() as db:
                db.execute("DELETE FROM results WHERE created < ?", (now - self.ttl,))
                db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, now, payload))
        except (sqlite3.Error, OSError) as exc:
            logger.warning("Search cache %s not writable, result not cached: %s", self.path, exc)
