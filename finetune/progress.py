"""What a training run shows and keeps: a progress bar with loss and tokens/s, and the loss curve."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

from lorastack.finetune.data.collate import count_tokens


class TokenCounter:
    """Counts the non-padding tokens of the batches the model trains on.

    Fed from ``Trainer.training_step`` (see :func:`lorastack.finetune.hf_trainer.trainer_class`), not from the collator:
    the collator also builds eval batches and the batch the data loader fetches ahead, which are not trained on.
    The collators count on the CPU (:data:`NUM_TOKENS`), so counting never waits for the GPU.
    """

    def __init__(self) -> None:
        self.tokens = 0

    def add(self, batch: dict) -> None:
        self.tokens += count_tokens(batch)


class RichProgress(TrainerCallback):
    """One progress bar for the run: step, loss, eval loss, non-padding tokens/s."""

    def __init__(self, console: Console, counter: TokenCounter) -> None:
        self.console, self.counter = console, counter
        self.progress: Progress | None = None
        self.task = None
        self.started = 0.0
        self.tokens_at_start = 0
        self.tokens_per_second = 0.0
        self.marks: list[tuple[float, int]] = []  # (time, tokens) at each step end

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(
            TextColumn("[bold]training[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
        )  # fmt: skip
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, stats="")
        self.progress.start()
        self.started = time.perf_counter()
        self.tokens_at_start = self.counter.tokens

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append((time.perf_counter(), self.counter.tokens))
        elapsed = time.perf_counter() - self.started
        self.tokens_per_second = (self.counter.tokens - self.tokens_at_start) / max(elapsed, 1e-9)
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def steady_tokens_per_second(self, warmup: int = 3) -> float | None:
        """Median tokens/s of single steps after ``warmup`` steps (compilation, allocator growth), as the
        GPU probe measures it; None for runs too short to tell."""
        steps = zip(self.marks[warmup:], self.marks[warmup + 1 :])
        rates = sorted((n1 - n0) / (t1 - t0) for (t0, n0), (t1, n1) in steps if t1 > t0)
        return rates[len(rates) // 2] if rates else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        parts = []
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if "eval_loss" in logs:
            parts.append(f"eval {logs['eval_loss']:.4f}")
        parts.append(f"{self.tokens_per_second:,.0f} tok/s")
        self.progress.update(self.task, stats="  ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()


def plot_loss_curve(log_history: list[dict], path: Path) -> Path | None:
    """Train (and eval) loss against steps, as a PNG. None if nothing was logged."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
