"""What a training run measures and keeps: the non-padding tokens it trains on, its tokens/s, the loss curve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lorastack.finetune.data.collate import count_tokens

WARMUP_STEPS = 3
"""Steps left out of the steady tokens/s (compilation, allocator growth)."""


class TokenCounter(TrainerCallback):
    """Counts the non-padding tokens of the batches the model trains on, and when each step ends.

    Fed from ``Trainer.training_step`` (see :func:`lorastack.finetune.hf_trainer.trainer_class`), not from the collator:
    the collator also builds eval batches and the batch the data loader fetches ahead, which are not trained on.
    The collators count on the CPU (:data:`NUM_TOKENS`), so counting never waits for the GPU.
    """

    def __init__(self) -> None:
        self.tokens = 0
        self.started = time.perf_counter()
        self.tokens_at_start = 0
        self.marks: list[tuple[float, int]] = []  # (time, tokens) at each step end

    def add(self, batch: dict) -> None:
        self.tokens += count_tokens(batch)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.tokens_at_start = time.perf_counter(), self.tokens

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append((time.perf_counter(), self.tokens))

    def tokens_per_second(self) -> float:
        """Since training began (the last step's end)."""
        end, tokens = self.marks[-1] if self.marks else (time.perf_counter(), self.tokens)
        return (tokens - self.tokens_at_start) / max(end - self.started, 1e-9)

    def steady_tokens_per_second(self, warmup: int = WARMUP_STEPS) -> float | None:
        """Median tokens/s of single steps after ``warmup`` steps (compilation, allocator growth), as the
        GPU probe measures it; None for runs too short to tell (``warmup`` + 1 steps or fewer)."""
        steps = zip(self.marks[warmup:], self.marks[warmup + 1 :])
        rates = sorted((n1 - n0) / (t1 - t0) for (t0, n0), (t1, n1) in steps if t1 > t0)
        return rates[len(rates) // 2] if rates else None


class PeakMemory(TrainerCallback):
    """The peak GPU memory of training: counted from the first step (after the model is loaded and, with
    several processes, wrapped or sharded; the optimizer states come after), per GPU."""

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        if args.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(args.device)

    @staticmethod
    def gib(device: Any) -> float:
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**30


def describe_metrics(metrics: dict) -> str:
    """The run's metrics as one line for people: ``name value`` pairs, and why a usual one is missing."""
    parts = [f"{name} {value}" for name, value in metrics.items() if value is not None]
    if metrics.get("steady_tokens_per_second") is None and "last_reward" not in metrics:  # GRPO counts no tokens
        parts.append(f"steady_tokens_per_second n/a (needs more than {WARMUP_STEPS + 1} steps in the run)")
    return ", ".join(parts)


def plot_loss_curve(log_history: list[dict], path: Path) -> Path | None:
    """Train (and eval) loss against steps, as a PNG. None if nothing was logged."""
    fig = loss_figure(log_history)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    fig.savefig(path)
    plt.close(fig)
    return path


def loss_figure(log_history: list[dict]) -> Any:
    """The matplotlib figure of :func:`plot_loss_curve` (None if nothing was logged)."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if train:
        # Markers: a run with one logged step draws no line, and a curve of a few points shows where they are.
        ax.plot(*zip(*train), marker="o" if len(train) <= 50 else None, markersize=3, label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    rewards = [(h["step"], h["reward"]) for h in log_history if "reward" in h]
    if rewards:  # method grpo: its loss hovers near 0; the mean reward is what moves
        right = ax.twinx()
        right.plot(*zip(*rewards), color="tab:green", marker="o" if len(rewards) <= 50 else None, markersize=3,
                   label="mean reward")  # fmt: skip
        right.set_ylabel("mean reward")
        right.set_ylim(-0.02, 1.02)
        fig.legend(loc="upper left", bbox_to_anchor=(0.1, 0.95))
    else:
        ax.legend()
    fig.tight_layout()
    return fig
