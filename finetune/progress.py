"""The progress of ``lorastack train``: a live bar on a terminal, a plain line per logging step elsewhere.

Rendering, so the CLI makes it (:func:`progress_for` its console) and hands it to the trainer as a callback; the
numbers come from the trainer's logs (``tokens_per_second``: :mod:`lorastack.finetune.hf_trainer`). Piped to a
file (``| tee``, CI, nohup) a live bar draws nothing until the end, so there each logging step is one line:

    step 20/200  loss 1.234  lr 1.9e-04  412 tok/s  ETA 3m12s
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """``3m12s``, ``1h05m``, ``42s``: short enough for a progress line."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def stats(logs: dict[str, Any]) -> list[str]:
    """The parts of one log record a person reads: loss, eval loss, GRPO's mean reward, learning rate, tokens/s."""
    parts = []
    if "loss" in logs:
        parts.append(f"loss {logs['loss']:.4f}")
    if "reward" in logs:  # method grpo: the share of sampled replies that did right
        parts.append(f"reward {logs['reward']:.3f}")
    if "eval_loss" in logs:
        parts.append(f"eval loss {logs['eval_loss']:.4f}")
    if "learning_rate" in logs:
        parts.append(f"lr {logs['learning_rate']:.1e}")
    if "tokens_per_second" in logs:
        parts.append(f"{logs['tokens_per_second']:,.0f} tok/s")
    return parts


def progress_line(step: int, max_steps: int, logs: dict[str, Any], eta_seconds: float | None) -> str | None:
    """One plain line for a log record with a loss in it (None for others, such as the final summary)."""
    if "loss" not in logs and "eval_loss" not in logs:
        return None
    eta = [f"ETA {duration(eta_seconds)}"] if eta_seconds is not None and step < max_steps else []
    return "  ".join([f"step {step}/{max_steps}", *stats(logs), *eta])


class LineProgress(TrainerCallback):
    """A plain line per logging step, through this module's logger (the CLI prints lorastack's INFO on stderr)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.perf_counter(), state.global_step  # a resumed run starts mid-way

    def eta(self, step: int, max_steps: int) -> float | None:
        done = step - self.first_step
        if done <= 0:
            return None
        return (time.perf_counter() - self.started) / done * (max_steps - step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = progress_line(state.global_step, state.max_steps, logs or {}, self.eta(state.global_step, state.max_steps))
        if line is not None:
            logger.info("%s", line)

    def close(self) -> None:
        """Nothing to tear down (the rich bar's counterpart)."""


class RichProgress(TrainerCallback):
    """One progress bar for the run, drawn on ``console`` (a rich Console on a terminal)."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(
            TextColumn("[bold]training[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
        )  # fmt: skip
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, stats="")
        self.progress.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        parts = stats(logs)
        if parts:
            self.progress.update(self.task, stats="  ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        """Stop drawing (also after an interrupted run, which never reaches on_train_end)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def progress_for(console: Any) -> RichProgress | LineProgress:
    """The live bar where ``console`` is a terminal, plain lines where it is not (a pipe, a file, CI)."""
    return RichProgress(console) if console.is_terminal else LineProgress()
