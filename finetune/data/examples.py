"""Training and eval examples for transformers' ``Trainer``: rows -> conversations -> tokens and labels.

What comes out: ``datasets.Dataset`` objects with exactly two columns, ``input_ids`` and ``labels``
(int lists, labels -100 off the assistant's tokens), built in memory once every row has been checked; with
``streaming: true``, ``datasets.IterableDataset`` objects with the same columns, tokenized as they are read
(training then needs ``max_steps``). Batching and attention masks are the collator's job (collate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lorastack.finetune.data.config import DataConfig
from lorastack.finetune.data.errors import DataError
from lorastack.finetune.data.sources import conversations, eval_source, in_eval
from lorastack.finetune.data.tokenize import ChatEncoder, Encoded, template_text

logger = logging.getLogger(__name__)

_CHUNK = 2048  # rows converted to Arrow at a time: keeps Python lists small for large datasets


@dataclass(frozen=True)
class DataReport:
    """What :func:`load_examples` made. Counts are None for a streamed dataset (known only as it is read)."""

    source: str
    rows: int | None
    train_examples: int | None
    eval_examples: int | None
    truncated: int | None
    dropped: int | None
    """Examples left with no assistant token after truncation (not trained on)."""
    tokens: int | None
    label_tokens: int | None
    max_length: int
    label_method: str
    streaming: bool
    longest: int | None = None
    """Tokens in the longest training or eval example (None streamed): a padded batch is at most this long."""

    def __str__(self) -> str:
        how = f"loss on assistant tokens via {self.label_method}"
        if self.streaming:
            checked = f"{self.rows:,} rows checked, " if self.rows is not None else ""
            return f"{self.source}, streamed ({checked}tokenized as read; {how})"
        share = f" ({self.label_tokens / self.tokens:.0%} trained on)" if self.tokens else ""
        return (
            f"{self.train_examples:,} train / {self.eval_examples:,} eval examples from {self.source}, "
            f"{self.tokens:,} tokens{share}; {self.truncated:,} cut to {self.max_length}, "
            f"{self.dropped:,} dropped with no assistant token left; {how}"
        )


def load_examples(
    config: DataConfig, tokenizer: Any, chat_template: str | None = None, *, seed: int = 0
) -> tuple[Any, Any | None, DataReport]:
    """``(train, eval or None, report)``, ready for ``Trainer(train_dataset=..., eval_dataset=...)``.

    ``chat_template`` is the template text to render with: pass the one the adapter will be served with
    (lorastack's tools template for the embedded default model). None: ``config.chat_template`` if set, else
    the tokenizer's own. ``seed`` draws the eval split (:func:`lorastack.finetune.data.sources.in_eval`).

    Every row of a local file (or a downloaded dataset) is checked before any is tokenized; a bad row
    raises :class:`DataError` and nothing is returned.
    """
    if chat_template is None and config.chat_template is not None:
        path = config.chat_template.expanduser()
        if not path.is_file():
            raise DataError(f"Chat template {path} does not exist.", "Check data.chat_template.")
        chat_template = path.read_text()
    encoder = ChatEncoder(tokenizer, template_text(tokenizer, chat_template), config.max_length)
    lazy_hub = config.streaming and config.path is None
    rows = None
    if not lazy_hub:  # every row checked (format, then template) before any is tokenized
        rows = 0
        for conversation in conversations(config):
            encoder.check(conversation)
            rows += 1
        if rows == 0:
            raise DataError(f"{config.source_name} holds no rows.", "Point data.path or data.dataset at training data.")
    held_out = eval_source(config)
    if held_out is not None:  # its rows checked like the training rows, before any is tokenized
        for conversation in conversations(held_out):
            encoder.check(conversation)
    if config.streaming:
        return _streamed(config, encoder, seed, rows)
    return _built(config, encoder, seed, rows)


def _examples(config: DataConfig, encoder: ChatEncoder, seed: int, held_out: bool) -> Iterator[Encoded]:
    eval_config = eval_source(config)
    if eval_config is not None:  # the eval split is that file; the training data is not split
        source = eval_config if held_out else config
        for conversation in conversations(source):
            yield encoder.encode(conversation.with_system(config.system_prompt))
        return
    for conversation in conversations(config):
        if in_eval(conversation, config.eval_fraction, seed) == held_out:
            yield encoder.encode(conversation.with_system(config.system_prompt))


class _Collected:
    """Encoded examples of one split, gathered into an Arrow-backed ``datasets.Dataset``."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.ids: list[list[int]] = []
        self.labels: list[list[int]] = []
        self.count = self.truncated = self.dropped = self.tokens = self.label_tokens = self.longest = 0

    def add(self, example: Encoded) -> None:
        self.truncated += example.truncated
        if example.label_tokens == 0:
            self.dropped += 1
            return
        self.count += 1
        self.tokens += len(example.input_ids)
        self.longest = max(self.longest, len(example.input_ids))
        self.label_tokens += example.label_tokens
        self.ids.append(example.input_ids)
        self.labels.append(example.labels)
        if len(self.ids) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        import datasets

        if self.ids:
            self.parts.append(datasets.Dataset.from_dict({"input_ids": self.ids, "labels": self.labels}, _features()))
            self.ids, self.labels = [], []

    def dataset(self) -> Any:
        import datasets

        self._flush()
        return datasets.concatenate_datasets(self.parts) if len(self.parts) > 1 else self.parts[0]


def _built(config: DataConfig, encoder: ChatEncoder, seed: int, rows: int | None) -> tuple[Any, Any, DataReport]:
    train, held = _Collected(), _Collected()
    for conversation in conversations(config):
        collected = held if in_eval(conversation, config.eval_fraction, seed) else train
        collected.add(encoder.encode(conversation.with_system(config.system_prompt)))
    eval_config = eval_source(config)
    if eval_config is not None:  # eval_fraction is 0 with an eval file: every row above went to training
        for conversation in conversations(eval_config):
            held.add(encoder.encode(conversation.with_system(config.system_prompt)))
    if train.count == 0:
        raise DataError(
            f"No training example left from {config.source_name}: {train.dropped} had no assistant token within "
            f"max_length {config.max_length} and {held.count + held.dropped} went to the eval split.",
            "Raise data.max_length, or lower data.eval_fraction.",
        )
    if config.eval_fraction > 0 and held.count == 0:
        logger.warning(
            "eval_fraction %s selected no example of %s; training without evaluation.",
            config.eval_fraction, config.source_name,
        )  # fmt: skip
    if eval_config is not None and held.count == 0:
        logger.warning("No example of %s has an assistant token within max_length %s; training without evaluation.",
                       eval_config.source_name, config.max_length)  # fmt: skip
    both = (train, held)
    report = DataReport(
        source=_source(config),
        rows=rows,
        train_examples=train.count,
        eval_examples=held.count,
        truncated=sum(c.truncated for c in both),
        dropped=sum(c.dropped for c in both),
        tokens=sum(c.tokens for c in both),
        label_tokens=sum(c.label_tokens for c in both),
        max_length=config.max_length,
        label_method=encoder.method,
        streaming=False,
        longest=max(c.longest for c in both),
    )
    return train.dataset(), held.dataset() if held.count else None, report


def _streamed(config: DataConfig, encoder: ChatEncoder, seed: int, rows: int | None) -> tuple[Any, Any, DataReport]:
    import datasets

    def generate(held_out: bool) -> Iterator[dict[str, list[int]]]:
        for example in _examples(config, encoder, seed, held_out):
            if example.label_tokens:
                yield {"input_ids": example.input_ids, "labels": example.labels}

    def split(held_out: bool) -> Any:
        return datasets.IterableDataset.from_generator(
            generate, features=_features(), gen_kwargs={"held_out": held_out}
        )

    report = DataReport(_source(config), rows, None, None, None, None, None, None, config.max_length,
                        encoder.method, True)  # fmt: skip
    has_eval = config.eval_fraction > 0 or config.eval_path is not None
    return split(False), split(True) if has_eval else None, report


def _source(config: DataConfig) -> str:
    """How the report names the data: the training source, and the eval file when there is one."""
    return f"{config.source_name} (eval: {config.eval_path})" if config.eval_path else config.source_name


def _features() -> Any:
    import datasets

    column = datasets.Sequence(datasets.Value("int32"))
    return datasets.Features({"input_ids": column, "labels": column})
