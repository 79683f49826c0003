"""What ``auto`` resolves to on a machine: the attention kernels and their one-line refusals, and that
``lorastack plan`` predicts the very run the trainer resolves."""

from __future__ import annotations

import dataclasses
import itertools
import re
import sys
import types

import pytest
from pydantic import ValidationError

from lorastack.errors import LorastackError
from lorastack.finetune.choices import Machine, resolve
from lorastack.finetune.config import TrainConfig, load_train_config
from lorastack.finetune.memory_plan import planned_gpu, planned_run

GPU = Machine(cuda=True, bf16=True, bitsandbytes=True, probed=True)


@pytest.fixture
def machine(one_chat, monkeypatch):
    """``machine.choices(*overrides)`` on a probed machine: ``cuda``, ``unsloth``, ``flash_attn`` (a module, or
    None for an import that fails) and ``capability`` are set by the test."""
    data = one_chat

    class Probed:
        cuda, unsloth, capability = True, False, (9, 0)

        def choices(self, *overrides):
            monkeypatch.setattr("torch.cuda.get_device_capability", lambda *a: self.capability)
            here = dataclasses.replace(GPU, cuda=self.cuda, bf16=self.cuda, unsloth=self.unsloth)
            return resolve(load_train_config(None, [f"data.path={data}", *overrides]), here)

    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    return Probed()


def test_sdpa_unless_asked(machine) -> None:
    assert machine.choices().attention == "sdpa"
    assert machine.choices("attention=flash_attention_2").attention == "flash_attention_2"
    assert machine.choices("attention=flash_attention_2", "quantization=none").attention == "flash_attention_2"
    assert machine.choices("attention=eager").attention == "eager"
    machine.cuda = False
    assert machine.choices("attention=eager").attention == "eager"


def test_unsloth_uses_its_own_kernels(machine) -> None:
    machine.unsloth = True
    choices = machine.choices("attention=flash_attention_2")
    assert choices.backend == "unsloth" and choices.attention == "unsloth"


@pytest.mark.parametrize(
    ("setup", "overrides", "message", "fix"),
    [
        ({"cuda": False}, (), "not on the CPU", "attention: sdpa"),
        ({}, ("compute_dtype=float32",), "not float32", "compute_dtype: auto"),
        ({"capability": (7, 5)}, (), "compute capability 7.5", "attention: sdpa"),
        ({"flash_attn": None}, (), "needs a working flash-attn package", "pip install flash-attn"),
    ],
)
def test_flash_attention_where_it_cannot_run_is_one_line(machine, monkeypatch, setup, overrides, message, fix):
    for key, value in setup.items():
        if key == "flash_attn":
            monkeypatch.setitem(sys.modules, "flash_attn", value)  # None: the import fails
        else:
            setattr(machine, key, value)
    with pytest.raises(LorastackError, match=message) as error:
        machine.choices("attention=flash_attention_2", *overrides)
    assert fix in error.value.hint and "\n" not in str(error.value)


def test_a_described_gpu_is_not_probed(one_chat, monkeypatch) -> None:
    """``lorastack plan`` describes its GPU: this machine's flash-attn package and GPU are none of its business."""
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # an import would fail
    monkeypatch.setattr("torch.cuda.get_device_capability", lambda *a: pytest.fail("probed the real GPU"))
    config = load_train_config(None, [f"data.path={one_chat}", "backend=peft", "attention=flash_attention_2"])
    assert resolve(config, Machine.cuda_gpu(unsloth=False)).attention == "flash_attention_2"
    assert planned_run(config, "llama").backend == "peft"


def test_the_planned_gpu_has_unsloth_where_the_config_asks_for_it(one_chat) -> None:
    config = load_train_config(None, [f"data.path={one_chat}", "backend=unsloth"])
    assert planned_gpu(config).unsloth and planned_run(config).backend == "unsloth"


def test_auto_resolves_per_machine(one_chat) -> None:
    config = load_train_config(None, [f"data.path={one_chat}"])
    cpu = resolve(config, Machine(cuda=False))
    assert (cpu.backend, cpu.quantization, cpu.compute_dtype, cpu.optimizer, cpu.gradient_checkpointing) == (
        "cpu", "none", "float32", "adamw_torch", False)
    gpu = resolve(config, Machine(cuda=True, bf16=False, bitsandbytes=True))
    assert (gpu.backend, gpu.quantization, gpu.compute_dtype, gpu.optimizer, gpu.gradient_checkpointing) == (
        "peft", "nf4", "float16", "paged_adamw_8bit", True)
    assert gpu.upcasts_unquantized  # fp16 compute on a quantized base keeps peft's fp32 upcast
    assert resolve(config, Machine(cuda=True, bf16=True, unsloth=True, bitsandbytes=True)).backend == "unsloth"
    with pytest.raises(LorastackError, match="needs bitsandbytes"):
        resolve(config, Machine(cuda=True, bf16=True))


SETTINGS = {
    "backend": ("auto", "unsloth", "peft", "cpu"),
    "quantization": ("auto", "nf4", "int8", "none"),
    "compute_dtype": ("auto", "bfloat16", "float16", "float32"),
    "optimizer": ("auto", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd"),
    "gradient_checkpointing": ("auto", "on", "off"),
    "offload_activations": ("auto", "on", "off"),
}


@pytest.mark.parametrize("unsloth", [False, True])
def test_the_plan_runs_what_the_trainer_resolves(one_chat, unsloth: bool) -> None:
    """Every combination of the settings ``auto`` touches, on one described GPU: the memory plan's run shape is
    the trainer's resolution (or both refuse the config with the same message)."""
    gpu = Machine.cuda_gpu(unsloth=unsloth)
    short = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
    checked = refused = 0
    for values in itertools.product(*SETTINGS.values()):
        backend, quantization, dtype, optimizer, checkpointing, offload = values
        try:
            config = TrainConfig.model_validate({
                "backend": backend, "quantization": quantization, "compute_dtype": dtype, "data": {"path": one_chat},
                "training": {"optimizer": optimizer, "gradient_checkpointing": checkpointing,
                             "offload_activations": offload},
            })  # fmt: skip
        except ValidationError:
            continue  # unsloth with int8: refused before anything resolves
        try:
            choices = resolve(config, gpu)
        except LorastackError as error:
            with pytest.raises(LorastackError, match=re.escape(str(error))):
                planned_run(config, "llama", gpu)
            refused += 1
            continue
        run = planned_run(config, "llama", gpu)
        assert (run.backend, run.quantization, run.dtype, run.optimizer, run.gradient_checkpointing) == (
            choices.backend, choices.quantization, short[choices.compute_dtype], choices.optimizer,
            choices.gradient_checkpointing), values
        # Unsloth offloads inside its own shape; peft's offload is the planner's switch.
        assert run.offload_activations == (choices.offload_activations and choices.backend != "unsloth"), values
        # The trainer upcasts the unquantized weights only for fp16 compute on a quantized peft/CPU base.
        assert run.fp32_unquantized == (
            choices.backend != "unsloth" and choices.quantization != "none" and choices.compute_dtype == "float16")
        assert run.chunked_loss == (choices.backend != "unsloth"), values  # chunked_loss defaults on
        checked += 1
    assert checked > 1000 and refused > 0
