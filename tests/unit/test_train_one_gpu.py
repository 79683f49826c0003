"""`lorastack train` without --gpus trains on one GPU: on a machine with several, transformers' Trainer would
otherwise wrap the model in DataParallel over all of them (measured on 2 H200s: gradient checkpointing broke)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lorastack.finetune.trainer as trainer
from lorastack.cli import app


def _seen_devices(monkeypatch: pytest.MonkeyPatch, one_chat: Path, *extra: str) -> str | None:
    seen: dict = {}

    def record(settings, resume=False, callbacks=()):  # below the CLI: the trainer itself is not under test
        seen["devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise KeyboardInterrupt  # ends the command the way Ctrl-C does, before anything is written

    monkeypatch.setattr(trainer, "train", record)
    result = CliRunner().invoke(app, ["train", f"data.path={one_chat}", "training.max_steps=1", *extra])
    assert result.exit_code == 130, result.output
    return seen["devices"]


def test_one_process_takes_the_first_gpu_only(monkeypatch: pytest.MonkeyPatch, one_chat: Path) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # recorded as absent or as it was, so the command's setting is undone
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert _seen_devices(monkeypatch, one_chat) == "0"


def test_a_users_choice_of_gpus_is_kept(monkeypatch: pytest.MonkeyPatch, one_chat: Path) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert _seen_devices(monkeypatch, one_chat) == "3"
