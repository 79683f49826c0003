"""Batching: padded, or padding-free (examples back to back, attention kept apart by position_ids).

Padding-free batches put a batch's examples back to back, ``position_ids`` restarting at 0 for every example,
and label -100 on each example's first token so no loss crosses a boundary. The model must then keep examples
from attending to each other:

- flash attention variants do it with the sequence lengths (varlen kernels): the whole batch is one row
  (transformers' ``DataCollatorWithFlattening``), and attention costs what the examples cost.
- sdpa does it with a block-diagonal mask that transformers builds from ``position_ids``, but only while no
  KV cache exists: with ``use_cache=True`` (SmolLM2's config default) the model creates an empty cache, skips
  that step, and examples attend across boundaries (checked with transformers 5.17.0: per-example losses then
  differ by up to a quarter on SmolLM2). transformers' ``Trainer`` sets ``config.use_cache = args.use_cache``,
  False by default, which keeps this correct; a custom loop must do the same.

That mask is dense: one row of all the batch's tokens costs attention work and memory in the square of the
batch's tokens. Measured on an H100 (SmolLM2-135M, 16 examples of ~700 tokens): one 12k-token row ran at
14-16k tokens/s with a 28.6 GiB peak against 31-37k tokens/s and 22.6 GiB padded. So for sdpa the examples
are packed into rows no longer than the batch's longest example (:class:`PackedRowsCollator`): never more rows,
nor wider ones, than the padded batch, so attention costs no more than padding and the linear layers skip
most of it. Measured on an H200 with tool-use chat data (602-985 tokens an example, 20-23% padding in random
batches): 33.6k vs 34.0k tokens/s padded for the 135M shape at batch 16, 12.6k vs 13.1k for a 1B shape at
batch 8, same peak memory: no two such examples fit in a row no longer than the longest, so the packed rows
are the padded rows. Flash attention is what skips that padding. eager materialises
[heads, row, row] attention weights per layer, so it gets padded batches.

Every collator adds :data:`NUM_TOKENS`, the batch's non-padding tokens counted on the CPU, so the trainer can
count tokens/s without waiting for the GPU; the trainer takes it out before the model sees the batch.
"""


from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lorastack.finetune.data.config import DataConfig
from lorastack.finetune.data.tokenize import IGNORE

FLASH_ATTENTION = (
    "flash_attention_2",
    "flash_attention_3",
    "kernels-community/flash-attn",
    "kernels-community/vllm-flash-attn",
)
"""Attention implementations (or name prefixes of hub kernels) that take sequence lengths directly."""

NUM_TOKENS = "num_tokens"
"""Batch key: the non-padding tokens of the batch (an int), for tokens/s. Not a model input."""

MASKED_ATTENTION = ("sdpa",)
"""Attention implementations that keep packed examples apart through the mask built from position_ids
(checked against padded batches in tests/unit/test_finetune_data.py). eager does too, but at a memory cost
that makes padding the better choice."""


