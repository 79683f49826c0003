"""Files and fine-tuning jobs in the registry database (``LORASTACK_HOME/registry.db``).

Four tables of their own, created when first opened (``CREATE TABLE IF NOT EXISTS``): a database written before
fine-tuning jobs existed gains them and keeps everything else as it was. Rows are returned as plain dicts; the
OpenAI objects are shaped from them in :mod:`lorastack.serve.jobs.objects`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from lorastack.db import transaction
from lorastack.errors import NotFound
from lorastack.serve.jobs.errors import Conflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ft_files (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    filename       TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    bytes          INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    stored         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    status         TEXT NOT NULL,
    status_details TEXT
);
CREATE TABLE IF NOT EXISTS ft_jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,
    model            TEXT NOT NULL,
    training_file    TEXT NOT NULL,
    validation_file  TEXT,
    suffix           TEXT,
    seed             INTEGER NOT NULL,
    metadata         TEXT,
    hyperparameters  TEXT NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    trained_tokens   INTEGER,
    fine_tuned_model TEXT,
    adapter          TEXT,
    result_files     TEXT NOT NULL DEFAULT '[]',
    started_at       INTEGER,
    finished_at      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ft_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    job_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    level      TEXT NOT NULL,
    message    TEXT NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT
);
CREATE INDEX IF NOT EXISTS ft_events_job ON ft_events (job_id, seq);
CREATE TABLE IF NOT EXISTS ft_checkpoints (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    job_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    metrics    TEXT NOT NULL,
    UNIQUE (job_id, step)
);
"""

ACTIVE = ("validating_files", "queued", "running")
"""Job statuses that are not final."""
FINAL = ("succeeded", "failed", "cancelled")
_JSON_COLUMNS = ("metadata", "hyperparameters", "error", "result_files", "data", "metrics")


def new_id(prefix: str) -> str:
    """``prefix-`` and 24 random lower-case hex digits (safe in a file name, a URL and an adapter name)."""
    return f"{prefix}-{secrets.token_hex(12)}"


def _dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for column in _JSON_COLUMNS:
        if column in out and out[column] is not None:
            out[column] = json.loads(out[column])
    return out


