"""Where rows come from (a local .jsonl/.json file or a Hugging Face dataset), the check of every row, the
eval split and the fingerprints written on the adapter card.

Every row is located for errors: ``data.jsonl:17`` (1-based line; for a .json list, the line its element
starts on) or ``org/name[train] row 16`` (the index ``dataset[16]`` has).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastack.finetune.data.config import DataConfig
from lorastack.finetune.data.errors import DataError
from lorastack.finetune.data.formats import Conversation, Format, detect_format, to_conversation

logger = logging.getLogger(__name__)


STREAM_CHECK_ROWS = 1000
"""Rows :func:`validate` checks up front of a streamed hub dataset (the rest are checked as training reads them)."""


@dataclass(frozen=True)
class DataStats:
    """What :func:`validate` found: every row parsed and checked (the first rows only of a streamed hub dataset)."""

    source: str
    format: str
    rows: int
    assistant_turns: int
    rows_with_tools: int
    tool_calls: int
    complete: bool = True
    """False when only the first ``rows`` were checked (a streamed hub dataset)."""

    def __str__(self) -> str:
        tools = f", {self.rows_with_tools:,} with tools, {self.tool_calls:,} tool calls" if self.tool_calls else ""
        turns = f"{self.assistant_turns:,} assistant turns{tools}"
        rows = f"{self.rows:,} conversations" if self.complete else f"first {self.rows:,} conversations (streamed)"
        return f"{rows} from {self.source} ({self.format} format, {turns})"


def validate(config: DataConfig) -> DataStats:
    """Parse and check every row; the first bad one raises :class:`DataError` with its location.

    Nothing is tokenized or written. A streamed hub dataset is not read to its end here: its first
    :data:`STREAM_CHECK_ROWS` rows are checked, the rest when training reaches them.
    """
    limit = STREAM_CHECK_ROWS if config.streaming and config.path is None else None
    fmt, rows, turns, with_tools, calls = "", 0, 0, 0, 0
    for conversation, fmt in _conversations_with_format(config):
        rows += 1
        turns += conversation.assistant_turns
        with_tools += conversation.tools is not None
        calls += conversation.tool_calls
        if rows == limit:
            break
    if rows == 0:
        raise DataError(f"{config.source_name} holds no rows.", "Point data.path or data.dataset at training data.")
    held_out = eval_source(config)
    if held_out is not None and sum(1 for _ in conversations(held_out)) == 0:
        raise DataError(f"{held_out.path} holds no rows.", "Point data.eval_path at eval data, or leave it out.")
    return DataStats(config.source_name, fmt, rows, turns, with_tools, calls, complete=rows != limit)


def conversations(config: DataConfig) -> Iterator[Conversation]:
    """Every row as a checked :class:`Conversation`, in file order (lazily; a bad row raises when reached)."""
    for conversation, _ in _conversations_with_format(config):
        yield conversation


def _conversations_with_format(config: DataConfig) -> Iterator[tuple[Conversation, Format]]:
    fmt: Format | None = None if config.format == "auto" else config.format
    for where, row in rows(config):
        if fmt is None:
            fmt = detect_format(row, where)
            logger.debug("%s: %s format (from the first row's keys)", config.source_name, fmt)
        yield to_conversation(row, fmt, where), fmt


def eval_source(config: DataConfig) -> DataConfig | None:
    """The config that reads ``data.eval_path`` (same format and checks as the training data); None without one."""
    if config.eval_path is None:
        return None
    path = config.eval_path.expanduser()
    if not path.is_file():
        raise DataError(f"Eval data {path} does not exist.", "Check data.eval_path.")
    update = {"path": path, "eval_path": None, "dataset": None, "data_files": [], "streaming": False}
    return config.model_copy(update=update)


def in_eval(conversation: Conversation, fraction: float, seed: int) -> bool:
    """Whether a conversation is held out: a seeded hash of its content, compared with ``fraction``.

    The same content always lands on the same side (no duplicate leaks into both), whatever the row order
    or file format; a different seed draws a different split.
    """
    if fraction <= 0:
        return False
    content = json.dumps([conversation.messages, conversation.tools], sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{seed}\0{content}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


# --- reading rows --------------------------------------------------------------------------------------------


def rows(config: DataConfig) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` for every row of the configured source, lazily."""
    if config.path is not None:
        path = config.path.expanduser()
        if not path.is_file():
            raise DataError(f"Training data {path} does not exist.", "Check data.path.")
        yield from (_json_list_rows(path) if path.suffix == ".json" else _jsonl_rows(path))
    else:
        dataset = _load_dataset(config)
        for index, row in enumerate(dataset):
            yield f"{config.source_name} row {index}", row


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not UTF-8 text (byte {exc.start}).", "Save the file as UTF-8.") from None
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).", "Each line must be one JSON object."
                ) from None


