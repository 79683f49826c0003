"""Gradient checkpointing that keeps each layer's input in host RAM until the backward needs it.

Plain checkpointing keeps every decoder layer's input on the GPU through the forward: layers x tokens x
hidden x 2 bytes, 1 GiB for an 8B model at 4 x 1024 tokens, about a sixth of a QLoRA step's peak. This is
Unsloth's "unsloth" checkpointing for the peft backend: the forward runs each layer without building a graph
and copies its input to pinned host memory (asynchronously, in stream order); the backward copies it back,
runs the layer again with the same RNG and autocast state, and back-propagates through it.

Used through transformers' checkpointing hook (``gradient_checkpointing_func``), so any model whose decoder
layers are ``GradientCheckpointingLayer`` takes it; the layer's other arguments (masks, rotary tables) stay
where they are and must not need gradients.
"""

from __future__ import annotations

from typing import Any


def offloaded_checkpoint(function: Any, hidden: Any, *args: Any) -> Any:
    """``torch.utils.checkpoint.checkpoint``'s place: ``function(hidden, *args)`` with ``hidden`` offloaded."""
    import torch

    if torch.is_grad_enabled():
        if not hidden.requires_grad:
            # Nothing would flow back through the layers, and LoRA would silently learn nothing.
            raise RuntimeError("offloaded checkpointing: the layer input does not require grad; "
                               "call model.enable_input_require_grads() first")
        if any(torch.is_tensor(a) and a.requires_grad for a in args):
            raise RuntimeError("offloaded checkpointing passes gradients to the layer input only")
    return _Offloaded.apply(function, hidden, *args)


def enable(model: Any) -> None:
    """Turn on checkpointing with offloaded layer inputs for ``model`` (a transformers model)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model._set_gradient_checkpointing(enable=True, gradient_checkpointing_func=offloaded_checkpoint)


def _host_copy(tensor: Any) -> Any:
    import torch

    if tensor.device.type == "cpu":
        return tensor.detach().clone()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=True)  # whatever the default device
    return host.copy_(tensor.detach(), non_blocking=True)


def _make_function() -> type:
    import torch

    class Offloaded(torch.autograd.Function):
        @staticmethod
        def forward(ctx, function, hidden, *args):
            ctx.function, ctx.args, ctx.device = function, args, hidden.device
            kind = hidden.device.type
            ctx.autocast = (torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))
            ctx.rng_cpu = torch.get_rng_state()
            ctx.rng_cuda = torch.cuda.get_rng_state(hidden.device) if kind == "cuda" else None
            ctx.host = _host_copy(hidden)
            with torch.no_grad():
                return function(hidden, *args)

        @staticmethod
        def backward(ctx, *grads):
            hidden = ctx.host.to(ctx.device, non_blocking=True).requires_grad_(True)
            ctx.host = None
            kind = ctx.device.type
            devices = [ctx.device] if kind == "cuda" else []
            with torch.random.fork_rng(devices=devices, device_type=kind if devices else "cuda"):
                torch.set_rng_state(ctx.rng_cpu)
                if ctx.rng_cuda is not None:
                    torch.cuda.set_rng_state(ctx.rng_cuda, ctx.device)
                with torch.enable_grad(), torch.autocast(kind, dtype=ctx.autocast[1], enabled=ctx.autocast[0]):
                    outputs = ctx.function(hidden, *ctx.args)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            pairs = [(o, g) for o, g in zip(outputs, grads) if torch.is_tensor(o) and o.requires_grad and g is not None]
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            return (None, hidden.grad, *(None for _ in ctx.args))

    return Offloaded


class _Lazy:
    """The autograd Function, built on first use (torch is imported only when training)."""

    function: Any = None

    def apply(self, *args: Any) -> Any:
        if self.function is None:
            self.function = _make_function()
        return self.function.apply(*args)


_Offloaded = _Lazy()
