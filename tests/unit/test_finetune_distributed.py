"""Several training processes: the torchrun command, the strategy, Unsloth's fallback, the per-GPU plan, and the
refusals that come before any process starts. (The real 2-process runs: tests/integration/test_distributed_training.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lorastack.errors import LorastackError
from lorastack.finetune.choices import Machine, resolve
from lorastack.finetune.config import load_train_config
from lorastack.finetune.distributed import Launch, World, choose_strategy, global_batch, torchrun_command
from lorastack.finetune.memory import GIB, estimate_memory
from lorastack.finetune.trainer import last_checkpoint

from .test_finetune_memory import probe_model, probe_run

CUDA = Machine(cuda=True, bf16=True, unsloth=True, bitsandbytes=True)


def _config(one_chat: Path, *extra: str):
    return load_train_config(None, [f"data.path={one_chat}", *extra])


def test_one_machine_runs_torchrun_standalone_with_the_same_command() -> None:
    launch = Launch(gpus=2)
    command = torchrun_command(launch, ["train", "recipe.yaml", "lora.r=8", *launch.flags()])
    assert command[1:] == ["-m", "lorastack.finetune.torchrun", "--standalone", "--nproc-per-node", "2", "-m",
                           "lorastack.cli", "train", "recipe.yaml", "lora.r=8", "--gpus", "2"]  # fmt: skip
    assert launch.needs_launcher and not Launch().needs_launcher and Launch().flags() == []


def test_several_machines_pass_torchrun_rendezvous_options_through() -> None:
    launch = Launch(gpus=8, nnodes="2", node_rank=1, rdzv_endpoint="10.0.0.1:29500")
    assert launch.torchrun_args() == ["--nproc-per-node", "8", "--nnodes", "2", "--node-rank", "1",
                                      "--rdzv-endpoint", "10.0.0.1:29500"]  # fmt: skip
    elastic = Launch(gpus=4, nnodes="1:4", rdzv_endpoint="head:29400", rdzv_backend="c10d", rdzv_id="job7")
    assert elastic.torchrun_args()[-4:] == ["--rdzv-backend", "c10d", "--rdzv-id", "job7"]
    assert elastic.flags() == ["--gpus", "4", "--nnodes", "1:4", "--rdzv-endpoint", "head:29400",
                               "--rdzv-backend", "c10d", "--rdzv-id", "job7"]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [({"gpus": 0}, "at least 1"), ({"gpus": -2}, "at least 1"), ({"nnodes": "two"}, "not N or MIN:MAX"),
     ({"nnodes": "0"}, "not N or MIN:MAX"), ({"nnodes": "2"}, "meeting point"), ({"node_rank": -1}, "negative")],
)  # fmt: skip
def test_bad_launch_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(LorastackError, match=message):
        Launch(**options)


def test_world_comes_from_torchruns_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert World.this() == World() and World.this().main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert World.this() == World(rank=3, local_rank=1, size=4) and not World.this().main


def test_strategy_auto_is_ddp_when_the_plan_fits_one_gpu_else_fsdp() -> None:
    assert choose_strategy("auto", 2, True, 16.8, 80)[0] == "ddp"
    strategy, reason = choose_strategy("auto", 2, True, 90.0, 80)
    assert strategy == "fsdp" and "90.0 GiB exceed one GPU's 80 GiB" in reason
    assert choose_strategy("fsdp", 2, True, 1.0, 80) == ("fsdp", "chosen in the config (training.distributed)")
    assert choose_strategy("auto", 2, False, None, None)[0] == "ddp"  # CPU processes
    assert choose_strategy("auto", 2, True, None, 80)[0] == "ddp"  # a model the planner cannot read
    assert choose_strategy("fsdp", 1, True, 1.0, 80)[0] == "none"


def test_global_batch_counts_every_process() -> None:
    assert global_batch(4, 2, 8) == (
        64,
        "Global batch 64 sequences per step = 4 per device x 2 accumulation x 8 processes",
    )


def test_unsloth_is_one_gpu_auto_falls_back_to_peft_and_forced_is_refused(one_chat: Path) -> None:
    single = resolve(_config(one_chat), CUDA)
    assert single.backend == "unsloth"
    spread = resolve(_config(one_chat), CUDA, processes=2)
    assert spread.backend == "peft" and "Unsloth trains on one GPU only" in spread.reason
    with pytest.raises(LorastackError, match="backend unsloth trains on one GPU"):
        resolve(_config(one_chat, "backend=unsloth"), CUDA, processes=2)


def test_fsdp_refuses_int8(one_chat: Path) -> None:
    from lorastack.finetune.distributed import with_strategy

    config = _config(one_chat, "backend=peft", "quantization=int8", "training.distributed=fsdp")
    with pytest.raises(LorastackError, match="int8 ones do not shard"):
        with_strategy(config, resolve(config, CUDA, processes=2), "unused")


def test_fsdp_refuses_cpu_processes(one_chat: Path) -> None:
    """accelerate would wrap CPU processes in DDP instead, silently."""
    from lorastack.finetune.distributed import with_strategy

    config = _config(one_chat, "training.distributed=fsdp")
    with pytest.raises(LorastackError, match="fsdp shards over CUDA GPUs"):
        with_strategy(config, resolve(config, Machine(cuda=False), processes=2), "unused")


def test_per_gpu_plan_ddp_adds_its_buckets_and_fsdp_shards() -> None:
    model = probe_model("8b")
    one = estimate_memory(model, probe_run("lora16"))
    ddp = estimate_memory(model, probe_run("lora16", processes=2, distributed="ddp"))
    fsdp2 = estimate_memory(model, probe_run("lora16", processes=2, distributed="fsdp"))
    fsdp4 = estimate_memory(model, probe_run("lora16", processes=4, distributed="fsdp"))
    assert ddp.allocated_bytes - one.allocated_bytes == ddp.get("DDP gradient buckets") == one.get("LoRA gradients")
    assert fsdp2.get("base weights") == -(-one.get("base weights") // 2)
    assert fsdp4.allocated_bytes < fsdp2.allocated_bytes < one.allocated_bytes
    # The 8B shape in bf16: 14 GiB of weights on one GPU, 7 per GPU on two plus what is gathered whole.
    assert 0.45 < fsdp2.allocated_bytes / one.allocated_bytes < 0.7
    assert fsdp2.get("FSDP gathered weights") / GIB == pytest.approx(1.22, abs=0.05)


def test_plan_with_gpus_prints_both_strategies(one_chat: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lorastack.cli", "plan", f"data.path={one_chat}", "--gpus", "2", "--gpu-memory", "24"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "DDP on 2 GPUs: peak" in result.stdout and "FSDP on 2 GPUs: peak" in result.stdout
    assert "training.distributed auto: DDP" in result.stdout
    assert "Global batch 8 sequences per step = 4 per device x 1 accumulation x 2 processes" in result.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--gpus", "0"], "--gpus 0: needs at least 1"),
     (["--gpus", "2", "--nnodes", "2"], "the machines need a meeting point"),
     (["--gpus", "2", "backend=unsloth"], "backend unsloth trains on one GPU")],
)  # fmt: skip
def test_train_refuses_before_starting_torchrun(one_chat: Path, tmp_path: Path, flags: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lorastack.cli", "train", f"data.path={one_chat}", f"output_dir={tmp_path / 'run'}",
         *flags], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stderr
    assert "Starting torchrun" not in result.stderr and not (tmp_path / "run").exists()


def test_resume_skips_a_checkpoint_killed_while_written(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    for step, complete in ((2, True), (4, True), (6, False)):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (checkpoints / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert Path(last_checkpoint(tmp_path)).name == "checkpoint-4"
    (checkpoints / "checkpoint-10").mkdir()
    assert Path(last_checkpoint(tmp_path)).name == "checkpoint-4"
    assert last_checkpoint(tmp_path / "none") is None


def test_sigterm_reaches_torchrun_and_ends_the_command_as_sigterm(tmp_path: Path) -> None:
    """A job runner's SIGTERM to `lorastack train --gpus N` stops torchrun (here a stand-in that records it),
    then the command ends by SIGTERM, as a one-process run does."""
    import signal
    import time

    marker, started = tmp_path / "child-got-sigterm", tmp_path / "child-started"
    child = (f"import signal, sys, time, pathlib; signal.signal(signal.SIGTERM, lambda *a: "
             f"(pathlib.Path({str(marker)!r}).write_text('1'), sys.exit(1))); "
             f"pathlib.Path({str(started)!r}).touch(); time.sleep(60)")  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from lorastack.finetune.distributed import "
                               f"run_torchrun; run_torchrun([sys.executable, '-c', {child!r}])"])  # fmt: skip
    deadline = time.monotonic() + 60
    while not started.exists():  # the parent's handler is in place before its child starts
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == -signal.SIGTERM
    assert marker.read_text() == "1"


def test_fsdp_trains_with_torch_adamw(one_chat: Path) -> None:
    """bitsandbytes' optimizer kernels fail on FSDP's DTensor parameters (seen on two H200s): auto becomes torch's
    AdamW under FSDP, in the run and in its plan; one asked for by name is refused before anything starts."""
    from lorastack.finetune.distributed import with_strategy
    from lorastack.finetune.memory_plan import planned_run

    config = _config(one_chat, "backend=peft", "quantization=nf4", "training.distributed=fsdp")
    assert resolve(config, CUDA, processes=2).optimizer == "paged_adamw_8bit"  # DDP and one GPU keep it
    assert with_strategy(config, resolve(config, CUDA, processes=2), "unused").optimizer == "adamw_torch"
    assert planned_run(config, machine=CUDA, gpus=2, strategy="fsdp").optimizer == "adamw_torch"
    assert planned_run(config, machine=CUDA, gpus=2, strategy="ddp").optimizer == "paged_adamw_8bit"
    with pytest.raises(LorastackError, match="adamw_8bit .bitsandbytes. cannot update FSDP's sharded parameters"):
        _config(one_chat, "training.distributed=fsdp", "training.optimizer=adamw_8bit")
    chosen = _config(one_chat, "backend=peft", "training.optimizer=paged_adamw_32bit")
    chosen.training.distributed = "fsdp"  # as when auto picks FSDP (the config itself refuses fsdp with it)
    with pytest.raises(LorastackError, match="paged_adamw_32bit .bitsandbytes. cannot update FSDP"):
        with_strategy(chosen, resolve(chosen, CUDA, processes=2), "unused")