def _json_list_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """Elements of a top-level JSON list, each with the line it starts on."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}).", "Save the file as UTF-8.") from None
    decoder = json.JSONDecoder()
    pos, line, counted = _skip_space(text, 0), 1, 0

    def fail(at: int, what: str) -> DataError:
        row = text.count("\n", 0, at) + 1
        return DataError(f"{path}:{row}: {what}", "A .json file must hold one list of row objects (or use .jsonl).")

    if not text.startswith("[", pos):
        if text.startswith("{", pos):
            raise fail(pos, "the file holds one JSON object, not a list of rows.")
        raise fail(pos, "not a JSON list.")
    pos = _skip_space(text, pos + 1)
    if text.startswith("]", pos):
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise fail(exc.pos, f"not valid JSON ({exc.msg}).") from None
        yield f"{path}:{line}", row
        pos = _skip_space(text, end)
        if text.startswith("]", pos):
            if text[_skip_space(text, pos + 1) :]:
                raise fail(pos + 1, "text after the closing ].")
            return
        if not text.startswith(",", pos):
            raise fail(pos, "expected ',' or ']' after a row.")
        pos = _skip_space(text, pos + 1)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _load_dataset(config: DataConfig) -> Any:
    """``datasets.load_dataset`` for the configured hub dataset or builder: a Dataset, or an IterableDataset."""
    import datasets

    try:
        return datasets.load_dataset(
            config.dataset,
            name=config.subset,
            split=config.split,
            data_files=list(config.data_files) or None,
            revision=config.revision,
            streaming=config.streaming,
        )
    except Exception as exc:  # hub, network, file and schema errors all mean the same to the user here
        raise DataError(
            f"Could not load {config.source_name}: {type(exc).__name__}: {exc}".replace("\n", " "),
            "Check data.dataset, data.subset and data.split (and the network, or HF_HUB_OFFLINE=1 for the cache).",
        ) from exc


# --- fingerprints ----------------------------------------------------------------------------------------------


def data_fingerprint(config: DataConfig) -> str:
    """sha256 (hex) identifying the training data, for the adapter card.

    A local file: its bytes. Local data_files: their names and bytes. A hub dataset: its id, subset, split and
    the commit the revision resolves to (the revision as given when the hub cannot be reached).
    """
    digest = hashlib.sha256()
    if config.path is not None:
        _hash_file(digest, config.path.expanduser())
        return digest.hexdigest()
    files = sorted({f for pattern in config.data_files for f in glob.glob(str(Path(pattern).expanduser()))})
    if files:
        digest.update(f"{config.dataset}\0{config.subset}\0{config.split}\0".encode())
        for file in files:
            digest.update(Path(file).name.encode() + b"\0")
            _hash_file(digest, Path(file))
        return digest.hexdigest()
    digest.update(f"hf-dataset\0{config.dataset}\0{config.subset}\0{config.split}\0{_hub_revision(config)}".encode())
    return digest.hexdigest()


def template_fingerprint(template_text: str) -> str:
    """sha256 (hex) of a chat template's text: the card records which template the data was rendered with."""
    return hashlib.sha256(template_text.encode()).hexdigest()


def _hash_file(digest: Any, path: Path) -> None:
    if not path.is_file():
        raise DataError(f"Training data {path} does not exist.", "Check data.path / data.data_files.")
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)


def _hub_revision(config: DataConfig) -> str:
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(config.dataset, revision=config.revision).sha
        if sha:
            return sha
    except Exception as exc:  # offline, private or not a hub id: the fingerprint falls back to the name
        logger.warning("Could not resolve the revision of %s (%s); fingerprinting it by name.", config.dataset, exc)
    return config.revision or "default-branch"
