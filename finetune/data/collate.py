"""Batching: padded, or padding-free (examples back to back in one row, attention kept apart by position_ids).

Padding-free batches come from transformers' ``DataCollatorWithFlattening``: ``input_ids`` of shape
[1, total], ``position_ids`` restarting at 0 for every example, and label -100 on each example's first token
so no loss crosses a boundary. The model must then keep examples from attending to each other:

- flash attention variants do it with the sequence lengths (varlen kernels).
- sdpa and eager do it with a block-diagonal mask that transformers builds from ``position_ids``, but only
  while no KV cache exists: with ``use_cache=True`` (SmolLM2's config default) the model creates an empty
  cache, skips that step, and examples attend across boundaries (checked with transformers 5.17.0: per-example
  losses then differ by up to a quarter on SmolLM2). transformers' ``Trainer`` sets
  ``config.use_cache = args.use_cache``, False by default, which keeps this correct; a custom loop must do the same.

The block-diagonal mask is dense, [total, total] for the whole batch, so attention work grows with the
square of the batch's tokens rather than each example's, while the linear layers skip all padding. Measured
(transformers 5.17, batches of 8, forward + backward): on an H100 with SmolLM2-135M shapes in bf16, sdpa
padding-free ran 36k vs 31k tokens/s padded for mixed lengths (128-1024) with less memory, but 49k vs 67k for
eight examples of equal length 1024; on the 2-core CPU it was 2x faster for mixed lengths. eager materialises
[heads, total, total] attention weights per layer (39 GiB vs 16 GiB padded on the H100, and slower), so it
gets padded batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from finetune.data.config import DataConfig
from finetune.data.tokenize import IGNORE

FLASH_ATTENTION = (
    "flash_attention_2",
    "flash_attention_3",
    "kernels-community/flash-attn",
    "kernels-community/vllm-flash-attn",
)
"""Attention implementations (or name prefixes of hub kernels) that take sequence lengths directly."""

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
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def make_collator(
    config: DataConfig, tokenizer: Any, attn_implementation: str | None, pad_to_multiple_of: int | None = None
) -> tuple[Callable[[list[dict[str, Any]]], dict[str, Any]], str]:
    """The collator for this model's attention implementation, and one line saying which and why.

    Padding-free when ``config.packing`` is on and the implementation keeps packed examples apart
    (:data:`FLASH_ATTENTION`, :data:`MASKED_ATTENTION`); padded otherwise. The model must run without a KV
    cache in training (``Trainer`` sees to it; see the module docstring).
    """
    if config.packing and attn_implementation:
        if attn_implementation.startswith(FLASH_ATTENTION):
            from transformers import DataCollatorWithFlattening

            return DataCollatorWithFlattening(return_flash_attn_kwargs=True), (
                f"padding-free (examples back to back; {attn_implementation} keeps them apart by sequence length)"
            )
        if attn_implementation in MASKED_ATTENTION:
            from transformers import DataCollatorWithFlattening

            return DataCollatorWithFlattening(), (
                f"padding-free (examples back to back; {attn_implementation} keeps them apart with a mask "
                "built from position_ids, which needs use_cache off)"
            )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        pad_id = 0  # never attended to and never learned: any id will do
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
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
