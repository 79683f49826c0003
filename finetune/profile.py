"""Where a training step's time goes: torch.profiler over a few steps after warm-up, one table per process.

``LORASTACK_PROFILE=DIR lorastack train ...`` profiles steps 6 to 8 (``LORASTACK_PROFILE_STEPS=FIRST:COUNT`` moves
them) and writes ``DIR/profile-rank{R}.txt`` on every process: each profiled step's wall time, then the operators
that took the most GPU time and the most CPU time. Under torchrun each rank writes its own, so a slow rank, a
collective that waits, or an operator that only one layout runs shows side by side. The run is slower while it is
profiled: its tokens/s are not the run's speed.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from lorastack.errors import LorastackError

logger = logging.getLogger(__name__)

ENV_DIR = "LORASTACK_PROFILE"
ENV_STEPS = "LORASTACK_PROFILE_STEPS"
DEFAULT_STEPS = (6, 3)
ROWS = 25


class StepProfiler(TrainerCallback):
    """Profiles steps ``first`` .. ``first + count - 1`` (1-based, as progress lines count) and writes the tables."""

    def __init__(self, folder: Path, first: int = DEFAULT_STEPS[0], count: int = DEFAULT_STEPS[1]) -> None:
        self.folder, self.first, self.count = folder, first, count
        self.rank = int(os.environ.get("RANK", "0"))
        self.profiler = None
        self.step_started = 0.0
        self.step_seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step + 1  # the step about to run
        if step == self.first:
            import torch

            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()
        if self.profiler is not None:
            self._sync()
            self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is None:
            return
        self._sync()
        self.step_seconds.append(time.perf_counter() - self.step_started)
        if state.global_step >= self.first + self.count - 1:
            self.profiler.__exit__(None, None, None)
            self.write(self.profiler)
            self.profiler = None

    def on_train_end(self, args, state, control, **kwargs):
        if self.profiler is not None:  # the run ended inside the window: keep what was profiled
            self.profiler.__exit__(None, None, None)
            self.write(self.profiler)
            self.profiler = None

    def write(self, profiler) -> Path:
        import torch

        averages = profiler.key_averages()
        last = self.first + len(self.step_seconds) - 1
        lines = [f"rank {self.rank}: steps {self.first}-{last}, wall seconds per step "
                 + ", ".join(f"{s:.4f}" for s in self.step_seconds)]  # fmt: skip
        if torch.cuda.is_available():
            lines += ["", "By GPU time:", averages.table(sort_by="self_device_time_total", row_limit=ROWS)]
        lines += ["", "By CPU time:", averages.table(sort_by="self_cpu_time_total", row_limit=ROWS)]
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"profile-rank{self.rank}.txt"
        path.write_text("\n".join(lines) + "\n")
        logger.info("Profile of steps %d-%d written to %s", self.first, last, path)
        return path

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def profiler_from_env() -> list[StepProfiler]:
    """A :class:`StepProfiler` when ``LORASTACK_PROFILE`` names a folder, else nothing."""
    folder = os.environ.get(ENV_DIR, "").strip()
    if not folder:
        return []
    spec = os.environ.get(ENV_STEPS, "").strip()
    first, count = DEFAULT_STEPS
    if spec:
        try:
            first, count = (int(part) for part in spec.split(":"))
        except ValueError:
            hint = "Write e.g. 6:3 (steps 6, 7 and 8)."
            raise LorastackError(f"{ENV_STEPS}={spec!r} is not FIRST:COUNT.", hint) from None
        if first < 1 or count < 1:
            raise LorastackError(f"{ENV_STEPS}={spec!r}: FIRST and COUNT must be 1 or more.", "Write e.g. 6:3.")
    logger.info("Profiling steps %d-%d into %s (%s): this run's tokens/s are not its speed.",
                first, first + count - 1, folder, ENV_DIR)  # fmt: skip
    return [StepProfiler(Path(folder), first, count)]
