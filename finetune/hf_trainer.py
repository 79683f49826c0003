"""The ``transformers.Trainer`` a run uses: it counts the tokens trained on and, where it can, computes the
loss in chunks (:mod:`finetune.loss`)."""

from __future__ import annotations

from typing import Any

from finetune.data.collate import NUM_TOKENS
from finetune.loss import chunked_cross_entropy, split_head
from finetune.progress import TokenCounter


def trainer_class(counter: TokenCounter, chunked_loss: bool) -> type:
    """A ``Trainer`` subclass that reports each training batch to ``counter``, takes the collators'
    :data:`NUM_TOKENS` out of every batch before the model sees it, and, with ``chunked_loss``, computes the
    training loss with :func:`finetune.loss.chunked_cross_entropy` for models :func:`split_head` accepts."""
    from transformers import Trainer

    class LorastackTrainer(Trainer):
        def training_step(self, model, inputs, *args, **kwargs):
            counter.add(inputs)
            inputs.pop(NUM_TOKENS, None)
            return super().training_step(model, inputs, *args, **kwargs)

        def prediction_step(self, model, inputs, *args, **kwargs):
            inputs.pop(NUM_TOKENS, None)
            return super().prediction_step(model, inputs, *args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            parts = self._chunkable(model, inputs, return_outputs)
            if parts is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            decoder, head = parts
            features = {k: v for k, v in inputs.items() if k != "labels"}
            # The decoder is called past the wrapped forward, which is where accelerate applies autocast.
            with self.accelerator.autocast():
                hidden = decoder(**features, use_cache=False).last_hidden_state
                return chunked_cross_entropy(hidden, head.weight, inputs["labels"], num_items_in_batch)

        def _chunkable(self, model: Any, inputs: dict, return_outputs: bool) -> tuple[Any, Any] | None:
            if not chunked_loss or return_outputs or "labels" not in inputs or not model.training:
                return None
            if self.args.world_size > 1 or self.accelerator.unwrap_model(model) is not model:
                return None  # a wrapped model (DDP) must run its own forward to sync gradients
            if self.label_smoother is not None or self.compute_loss_func is not None:
                return None
            return split_head(model)

    return LorastackTrainer
