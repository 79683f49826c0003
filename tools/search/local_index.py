"""A BM25 index over folders of the user's documents, in one SQLite file, updated incrementally.

Where: ``INDEX/index.sqlite``; ``INDEX`` is ``SearchConfig.index_dir``, by default ``LORASTACK_HOME/index``.
One index holds every folder indexed into it (keyed by the folder's absolute path) and a search covers
all of them; ``--index PATH`` keeps a separate one. Tables: ``folders``; ``files`` (path relative to its
folder, size, mtime, sha256, title); ``chunks`` (text, and its tokens as a cache of the text).

bm25s cannot add documents to, or remove them from, a built index. So SQLite is the source of truth:
``update`` re-reads only files whose size or mtime changed (and re-chunks only those whose sha256 changed),
and the BM25 matrix is rebuilt in memory from the stored tokens the first time the index is searched
after a change (in each process, once per change). That is cheap next to re-reading and re-tokenising the
files: about 1 s per 10,000 chunks (2 million words) on one core, 0.1 s for a thousand notes. If corpora grow
far beyond that, save the matrix with ``BM25.save`` per generation and memory-map it instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastack.errors import LorastackError, NotFound
from lorastack.tools.search.documents import MAX_FILE_BYTES, chunk_document, decode_document, document_title, is_document
from lorastack.tools.search.errors import IndexMissing
from lorastack.tools.search.results import SearchResult, shorten

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 300
_BUILD_HINT = "Build it with: lorastack index DIR (a folder of .txt, .md, .rst or .html files)."
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    title TEXT NOT NULL,
    UNIQUE (folder_id, relpath)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    section TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_file ON chunks(file_id);
"""


def _load_stemmer() -> Any:
    try:
        import Stemmer  # PyStemmer (optional): with it, "rivers" also finds "river"
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


_STEMMER = _load_stemmer()
TOKENIZER = "bm25s-en-stopwords" + ("+snowball-english" if _STEMMER else "")
"""Stored with the index: chunks tokenised another way are re-tokenised (from their stored text) on open."""


def tokenize(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False)


@dataclass(frozen=True)
class IndexReport:
    """What one ``lorastack index DIR`` run did."""

    folder: Path
    index: Path
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    """Files left out: unreadable, or larger than MAX_FILE_BYTES."""
    read: int = 0
    """Files opened; the others were judged unchanged by size and mtime alone."""
    chunks: int = 0
    """This folder's chunks now in the index."""
    total_chunks: int = 0


