"""The ``transformers.Trainer`` a run uses: it counts the tokens trained on (and logs their rate) and, where it
can, computes the loss in chunks (:mod:`lorastack.finetune.loss`), in training and in evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lorastack.finetune.data.collate import NUM_TOKENS
from lorastack.finetune.loss import chunked_cross_entropy, split_head
from lorastack.finetune.measure import TokenCounter


def trainer_class(counter: TokenCounter, chunked_loss: bool) -> type:
    """A ``Trainer`` subclass that prints nothing itself, reports each training batch to ``counter`` (and its tokens/s with every loss it
    logs, as ``tokens_per_second``), takes the collators'
    :data:`NUM_TOKENS` out of every batch before the model sees it, and, with ``chunked_loss``, computes the
    loss with :func:`lorastack.finetune.loss.chunked_cross_entropy` wherever :meth:`uses_chunked_loss` says it can."""
    from transformers import PrinterCallback, ProgressCallback, Trainer

    class LorastackTrainer(Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # transformers adds a printer of its own: with disable_tqdm one that prints every log as a raw dict on
            # stdout, else tqdm bars. Progress is the caller's to show (the callbacks it passes).
            self.remove_callback(PrinterCallback)
            self.remove_callback(ProgressCallback)

        def uses_chunked_loss(self) -> bool:
            """Whether losses are computed in chunks: asked for, a model :func:`split_head` accepts, one device
            per process (not DataParallel), no label smoothing or custom loss. Under DDP and FSDP the chunked loss
            runs as the model's forward (:meth:`_chunked_loss`)."""
            return (
                chunked_loss
                and self.args.n_gpu <= 1
                and self.label_smoother is None
                and self.compute_loss_func is None
                and split_head(self.model) is not None
            )

        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            """A distributed run's optimizer state is loaded with ``map_location=args.device``, which on CPU
            processes is ``cpu:0``: torch.load cannot restore to that ("don't know how to restore data location ...
            cpu:0") and --resume failed. Plain "cpu" there; GPUs as transformers does it."""
            import torch

            device = self.args.device
            if checkpoint is None or device.type != "cpu" or self.args.world_size <= 1:
                return super()._load_optimizer_and_scheduler(checkpoint)
            original = torch.load

            def load(*args: Any, **kwargs: Any) -> Any:
                if isinstance(kwargs.get("map_location"), torch.device) and kwargs["map_location"].type == "cpu":
                    kwargs["map_location"] = "cpu"
                return original(*args, **kwargs)

            torch.load = load  # for this one call: transformers reaches torch.load through the module
            try:
                return super()._load_optimizer_and_scheduler(checkpoint)
            finally:
                torch.load = original

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs or "eval_loss" in logs:
                logs["tokens_per_second"] = round(counter.tokens_per_second(), 1)
            super().log(logs, *args, **kwargs)

        def training_step(self, model, inputs, *args, **kwargs):
            counter.add(inputs)
            inputs.pop(NUM_TOKENS, None)
            return super().training_step(model, inputs, *args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or "labels" not in inputs or not self._chunks_for(model):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = self._chunked_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None and self.args.world_size > 1:
                # num_items_in_batch counts the tokens of every process and DDP averages the gradients over the
                # processes: scaled back, the loss is the global batch's mean, as the Trainer does for models.
                loss = loss * self.accelerator.num_processes
            return loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs.pop(NUM_TOKENS, None)
            if not prediction_loss_only or "labels" not in inputs or not self._chunks_for(model):
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            import torch

            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                loss = self._chunked_loss(model, inputs, None)  # the mean over the batch, as the model's own
            return loss.detach(), None, None

        def _chunks_for(self, model: Any) -> bool:
            return self.uses_chunked_loss()

        def _chunked_loss(self, model: Any, inputs: dict, num_items: Any) -> Any:
            inner = self.accelerator.unwrap_model(model)
            decoder, head = split_head(inner)
            labels = inputs["labels"]

            def loss_forward(**features: Any) -> Any:
                # The decoder is called past the wrapped forward, which is where accelerate applies autocast.
                with self.accelerator.autocast():
                    hidden = decoder(**features, use_cache=False).last_hidden_state
                    return chunked_cross_entropy(hidden, head.weight, labels, num_items)

            features = {k: v for k, v in inputs.items() if k != "labels"}
            if inner is model and not self.is_fsdp_enabled:
                return loss_forward(**features)
            # Called as the model: DDP's wrapper readies the gradients' all-reduce for this backward; FSDP's hooks on
            # the root module gather its own weights (embeddings, final norm, lm_head) for the forward and again for
            # the backward, where each chunk's logits are recomputed.
            with forward_replaced(inner, loss_forward):
                return model(**features)

    return LorastackTrainer


@contextmanager
def forward_replaced(module: Any, forward: Any) -> Iterator[None]:
    """``module``'s forward is ``forward`` for a while: a wrapper (DDP) or FSDP's hooks that call ``module`` run it.
    A forward set on the instance before (accelerate's autocast wrapper under mixed precision) is put back after."""
    previous = module.__dict__.get("forward")
    module.forward = forward  # an instance attribute, found before the class's forward
    try:
        yield
    finally:
        if previous is None:
            del module.forward
        else:
            module.forward = previous