class JobStore:
    """The rows of files, jobs, their events and checkpoints; every call is one transaction."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(db_path, timeout=30)) as db:
            db.executescript(_SCHEMA)  # executescript manages its own transaction

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with transaction(self.db_path) as db:
            yield db

    # -- files -------------------------------------------------------------------------------------------------

    def add_file(self, row: dict[str, Any]) -> dict[str, Any]:
        with self._connect() as db:
            db.execute(
                "INSERT INTO ft_files (id, filename, purpose, bytes, sha256, stored, created_at, status, "
                "status_details) VALUES (:id, :filename, :purpose, :bytes, :sha256, :stored, :created_at, :status, "
                ":status_details)",
                row,
            )
        return self.file(row["id"])

    def file(self, file_id: str) -> dict[str, Any]:
        with self._connect() as db:
            row = db.execute("SELECT * FROM ft_files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise NotFound(f"No file {file_id!r}.", "List files with GET /v1/files.")
        return _dict(row)

    def files(self, after: str | None, limit: int, purpose: str | None, ascending: bool) -> tuple[list[dict], bool]:
        where, args = ["1"], []
        if purpose:
            where.append("purpose = ?")
            args.append(purpose)
        if after:
            seq = self._seq("ft_files", after)
            where.append("seq > ?" if ascending else "seq < ?")
            args.append(seq)
        order = "ASC" if ascending else "DESC"
        query = f"SELECT * FROM ft_files WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"
        return self._page(query, args, limit)

    def delete_file(self, file_id: str) -> dict[str, Any]:
        """Delete ``file_id``'s row (its file is the caller's); refuses a file a job still needs."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM ft_files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise NotFound(f"No file {file_id!r}.", "List files with GET /v1/files.")
            marks = ",".join("?" * len(ACTIVE))
            busy = db.execute(
                f"SELECT id FROM ft_jobs WHERE status IN ({marks}) AND (training_file = ? OR validation_file = ?)",
                (*ACTIVE, file_id, file_id),
            ).fetchone()
            if busy is not None:
                raise Conflict(f"File {file_id} is the data of job {busy['id']}, which has not finished.",
                               f"Cancel it first (POST /v1/fine_tuning/jobs/{busy['id']}/cancel).")  # fmt: skip
            db.execute("DELETE FROM ft_files WHERE id = ?", (file_id,))
        return _dict(row)

    # -- jobs --------------------------------------------------------------------------------------------------

    def add_job(self, row: dict[str, Any]) -> dict[str, Any]:
        row = {**row, **{k: json.dumps(row[k]) for k in ("metadata", "hyperparameters", "error") if row.get(k)}}
        with self._connect() as db:
            db.execute(
                "INSERT INTO ft_jobs (id, created_at, model, training_file, validation_file, suffix, seed, metadata, "
                "hyperparameters, status, error, fine_tuned_model, finished_at) VALUES (:id, :created_at, :model, "
                ":training_file, :validation_file, :suffix, :seed, :metadata, :hyperparameters, :status, :error, "
                ":fine_tuned_model, :finished_at)",
                {"metadata": None, "error": None, "finished_at": None, "fine_tuned_model": None, **row},
            )
        return self.job(row["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        with self._connect() as db:
            row = db.execute("SELECT * FROM ft_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"No fine-tuning job {job_id!r}.", "List jobs with GET /v1/fine_tuning/jobs.")
        return _dict(row)

    def jobs(self, after: str | None, limit: int, metadata: dict[str, str] | None = None) -> tuple[list[dict], bool]:
        """Newest first; ``after`` is the id of the last job of the previous page."""
        where, args = ["1"], []
        if after:
            where.append("seq < ?")
            args.append(self._seq("ft_jobs", after))
        for key, value in (metadata or {}).items():
            where.append("json_extract(metadata, ?) = ?")
            args += [f"$.{json.dumps(key)}", value]
        query = f"SELECT * FROM ft_jobs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        return self._page(query, args, limit)

    def update_job(self, job_id: str, only_if: tuple[str, ...] = (), **fields: Any) -> bool:
        """Set ``fields`` on ``job_id`` (if its status is one of ``only_if``, when given); whether it changed."""
        values = {k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in fields.items()}
        sets = ", ".join(f"{k} = :{k}" for k in values)
        where = "id = :_id"
        if only_if:
            where += f" AND status IN ({','.join(repr(s) for s in only_if)})"
        with self._connect() as db:
            changed = db.execute(f"UPDATE ft_jobs SET {sets} WHERE {where}", {**values, "_id": job_id}).rowcount
        return changed > 0

    def job_ids(self, status: str) -> list[str]:
        with self._connect() as db:
            return [r["id"] for r in db.execute("SELECT id FROM ft_jobs WHERE status = ? ORDER BY seq", (status,))]

    def next_job(self) -> dict[str, Any] | None:
        """The job the worker runs next: one left running by a stopped server first, then the oldest queued."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM ft_jobs WHERE status IN ('running', 'queued') AND cancel_requested = 0 "
                "ORDER BY status = 'running' DESC, seq ASC LIMIT 1"
            ).fetchone()
        return _dict(row) if row else None

    # -- events and checkpoints --------------------------------------------------------------------------------

    def add_event(self, job_id: str, message: str, kind: str = "message", data: dict | None = None,
                  level: str = "info") -> None:  # fmt: skip
        with self._connect() as db:
            db.execute(
                "INSERT INTO ft_events (id, job_id, created_at, level, message, type, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_id("ftevent"), job_id, int(time.time()), level, message, kind, json.dumps(data) if data else None),
            )

    def events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        """Newest first, as OpenAI lists them."""
        self.job(job_id)
        where, args = ["job_id = ?"], [job_id]
        if after:
            where.append("seq < ?")
            args.append(self._seq("ft_events", after))
        return self._page(f"SELECT * FROM ft_events WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", args, limit)

    def all_events(self, job_id: str) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM ft_events WHERE job_id = ? ORDER BY seq", (job_id,)).fetchall()
        return [_dict(r) for r in rows]

    def add_checkpoint(self, job_id: str, step: int, metrics: dict) -> bool:
        """Record the checkpoint of ``step`` once; whether it was new."""
        with self._connect() as db:
            changed = db.execute(
                "INSERT OR IGNORE INTO ft_checkpoints (id, job_id, created_at, step, metrics) VALUES (?, ?, ?, ?, ?)",
                (new_id("ftckpt"), job_id, int(time.time()), step, json.dumps(metrics)),
            ).rowcount
        return changed > 0

    def checkpoints(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        self.job(job_id)
        where, args = ["job_id = ?"], [job_id]
        if after:
            where.append("seq < ?")
            args.append(self._seq("ft_checkpoints", after))
        query = f"SELECT * FROM ft_checkpoints WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        return self._page(query, args, limit)

    # -- paging ------------------------------------------------------------------------------------------------

    def _seq(self, table: str, row_id: str) -> int:
        with self._connect() as db:
            row = db.execute(f"SELECT seq FROM {table} WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise NotFound(f"No {row_id!r} to page after.", "Pass the id of the last item of the previous page.")
        return row["seq"]

    def _page(self, query: str, args: list, limit: int) -> tuple[list[dict], bool]:
        """One page of ``limit`` rows, and whether there are more (one row more is read to tell)."""
        with self._connect() as db:
            rows = db.execute(query, (*args, limit + 1)).fetchall()
        return [_dict(r) for r in rows[:limit]], len(rows) > limit