class LocalIndex:
    """One index folder. Safe to share between threads (each operation opens its own connection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db_path = path / "index.sqlite"
        self._lock = threading.Lock()
        self._model: tuple[str, Any, list[int]] | None = None  # (generation, bm25s.BM25, chunk ids by row)

    # -- building ---------------------------------------------------------------------------------------

    def update(self, folder: Path) -> IndexReport:
        """Add ``folder``'s documents to the index, or bring them up to date (added, changed, deleted)."""
        folder = folder.expanduser()
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise NotFound(f"{folder} {what}.", "Give the folder that holds your documents: lorastack index DIR")
        folder = folder.resolve()
        on_disk, skipped = _scan(folder)
        counts = dict.fromkeys(("added", "updated", "removed", "unchanged", "read"), 0)
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO folders (path) VALUES (?)", (str(folder),))
            (folder_id,) = db.execute("SELECT id FROM folders WHERE path = ?", (str(folder),)).fetchone()
            known = {
                row[0]: row[1:]
                for row in db.execute(
                    "SELECT relpath, id, size, mtime_ns, sha256 FROM files WHERE folder_id = ?", (folder_id,)
                )
            }
            for relpath, stat in sorted(on_disk.items()):
                row = known.pop(relpath, None)
                if row is not None and (row[1], row[2]) == (stat.st_size, stat.st_mtime_ns):
                    counts["unchanged"] += 1
                    continue
                path = folder / relpath
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    logger.warning("Skipping %s: %s", path, exc)
                    skipped += 1
                    continue
                counts["read"] += 1
                sha = hashlib.sha256(data).hexdigest()
                if row is not None and row[3] == sha:  # touched, not changed
                    db.execute(
                        "UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (stat.st_size, stat.st_mtime_ns, row[0])
                    )
                    counts["unchanged"] += 1
                    continue
                text = decode_document(path, data)
                title = document_title(text, path.name)
                if row is None:
                    file_id = db.execute(
                        "INSERT INTO files (folder_id, relpath, size, mtime_ns, sha256, title) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (folder_id, relpath, stat.st_size, stat.st_mtime_ns, sha, title),
                    ).lastrowid
                    counts["added"] += 1
                else:
                    file_id = row[0]
                    db.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
                    db.execute(
                        "UPDATE files SET size = ?, mtime_ns = ?, sha256 = ?, title = ? WHERE id = ?",
                        (stat.st_size, stat.st_mtime_ns, sha, title, file_id),
                    )
                    counts["updated"] += 1
                self._insert_chunks(db, file_id, title, text)
            for relpath, row in known.items():  # what is left was deleted from the folder
                db.execute("DELETE FROM files WHERE id = ?", (row[0],))
                counts["removed"] += 1
            if counts["added"] or counts["updated"] or counts["removed"]:
                _bump_generation(db)
            chunks, total = _chunk_counts(db, folder_id)
        logger.debug("Indexed %s into %s: %s", folder, self.path, counts)
        return IndexReport(folder, self.path, skipped=skipped, chunks=chunks, total_chunks=total, **counts)

    def remove_folder(self, folder: Path) -> IndexReport:
        """Drop a folder's documents from the index (the folder itself is left alone)."""
        folder = folder.expanduser().resolve()
        with self._db(create=False) as db:
            row = db.execute("SELECT id FROM folders WHERE path = ?", (str(folder),)).fetchone()
            if row is None:
                indexed = ", ".join(r[0] for r in db.execute("SELECT path FROM folders ORDER BY path")) or "none"
                raise NotFound(f"{folder} is not in the index at {self.path}.", f"Indexed folders: {indexed}.")
            (removed,) = db.execute("SELECT count(*) FROM files WHERE folder_id = ?", (row[0],)).fetchone()
            db.execute("DELETE FROM folders WHERE id = ?", (row[0],))
            _bump_generation(db)
            _, total = _chunk_counts(db, row[0])
        return IndexReport(folder, self.path, removed=removed, total_chunks=total)

    def has_documents(self) -> bool:
        """Whether the index exists and holds at least one chunk (read only: nothing is created or migrated)."""
        if not self.db_path.exists():
            return False
        try:
            db = sqlite3.connect(f"{self.db_path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
            try:
                return db.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is not None
            finally:
                db.close()
        except sqlite3.Error:
            return False  # unreadable or not an index: searching it would fail, so it does not count

    def folders(self) -> list[Path]:
        """The folders indexed here."""
        if not self.db_path.exists():
            return []
        with self._db(create=False) as db:
            return [Path(r[0]) for r in db.execute("SELECT path FROM folders ORDER BY path")]

    @staticmethod
    def _insert_chunks(db: sqlite3.Connection, file_id: int, title: str, text: str) -> None:
        chunks = chunk_document(text)
        if len(chunks) > 1:  # a chunk of just the title (an HTML <title>) adds nothing: every chunk has it
            chunks = [c for c in chunks if c.text != title]
        # The title and section heading count as words of every chunk under them.
        tokens = tokenize([f"{title}\n{c.section}\n{c.text}" for c in chunks]) if chunks else []
        db.executemany(
            "INSERT INTO chunks (file_id, section, text, tokens) VALUES (?, ?, ?, ?)",
            [(file_id, c.section, c.text, " ".join(t)) for c, t in zip(chunks, tokens)],
        )

    # -- searching --------------------------------------------------------------------------------------

    def search(self, query: str, k: int) -> list[SearchResult]:
        """The ``k`` chunks that best match ``query`` (BM25), best first; only chunks sharing a word with it."""
        try:
            return self._search(query, k)
        except sqlite3.Error as exc:
            raise LorastackError(
                f"The local search index at {self.path} cannot be read ({exc}).",
                "Rebuild it: delete that folder, then run lorastack index DIR again.",
            ) from exc

    def _search(self, query: str, k: int) -> list[SearchResult]:
        import numpy as np

        with self._lock:
            bm25, chunk_ids = self._loaded()
        terms = tokenize([query])[0]
        known = [t for t in terms if t in bm25.vocab_dict]
        if not known:
            return []
        scores = bm25.get_scores(known)
        best = [int(i) for i in np.argsort(-scores, kind="stable")[:k] if scores[i] > 0]
        if not best:
            return []
        with self._db(create=False) as db:
            rows = {
                row[0]: row[1:]
                for row in db.execute(
                    "SELECT chunks.id, chunks.section, chunks.text, files.relpath, files.title, folders.path "
                    "FROM chunks JOIN files ON files.id = chunks.file_id JOIN folders ON folders.id = files.folder_id "
                    f"WHERE chunks.id IN ({','.join('?' * len(best))})",
                    [chunk_ids[i] for i in best],
                )
            }
        results = []
        for i in best:
            if (row := rows.get(chunk_ids[i])) is None:  # deleted by an update since the matrix was built
                continue
            section, text, relpath, title, folder = row
            results.append(
                SearchResult(
                    title=f"{title} › {section}" if section and section != title else title,
                    snippet=best_passage(text, set(terms)),
                    source=relpath,
                    path=Path(folder) / relpath,
                    score=float(scores[i]),
                )
            )
        return results

    def _loaded(self) -> tuple[Any, list[int]]:
        """The BM25 matrix of the stored chunks, rebuilt if the index changed since it was last built."""
        import bm25s

        with self._db(create=False) as db:
            generation = _generation(db)
            if self._model is not None and self._model[0] == generation:
                return self._model[1], self._model[2]
            rows = db.execute("SELECT id, tokens FROM chunks ORDER BY id").fetchall()
        if not rows:
            raise IndexMissing(f"The local search index at {self.path} holds no documents.", _BUILD_HINT)
        bm25 = bm25s.BM25()
        bm25.index([tokens.split() for _, tokens in rows], show_progress=False)
        self._model = (generation, bm25, [chunk_id for chunk_id, _ in rows])
        return bm25, self._model[2]

    # -- storage ----------------------------------------------------------------------------------------

    @contextmanager
    def _db(self, create: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction (committed on success)."""
        if not create and not self.db_path.exists():
            raise IndexMissing(f"No local search index at {self.path}.", _BUILD_HINT)
        self.path.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(_SCHEMA)
            with db:
                self._retokenize_if_needed(db)
                yield db
        finally:
            db.close()

    @staticmethod
    def _retokenize_if_needed(db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'tokenizer'").fetchone()
        if row is not None and row[0] == TOKENIZER:
            return
        rows = db.execute(
            "SELECT chunks.id, files.title, chunks.section, chunks.text "
            "FROM chunks JOIN files ON files.id = chunks.file_id"
        ).fetchall()
        if rows:
            logger.debug("Re-tokenising %d chunks for %s", len(rows), TOKENIZER)
            tokens = tokenize([f"{title}\n{section}\n{text}" for _, title, section, text in rows])
            db.executemany(
                "UPDATE chunks SET tokens = ? WHERE id = ?", [(" ".join(t), row[0]) for row, t in zip(rows, tokens)]
            )
            _bump_generation(db)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('tokenizer', ?)", (TOKENIZER,))


def _scan(folder: Path) -> tuple[dict[str, os.stat_result], int]:
    """The documents under ``folder`` (hidden files and folders left out) by relative POSIX path."""
    found: dict[str, os.stat_result] = {}
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath, name)
            if not is_document(path):
                continue
            try:
                stat = path.stat()
            except OSError as exc:  # a dangling link, a file deleted meanwhile
                logger.warning("Skipping %s: %s", path, exc)
                skipped += 1
                continue
            if stat.st_size > MAX_FILE_BYTES:
                logger.warning("Skipping %s: larger than %d bytes", path, MAX_FILE_BYTES)
                skipped += 1
                continue
            found[path.relative_to(folder).as_posix()] = stat
    return found, skipped


def _generation(db: sqlite3.Connection) -> str:
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return row[0] if row else "0"


def _bump_generation(db: sqlite3.Connection) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(int(_generation(db)) + 1),))


def _chunk_counts(db: sqlite3.Connection, folder_id: int) -> tuple[int, int]:
    (mine,) = db.execute(
        "SELECT count(*) FROM chunks JOIN files ON files.id = chunks.file_id WHERE files.folder_id = ?", (folder_id,)
    ).fetchone()
    (total,) = db.execute("SELECT count(*) FROM chunks").fetchone()
    return mine, total


def best_passage(text: str, terms: set[str], limit: int = SNIPPET_CHARS) -> str:
    """The sentences of ``text`` around the one that shares most words with the query, within ``limit``."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
    if len(text) <= limit or len(sentences) < 2:
        return shorten(text, limit)
    hits = [len(terms.intersection(tokens)) for tokens in tokenize(sentences)]
    start = end = hits.index(max(hits))
    size = len(sentences[start])
    while True:  # grow forwards first: what follows a matching sentence usually completes it
        if end + 1 < len(sentences) and size + 1 + len(sentences[end + 1]) <= limit:
            end += 1
            size += 1 + len(sentences[end])
        elif start > 0 and size + 1 + len(sentences[start - 1]) <= limit:
            start -= 1
            size += 1 + len(sentences[start])
        else:
            break
    return shorten(" ".join(sentences[start : end + 1]), limit)
