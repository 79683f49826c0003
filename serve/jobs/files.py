"""Uploaded files (``/v1/files``): stored under ``LORASTACK_HOME/files`` with their sha256, checked as training data.

A stored file is named by its id alone (``files/file-<hex>.jsonl``): the client's file name is a label in the
database and never part of a path, so no upload can land outside the folder. Training data is checked once, when
uploaded, by the checker the CLI root hands the server (lorastack's own data checks, which live in the fine-tuning
room that serving does not import): ``processed``, or ``error`` with the checker's file:line message in
``status_details``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lorastack.errors import LorastackError, NotFound
from lorastack.serve.jobs.errors import InvalidRequest, TooLarge
from lorastack.serve.jobs.store import JobStore, new_id

logger = logging.getLogger(__name__)

DataCheck = Callable[[Path], str]
"""Checks a training data file (``.jsonl`` or ``.json``): returns a one-line summary, raises a
:class:`LorastackError` naming the file and line of the first bad row."""

PURPOSES = ("fine-tune",)
"""What clients may upload files for (``fine-tune-results`` files are written by jobs themselves)."""
RESULTS = "fine-tune-results"
SUFFIXES = (".jsonl", ".json")
FILENAME_MAX = 255
_CHUNK = 1 << 20


class FileStore:
    """The files folder and its rows in the registry database."""

    def __init__(self, home: Path, store: JobStore, max_bytes: int, check: DataCheck | None = None) -> None:
        self.folder = home / "files"
        self.folder.mkdir(parents=True, exist_ok=True)
        for partial in self.folder.glob(".*.part"):  # an upload cut off with its server (one server per home)
            partial.unlink(missing_ok=True)
        self.store = store
        self.max_bytes = max_bytes
        self.check = check

    def path(self, row: dict[str, Any]) -> Path:
        """Where a file row's content is; refuses a stored name that would leave the folder (a corrupt row)."""
        path = (self.folder / row["stored"]).resolve()
        if path.parent != self.folder.resolve():
            raise NotFound(f"File {row['id']} is not in the files folder.", "Upload it again.")
        return path

    def add(self, source: IO[bytes], filename: str, purpose: str) -> dict[str, Any]:
        """Copy ``source`` into the store (sha256 and size counted on the way, the size limit held), check it."""
        if purpose not in PURPOSES:
            raise InvalidRequest(f"purpose {purpose!r} is not one lorastack takes.", "Use purpose='fine-tune'.",
                                 "purpose")  # fmt: skip
        label = os.path.basename(filename.replace("\\", "/"))[:FILENAME_MAX]
        suffix = Path(label).suffix.lower()
        if suffix not in SUFFIXES:
            raise InvalidRequest(
                f"{label or 'The file'} is not a .jsonl or .json file.",
                "Upload training data as JSON Lines (one conversation per line), e.g. train.jsonl.", "file",
            )  # fmt: skip
        file_id = new_id("file")
        stored = f"{file_id}{suffix}"
        target = self.folder / stored
        partial = target.with_name(f".{stored}.part")
        digest, size = hashlib.sha256(), 0
        try:
            with partial.open("wb") as out:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TooLarge(f"The file is larger than this server's limit of {_mib(self.max_bytes)}.",
                                       "Upload less data, or start the server with a larger --max-file-mib.")  # fmt: skip
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise InvalidRequest("The file is empty.", "Upload training data.", "file")
            partial.rename(target)
        finally:
            partial.unlink(missing_ok=True)
        status, details = self._checked(target, label)
        row = {"id": file_id, "filename": label, "purpose": purpose, "bytes": size, "sha256": digest.hexdigest(),
               "stored": stored, "created_at": int(time.time()), "status": status, "status_details": details}  # fmt: skip
        try:
            return self.store.add_file(row)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def add_results(self, job_id: str, content: bytes) -> dict[str, Any]:
        """A job's results file (CSV of its steps and losses), stored like an upload."""
        file_id = new_id("file")
        stored = f"{file_id}.csv"
        (self.folder / stored).write_bytes(content)
        row = {"id": file_id, "filename": f"{job_id}-results.csv", "purpose": RESULTS, "bytes": len(content),
               "sha256": hashlib.sha256(content).hexdigest(), "stored": stored, "created_at": int(time.time()),
               "status": "processed", "status_details": None}  # fmt: skip
        return self.store.add_file(row)

    def _checked(self, path: Path, label: str) -> tuple[str, str | None]:
        if self.check is None:
            return "uploaded", None  # checked by the training run itself when a job uses it
        try:
            summary = self.check(path)
        except ImportError as exc:  # the checker's room is not installed (lorastack[train]): the run checks it
            logger.warning("Training data not checked on upload (%s); the job's training run checks it.", exc)
            return "uploaded", None
        except LorastackError as exc:
            # The checker names the stored file; the client knows the name it uploaded.
            return "error", str(exc).replace(str(path), label)
        except (OSError, ValueError, UnicodeError) as exc:  # what a file may raise before the checker can name it
            return "error", f"{label} could not be read as training data: {exc}".replace(str(path), label)
        logger.info("File %s (%s): %s", path.name, label, summary)
        return "processed", None

    def delete(self, file_id: str) -> dict[str, Any]:
        row = self.store.delete_file(file_id)
        self.path(row).unlink(missing_ok=True)
        return row


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB"