class PaddedCollator:
    """Pads a batch to its longest example: ``input_ids`` with the pad token, ``labels`` with -100, and an
    ``attention_mask`` of 1 on real tokens. Padding goes on the right."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.as_tensor(feature["labels"], dtype=torch.long)
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, NUM_TOKENS: _total(features)}


class PackedRowsCollator:
    """Padding-free batches for attention that keeps examples apart with a mask built from ``position_ids``
    (sdpa): the batch's examples go back to back into rows as long as its longest example, at most ``row_tokens``
    (longest first, each into the first row with room; an example longer than ``row_tokens`` gets a row of its
    own). A row is then never wider than the padded batch, nor are there more rows, so attention, whose mask is
    dense within a row, never costs more than padding.

    ``position_ids`` restart at 0 for every example and each example's first label is -100, so nothing is
    learned across a boundary. Rows shorter than the longest are filled with pad tokens that restart the
    positions too: they form one more sequence of their own, which no real token attends to, with label -100.
    There is no ``attention_mask``: transformers builds the mask from ``position_ids`` only without one.
    """

    def __init__(self, pad_token_id: int, row_tokens: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.row_tokens = row_tokens
        self.pad_to_multiple_of = pad_to_multiple_of

    def rows(self, lengths: list[int]) -> list[list[int]]:
        """Which examples (by index) go into which row, in order."""
        rows: list[list[int]] = []
        used: list[int] = []
        cap = min(self.row_tokens, max(lengths, default=0))
        for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            row = next((r for r, n in enumerate(used) if n + lengths[i] <= cap), None)
            if row is None:
                rows.append([i])
                used.append(lengths[i])
            else:
                rows[row].append(i)
                used[row] += lengths[i]
        return rows

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        lengths = [len(f["input_ids"]) for f in features]
        rows = self.rows(lengths)
        width = max(sum(lengths[i] for i in row) for row in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                n = lengths[i]
                ids[r, start : start + n] = torch.as_tensor(features[i]["input_ids"], dtype=torch.long)
                labels[r, start + 1 : start + n] = torch.as_tensor(features[i]["labels"][1:], dtype=torch.long)
                positions[r, start : start + n] = torch.arange(n)
                start += n
            positions[r, start:] = torch.arange(width - start)  # the padding: a sequence of its own
        return {"input_ids": ids, "labels": labels, "position_ids": positions, NUM_TOKENS: sum(lengths)}


class FlatteningCollator:
    """transformers' ``DataCollatorWithFlattening`` (one row, sequence lengths for flash attention's varlen
    kernels), with :data:`NUM_TOKENS`."""

    def __init__(self) -> None:
        from transformers import DataCollatorWithFlattening

        self.flatten = DataCollatorWithFlattening(return_flash_attn_kwargs=True)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.flatten(features), NUM_TOKENS: _total(features)}


def _total(features: list[dict[str, Any]]) -> int:
    return sum(len(f["input_ids"]) for f in features)


def make_collator(
    config: DataConfig, tokenizer: Any, attn_implementation: str | None, pad_to_multiple_of: int | None = None
) -> tuple[Callable[[list[dict[str, Any]]], dict[str, Any]], str]:
    """The collator for this model's attention implementation, and one line saying which and why.

    Padding-free when ``config.packing`` is on and the implementation keeps packed examples apart
    (:data:`FLASH_ATTENTION`, :data:`MASKED_ATTENTION`); padded otherwise. The model must run without a KV
    cache in training (``Trainer`` sees to it; see the module docstring).
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        pad_id = 0  # never attended to and never learned: any id will do
    if config.packing and attn_implementation:
        if attn_implementation.startswith(FLASH_ATTENTION):
            return FlatteningCollator(), (
                f"padding-free (examples back to back; {attn_implementation} keeps them apart by sequence length)"
            )
        if attn_implementation in MASKED_ATTENTION:
            return PackedRowsCollator(pad_id, config.max_length, pad_to_multiple_of), (
                "padding-free (examples back to back in rows no longer than each batch's longest example; "
                f"{attn_implementation} keeps them apart with a mask built from position_ids; needs use_cache off)"
            )
    collator = PaddedCollator(pad_id, pad_to_multiple_of)
    if not config.packing:
        return collator, "padded to the longest example of each batch (data.packing is off)"
    if attn_implementation == "eager":
        return collator, (
            "padded to the longest example of each batch (eager attention would hold [batch tokens x batch tokens] "
            "weights per layer if padding-free; use sdpa or flash attention for padding-free batches)"
        )
    return collator, (
        f"padded to the longest example of each batch (attention implementation {attn_implementation or 'unknown'} "
        "is not known to keep packed examples apart)"
    )


def count_tokens(batch: dict[str, Any]) -> int:
    """Non-padding tokens in a collated batch (what tokens/s should count)."""
    if NUM_TOKENS in batch:
        return int(batch[NUM_TOKENS])
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
