"""The chunked loss under FSDP2: run as the root module's forward (the trainer's way under DDP and FSDP), FSDP's
hooks gather the root's sharded weights (embeddings, final norm, lm_head) for it and for the backward, and loss and
LoRA gradients equal the model's own. Real FSDP2 (``fully_shard``) over two CPU processes (gloo); the whole Trainer
under FSDP needs CUDA GPUs (tests/integration/test_gpu_distributed.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fsdp_loss_worker.py")


def test_chunked_loss_as_the_root_forward_under_fsdp_equals_the_models_own(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
               str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    written = sorted(p.name for p in tmp_path.glob("rank*.json"))
    assert done.returncode == 0, f"results written: {written}\n{done.stderr[-3000:]}"
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["chunked"] == pytest.approx(result["own"], rel=1e-5)
        assert result["grad"] < 1e-6
