"""Real 2-process DDP training on the CPU (torchrun, gloo, the embedded model, a few short steps): the same loss
curve and weights as one process with the same global batch, identical LoRA weights on both ranks, one adapter and
card written by rank 0, token totals over the ranks, and ``lorastack train --gpus 2 --resume`` after a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from lorastack.finetune.config import load_train_config
from lorastack.finetune.trainer import train

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "tool_chat.jsonl"
WORKER = Path(__file__).with_name("distributed_worker.py")
TINY = [
    f"data.path={DATA}", "data.max_length=384", "data.eval_fraction=0", "lora.r=4", "lora.target_modules=[q_proj, v_proj]",
    "training.learning_rate=3e-3", "training.logging_steps=1", "training.lr_scheduler=constant", "training.max_steps=3",
    "training.save_steps=100", "training.optimizer=sgd",
]  # fmt: skip
# SGD, not AdamW: Adam's first step moves every weight by about the learning rate whatever its gradient's size, so
# float32 noise in a near-zero gradient (another summation order: torchrun's processes run one thread each, the one
# process several) flips whole steps, and runs differed by 0.5-2.8% at step 3 (they then also started from different
# lora_A: see WEIGHT_TOLERANCE). SGD keeps the comparison exact enough to catch a wrong shard or unaveraged gradients.
# At 384 tokens all 8 examples keep assistant tokens: two full global batches of 4 an epoch. (With a remainder, the
# processes' sampler pads the last batch with repeated examples where one process takes a smaller one.)
LOSS_TOLERANCE = 1e-5
"""Relative difference allowed between the 2-process and the 1-process loss at each of the 3 steps (the same tokens,
the same start, SGD; measured 4e-7)."""
WEIGHT_TOLERANCE = 1e-6
"""Largest |difference| allowed between the LoRA weights of the two runs after 3 steps (measured 1.9e-9). Both runs
start from the same LoRA weights because training seeds before making them; when it seeded only in the Trainer,
after, lora_A came out of whatever the random generator had done before and the runs differed by 0.083."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, base_model) -> dict:
    """The same 3 steps with a global batch of 4: two processes of 2 (torchrun), and one process of 4."""
    out = tmp_path_factory.mktemp("ddp")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
               str(out), *TINY, "training.batch_size=2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    one = train(load_train_config(None, [*TINY, "training.batch_size=4", f"output_dir={out / 'one'}"]))
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"out": out, "one": one, "ranks": ranks, "stderr": done.stderr}


def _losses(history: list[dict]) -> list[float]:
    return [h["loss"] for h in history if "loss" in h]


def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(runs) -> None:
    one = _losses(runs["one"].log_history)
    for rank in runs["ranks"]:
        two = _losses(rank["log_history"])
        assert len(two) == len(one) == 3
        assert two == pytest.approx(one, rel=LOSS_TOLERANCE)
    assert one[0] != one[-1]  # the weights moved, so the later steps compare trained weights too


def test_lora_weights_are_identical_on_both_ranks_and_match_one_process(runs) -> None:
    rank0, rank1 = (load_file(runs["out"] / f"rank{r}.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and len(rank0) == 2 * 2 * 30  # A and B of q and v in 30 layers
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    one = {name: p.detach() for name, p in runs["one"].model.named_parameters() if "lora_" in name}
    assert max((rank0[name] - one[name]).abs().max().item() for name in rank0) < WEIGHT_TOLERANCE
    assert any(rank0[name].abs().sum() > 0 for name in rank0 if "lora_B" in name)  # B starts at zero: it learned


def test_rank_zero_alone_writes_one_adapter_with_totals_over_ranks(runs) -> None:
    run = runs["out"] / "run"
    assert {p.name for p in run.iterdir()} == {"adapter", "checkpoints", "loss_curve.png"}
    assert {p.name for p in (run / "adapter").iterdir()} == {
        "adapter_config.json", "adapter_model.safetensors", "training_card.json", "README.md"}  # fmt: skip
    metrics = json.loads((run / "adapter" / "training_card.json").read_text())["metrics"]
    assert (metrics["processes"], metrics["distributed"], metrics["global_batch_size"]) == (2, "ddp", 4)
    # The token count is the sum over both ranks: the tokens one process of batch 4 trained on.
    assert metrics["non_padding_tokens"] == runs["one"].metrics["non_padding_tokens"]
    assert runs["ranks"][1]["metrics"]["non_padding_tokens"] == metrics["non_padding_tokens"]


def test_gpus_2_killed_then_resumed(tmp_path: Path) -> None:
    """`lorastack train --gpus 2` (torchrun's 2 CPU processes) killed with SIGKILL, all of it, after a checkpoint;
    the same command with --resume continues there and finishes with one adapter."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "lorastack.cli", "train", *TINY, "training.batch_size=1", "training.max_steps=10",
            "training.save_steps=2", f"output_dir={out}", "--gpus", "2"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
        assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the command and torchrun; torchrun's processes have sessions of their own
    first.wait(timeout=60)
    # ...and die with torchrun: none trains on into the folder that the resumed run reads.
    deadline = time.monotonic() + 30
    while left := [p.pid for p in psutil.process_iter(["cmdline"]) if f"output_dir={out}" in (p.info["cmdline"] or [])]:
        assert time.monotonic() < deadline, f"training processes {left} outlived the killed launch"
        time.sleep(0.2)
    assert not (out / "adapter").exists()

    again = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Starting torchrun: 2 processes on the CPU" in again.stderr
    assert again.stderr.count("Resuming from checkpoint-") == 1  # rank 0 alone reports
    assert "2 processes with DDP" in again.stderr
    resumed = int(again.stderr.split("Resuming from checkpoint-")[1].split(".")[0])
    assert 2 <= resumed < 10  # the kill came after checkpoint-2 and before the end (the run is 10 steps)
    assert "step 10/10  loss " in again.stderr  # the steps after the checkpoint were trained
    card = json.loads((out / "adapter" / "training_card.json").read_text())
    assert card["metrics"]["steps"] == 10 and card["metrics"]["processes"] == 2
    assert (out / "checkpoints" / "checkpoint-10").is_dir()


def test_gpus_2_interrupted_ends_in_one_line_with_the_resume_command(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during `lorastack train --gpus 2`: exit
    status 130, the command that resumes, and no traceback from torchrun or the training processes."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "lorastack.cli", "train", *TINY, "training.batch_size=1", "training.max_steps=40",
            "training.save_steps=2", f"output_dir={out}", "--gpus", "2"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    log = tmp_path / "train.log"
    with log.open("w") as sink:
        run = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 600
        while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(run.pid, signal.SIGINT)
        status = run.wait(timeout=120)
    said = log.read_text()
    assert status == 130, said[-3000:]
    assert "Traceback" not in said, said[-3000:]
    assert "--resume" in said.splitlines()[-1]  # the last line says how to go on
    assert not (out / "adapter").exists()
