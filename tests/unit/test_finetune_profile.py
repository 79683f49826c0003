"""The step profiler (LORASTACK_PROFILE): real torch.profiler around real tensor work, driven by the trainer's
callback calls; and its environment settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lorastack.errors import LorastackError
from lorastack.finetune.profile import StepProfiler, profiler_from_env


def _steps(profiler: StepProfiler, count: int, end: bool = True) -> None:
    state = SimpleNamespace(global_step=0)
    a = torch.randn(64, 64)
    for _ in range(count):
        profiler.on_step_begin(None, state, None)
        for _ in range(3):
            a = torch.tanh(a @ a)
        state.global_step += 1
        profiler.on_step_end(None, state, None)
    if end:
        profiler.on_train_end(None, state, None)


def test_profiles_only_the_chosen_steps_and_writes_one_table_per_rank(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    profiler = StepProfiler(tmp_path / "prof", first=2, count=2)
    _steps(profiler, 6)
    text = (tmp_path / "prof" / "profile-rank1.txt").read_text()
    header = text.splitlines()[0]
    assert header.startswith("rank 1: steps 2-3, wall seconds per step ")
    assert len(header.split("per step ")[1].split(", ")) == 2  # steps 2 and 3, not 1 or 4-6
    assert "By CPU time:" in text and "aten::mm" in text


def test_a_run_that_ends_inside_the_window_keeps_what_was_profiled(tmp_path: Path) -> None:
    profiler = StepProfiler(tmp_path, first=3, count=5)
    _steps(profiler, 4)
    assert (tmp_path / "profile-rank0.txt").read_text().startswith("rank 0: steps 3-4,")


def test_a_run_shorter_than_the_first_step_writes_nothing(tmp_path: Path) -> None:
    _steps(StepProfiler(tmp_path, first=6, count=3), 4)
    assert not list(tmp_path.iterdir())


def test_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LORASTACK_PROFILE", raising=False)
    assert profiler_from_env() == []
    monkeypatch.setenv("LORASTACK_PROFILE", str(tmp_path))
    (profiler,) = profiler_from_env()
    assert (profiler.folder, profiler.first, profiler.count) == (tmp_path, 6, 3)
    monkeypatch.setenv("LORASTACK_PROFILE_STEPS", "10:2")
    assert (profiler_from_env()[0].first, profiler_from_env()[0].count) == (10, 2)
    for bad in ("ten", "0:3", "4:0", "4"):
        monkeypatch.setenv("LORASTACK_PROFILE_STEPS", bad)
        with pytest.raises(LorastackError, match="LORASTACK_PROFILE_STEPS"):
            profiler_from_env()
