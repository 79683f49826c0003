"""What a ``lorastack train`` subprocess says, read back: its per-step lines, its checkpoints, its error line.

Without a terminal ``lorastack train`` prints one line per logging step (``step 3/8  loss 1.2345  lr 3.0e-03
412 tok/s  ETA 12s``; an evaluation: ``step 4/8  eval loss 1.1234``) and ends a user mistake with one ``error: ...``
line. These are its documented output (README, "Training adapters"); a unit test feeds this parser the lines that
the trainer's own formatter writes, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_STEP = re.compile(r"^step (\d+)/(\d+)\s")
_LOSS = re.compile(r"(?<!eval )\bloss ([-+0-9.eEnaif]+)")
_EVAL = re.compile(r"\beval loss ([-+0-9.eEnaif]+)")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
"""What a whole checkpoint holds besides the weights: one without them was cut off while being written."""


@dataclass(frozen=True)
class StepMetrics:
    step: int
    total_steps: int
    train_loss: float | None
    valid_loss: float | None

    def data(self) -> dict:
        """The event's ``data`` (OpenAI's metrics event: step, train_loss, valid_loss, total_steps)."""
        out: dict = {"step": self.step, "total_steps": self.total_steps}
        if self.train_loss is not None:
            out["train_loss"] = self.train_loss
        if self.valid_loss is not None:
            out["valid_loss"] = self.valid_loss
        return out

    def message(self) -> str:
        losses = [
            f"{name} loss={value:.4f}"
            for name, value in (("training", self.train_loss), ("validation", self.valid_loss))
            if value is not None
        ]
        return f"Step {self.step}/{self.total_steps}: {', '.join(losses)}"


def parse_step(line: str) -> StepMetrics | None:
    """The metrics of one progress line; None for any other line."""
    match = _STEP.match(line.strip())
    if match is None:
        return None
    loss, valid = _LOSS.search(line), _EVAL.search(line)
    if loss is None and valid is None:
        return None
    return StepMetrics(int(match[1]), int(match[2]), _number(loss), _number(valid))


def _number(match: re.Match | None) -> float | None:
    if match is None:
        return None
    try:
        return float(match[1])
    except ValueError:
        return None


def error_line(line: str) -> str | None:
    """The message of the CLI's one-line error (``error: ...``), else None."""
    line = line.strip()
    return line.removeprefix("error:").strip() if line.startswith("error:") else None


def checkpoints(folder: Path) -> dict[int, Path]:
    """Step -> folder of every whole checkpoint in a run's ``checkpoints/`` folder."""
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _CHECKPOINT.match(path.name)
            if match and all((path / name).is_file() for name in CHECKPOINT_FILES):
                found[int(match[1])] = path
    return found


def cut_off(folder: Path) -> list[Path]:
    """Checkpoint folders that miss a file of a whole one (the process was stopped while writing them)."""
    if not folder.is_dir():
        return []
    whole = set(checkpoints(folder).values())
    return [p for p in folder.iterdir() if _CHECKPOINT.match(p.name) and p not in whole]
