"""The training loss from the last hidden state, a chunk of tokens at a time, never all the logits at once.

A causal LM's own loss holds [tokens, vocab] logits, their fp32 copy inside log-softmax and two fp32
gradients: 2.6 GiB for a batch of 4 x 1024 tokens with a 49k vocabulary, 7 GiB with Llama 3's 128k, often the
largest item of a QLoRA step. Here only the positions that have a label go through ``lm_head`` (the prompt
tokens of assistant-only data never do), :data:`CHUNK_ELEMENTS` logits at a time, and each chunk is recomputed
in the backward (``torch.utils.checkpoint``) so one chunk's logits exist at a time. Same loss and gradients as
the model's own (tests/unit/test_finetune_loss.py); one more ``lm_head`` product per chunk.

Used for the architectures whose loss is exactly cross-entropy on ``lm_head(last hidden state)``
(:data:`PLAIN_CAUSAL_LMS`: no logit scaling or soft-capping, no router loss), on one process, in training and
in evaluation (loss only); anything else gets the model's own loss. Selecting the labelled positions makes the
host wait for the GPU once per batch (the count decides the chunks).
"""

from __future__ import annotations

from typing import Any

IGNORE = -100

CHUNK_ELEMENTS = 1 << 26
"""Logits per chunk: 256 MiB in fp32 (1,365 tokens of a 49k vocabulary, 523 of a 128k one)."""

PLAIN_CAUSAL_LMS = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2", "starcoder2", "gemma"}
)
"""model_type values whose ``*ForCausalLM.forward`` is ``lm_head`` then transformers' ``ForCausalLMLoss``
(checked in transformers 5.17). Gemma 2+, Cohere and Granite change the logits; MoE models add a router loss."""


def split_head(model: Any) -> tuple[Any, Any] | None:
    """The decoder and ``lm_head`` of ``model`` (a PEFT model or a plain one) when its loss is plain
    cross-entropy on ``lm_head``'s output, else None."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "model_type", None) not in PLAIN_CAUSAL_LMS:
        return None
    if not type(base).__name__.endswith("ForCausalLM") or not type(base).__module__.startswith("transformers."):
        return None  # remote code, or a task head other than causal LM
    head = base.get_output_embeddings()
    # A plain Linear only: a LoRA-wrapped or quantized head computes more than its weight.
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    return base.get_decoder(), head


def chunked_cross_entropy(
    hidden: Any, weight: Any, labels: Any, num_items: Any = None, chunk_elements: int | None = None
) -> Any:
    """Cross-entropy of ``hidden @ weight.T`` against ``labels`` shifted by one, as transformers'
    ``ForCausalLMLoss`` computes it: summed over the labelled positions and divided by ``num_items`` (the
    batch's labelled tokens across gradient accumulation, as ``Trainer`` passes it), or their mean."""
    import torch
    from torch.utils.checkpoint import checkpoint

    targets = labels[..., 1:].reshape(-1)
    states = hidden[..., :-1, :].reshape(-1, hidden.shape[-1])
    keep = targets != IGNORE
    states, targets = states[keep], targets[keep]
    step = max(1, (chunk_elements or CHUNK_ELEMENTS) // weight.shape[0])
    total = states[:0].sum(dtype=torch.float32)  # 0, still part of the graph when no token has a label
    for start in range(0, targets.numel(), step):
        total = total + checkpoint(
            _summed_cross_entropy, states[start : start + step], weight, targets[start : start + step],
            use_reentrant=False, preserve_rng_state=False,  # cross-entropy draws no random numbers
        )  # fmt: skip
    if num_items is None:
        return total / targets.numel() if targets.numel() else total
    if torch.is_tensor(num_items):
        num_items = num_items.to(total.device)
    return total / num_items


def _summed_cross_entropy(states: Any, weight: Any, targets: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy((states @ weight.T).float(), targets, reduction="sum")
