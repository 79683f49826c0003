"""The attention kernels a run loads its model with, and the one-line refusals when flash attention can't run."""

from __future__ import annotations

import sys
import types

import pytest

import lorastack.finetune.backends
from lorastack.finetune.backends import resolve
from lorastack.finetune.config import load_train_config
from lorastack.errors import LorastackError


@pytest.fixture
def machine(one_chat, monkeypatch):
    """``plan(*overrides)`` on a pretend machine: ``cuda``, ``unsloth``, ``flash_attn`` (a module, or None for
    an import that fails) and ``capability`` are set by the test."""
    data = one_chat

    class Machine:
        cuda, unsloth, capability = True, False, (9, 0)

        def plan(self, *overrides):
            monkeypatch.setattr(lorastack.finetune.backends, "_cuda", lambda: (self.cuda, self.cuda))
            monkeypatch.setattr(lorastack.finetune.backends, "_has", lambda name: name == "bitsandbytes" or self.unsloth)
            monkeypatch.setattr("torch.cuda.get_device_capability", lambda *a: self.capability)
            return resolve(load_train_config(None, [f"data.path={data}", *overrides]))

    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    return Machine()


def test_sdpa_unless_asked(machine) -> None:
    assert machine.plan().attention == "sdpa"
    assert machine.plan("attention=flash_attention_2").attention == "flash_attention_2"
    assert machine.plan("attention=flash_attention_2", "quantization=none").attention == "flash_attention_2"
    assert machine.plan("attention=eager").attention == "eager"
    machine.cuda = False
    assert machine.plan("attention=eager").attention == "eager"


def test_unsloth_uses_its_own_kernels(machine) -> None:
    machine.unsloth = True
    plan = machine.plan("attention=flash_attention_2")
    assert plan.backend == "unsloth" and plan.attention == "unsloth"


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
        machine.plan("attention=flash_attention_2", *overrides)
    assert fix in error.value.hint and "\n" not in str(error.value)
