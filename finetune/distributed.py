"""Training on several GPUs, or several machines: one process per GPU under torchrun, never a launcher of our own.

``lorastack train CONFIG --gpus N`` starts torchrun (``torch.distributed.run``'s own main, through
``lorastack.finetune.torchrun``, which only turns a Ctrl-C's traceback into an exit status) with the same command
line; each process torchrun starts runs ``lorastack train`` again, finds itself inside a launcher
(:meth:`World.this`) and trains its share. Run ``torchrun ... -m lorastack.cli train CONFIG`` (or
``accelerate launch``) yourself and the same code runs. transformers' Trainer and accelerate do the distributed
work: DDP (each GPU a whole model, gradients averaged) or FSDP2 (weights, gradients and optimizer states sharded;
4-bit weights too, stored in the compute dtype so that they shard: the FSDP-QLoRA recipe).

Rank 0 alone logs progress, writes the adapter, its card and the loss curve, and registers it; the checkpoints are
the Trainer's (rank 0 writes the weights, every rank its RNG state).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from lorastack.errors import LorastackError
from lorastack.finetune.choices import optimizer_under
from lorastack.finetune.config import BNB_OPTIMIZERS
from lorastack.finetune.memory import GIB, ModelShape, estimate_memory
from lorastack.finetune.memory_plan import run_shape

logger = logging.getLogger(__name__)

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (torchrun's environment; one process without it)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @classmethod
    def this(cls) -> World:
        env = os.environ
        if "WORLD_SIZE" not in env or "RANK" not in env:
            return cls()
        return cls(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]))

    @property
    def main(self) -> bool:
        """The process that logs and writes (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def inside_launcher() -> bool:
    """Whether torchrun (or accelerate launch, or any launcher that sets torch's environment) started us."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


@dataclass(frozen=True)
class Launch:
    """How ``lorastack train`` was asked to spread out: ``--gpus`` and torchrun's rendezvous options."""

    gpus: int = 1
    """Processes (one per GPU) on this machine."""
    nnodes: str | None = None
    """Machines: N, or MIN:MAX for an elastic run (torchrun's --nnodes)."""
    node_rank: int | None = None
    """This machine's rank among them (torchrun's --node-rank; the static rendezvous needs it)."""
    rdzv_endpoint: str | None = None
    """HOST:PORT where the machines meet (torchrun's --rdzv-endpoint)."""
    rdzv_backend: str | None = None
    """static (torchrun's default) or c10d (elastic)."""
    rdzv_id: str | None = None
    """A name shared by the machines of one run (the c10d rendezvous)."""

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise LorastackError(f"--gpus {self.gpus}: needs at least 1.", "Give the number of GPUs to train on.")
        if self.node_rank is not None and self.node_rank < 0:
            raise LorastackError(f"--node-rank {self.node_rank} is negative.", "Number the machines from 0.")
        if self.nnodes is not None and not _nnodes_valid(self.nnodes):
            raise LorastackError(f"--nnodes {self.nnodes!r} is not N or MIN:MAX.", "e.g. --nnodes 2 (or 1:4).")
        if self.multi_node and self.rdzv_endpoint is None:
            raise LorastackError(
                f"--nnodes {self.nnodes}: the machines need a meeting point.",
                "Add --rdzv-endpoint HOST:PORT (the same on every machine) and --node-rank.",
            )

    @property
    def multi_node(self) -> bool:
        return self.nnodes is not None and self.nnodes not in ("1", "1:1")

    @property
    def needs_launcher(self) -> bool:
        """Whether this command starts torchrun (more than one process, or a rendezvous with other machines)."""
        return self.gpus > 1 or self.multi_node or self.rdzv_endpoint is not None

    def flags(self) -> list[str]:
        """These options as ``lorastack train`` flags (what a resumed run repeats)."""
        pairs = [("--gpus", self.gpus if self.gpus != 1 else None), ("--nnodes", self.nnodes),
                 ("--node-rank", self.node_rank), ("--rdzv-endpoint", self.rdzv_endpoint),
                 ("--rdzv-backend", self.rdzv_backend), ("--rdzv-id", self.rdzv_id)]  # fmt: skip
        return [part for flag, value in pairs if value is not None for part in (flag, str(value))]

    def torchrun_args(self) -> list[str]:
        """torchrun's own options for this launch."""
        args = ["--nproc-per-node", str(self.gpus)]
        if not self.multi_node and self.rdzv_endpoint is None:
            return ["--standalone", *args]  # one machine: a free local port, no clash between runs
        pairs = [("--nnodes", self.nnodes), ("--node-rank", self.node_rank), ("--rdzv-endpoint", self.rdzv_endpoint),
                 ("--rdzv-backend", self.rdzv_backend), ("--rdzv-id", self.rdzv_id)]  # fmt: skip
        return args + [part for flag, value in pairs if value is not None for part in (flag, str(value))]


def _nnodes_valid(value: str) -> bool:
    parts = value.split(":")
    return 1 <= len(parts) <= 2 and all(p.isdigit() and int(p) > 0 for p in parts)


def torchrun_command(launch: Launch, cli_arguments: list[str]) -> list[str]:
    """The command that runs ``lorastack <cli_arguments>`` once per process under torchrun."""
    return [sys.executable, "-m", "lorastack.finetune.torchrun", *launch.torchrun_args(), "-m", "lorastack.cli",
            *cli_arguments]  # fmt: skip


def run_torchrun(command: list[str]) -> tuple[int, bool]:
    """Run torchrun in the foreground: its exit status, and whether Ctrl-C ended it.

    Ctrl-C on a terminal reaches torchrun and its processes directly (one process group); a SIGTERM to this
    process (a job runner stopping the run) is passed on to torchrun, which stops its processes; and torchrun is
    stopped if this process dies without a word (kill -9), rather than training on unseen."""
    terminated, started = [], []

    def pass_on(signum: int, frame: Any) -> None:
        terminated.append(signum)
        for process in started:
            process.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, pass_on)  # before torchrun starts: no moment without it
    process = subprocess.Popen(command, preexec_fn=_stop_with_parent)  # noqa: PLW1509 (no threads of ours yet)
    started.append(process)
    if terminated:
        process.send_signal(signal.SIGTERM)
    try:
        status = process.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C would leave the processes behind
        process.wait()
        return INTERRUPTED_STATUS, True
    finally:
        signal.signal(signal.SIGTERM, previous)
    if terminated:  # end as a one-process run ends on SIGTERM, once torchrun has stopped its processes
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    # A SIGINT that reached torchrun and not this process (sent to the process group by a job runner): the same end
    # as Ctrl-C here.
    return status, status == INTERRUPTED_STATUS


INTERRUPTED_STATUS = 130


def _stop_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


LAUNCHER_PID = "LORASTACK_LAUNCHER_PID"
"""The environment variable through which ``lorastack.finetune.torchrun`` tells its training processes its pid."""


def stop_with_launcher() -> None:
    """In a training process that ``lorastack train --gpus N`` started: die with torchrun.

    torchrun starts each training process in a session of its own and stops them itself when it ends; killed with
    SIGKILL it cannot, and they would train on, writing checkpoints into the output folder that a ``--resume`` then
    reads at the same time. So each asks the kernel for SIGKILL when its parent, torchrun, dies (Linux
    PR_SET_PDEATHSIG; torchrun starts them from its main thread, which lives as long as it does), and leaves at once
    if torchrun is already gone. Under a launcher of the user's own (no :data:`LAUNCHER_PID`) nothing changes."""
    launcher = os.environ.get(LAUNCHER_PID)
    if not launcher:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != launcher:  # torchrun died before the request: nobody would stop this process
        os._exit(128 + signal.SIGKILL)


def visible_gpus() -> int:
    import torch  # heavy: only when several processes are asked for

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(launch: Launch, backend: str, gpus_here: int) -> str:
    """Refuse more processes than GPUs; say what the processes run on."""
    if backend == "cpu":
        return f"{launch.gpus} processes on the CPU (no CUDA GPU; gloo)"
    if launch.gpus > gpus_here:
        raise LorastackError(
            f"--gpus {launch.gpus}: only {gpus_here} CUDA GPU(s) are visible here.",
            f"Use --gpus {gpus_here} or fewer (CUDA_VISIBLE_DEVICES decides which).",
        )
    return f"{launch.gpus} processes, one per GPU"


def choose_strategy(
    setting: str, world_size: int, on_gpu: bool, plan_gib: float | None, gpu_gib: float | None
) -> tuple[str, str]:
    """DDP or FSDP for ``world_size`` processes, and why. ``plan_gib``: the run's predicted peak on one GPU
    (``lorastack plan``'s total), ``gpu_gib`` one GPU's memory; either None when unknown."""
    if world_size == 1:
        return "none", "one process"
    if setting != "auto":
        return setting, "chosen in the config (training.distributed)"
    if not on_gpu:
        return "ddp", "CPU processes: each holds the whole model"
    if plan_gib is None or gpu_gib is None:
        return "ddp", (
            "the model's memory could not be planned, so DDP; set training.distributed: fsdp if it does not fit one GPU"
        )
    if plan_gib <= gpu_gib:
        return "ddp", f"the run's planned {plan_gib:.1f} GiB fit one GPU's {gpu_gib:.0f} GiB"
    return "fsdp", f"the run's planned {plan_gib:.1f} GiB exceed one GPU's {gpu_gib:.0f} GiB: sharded over the GPUs"


def global_batch(batch_size: int, grad_accum: int, world_size: int) -> tuple[int, str]:
    """Sequences per optimizer step over all processes, and the line that says how it comes about."""
    total = batch_size * grad_accum * world_size
    return total, (
        f"Global batch {total} sequences per step = {batch_size} per device x {grad_accum} accumulation "
        f"x {world_size} process{'es' if world_size > 1 else ''}"
    )


def total_over_ranks(value: float, device: Any = None, op: str = "sum") -> float:
    """``value`` summed (or the maximum) over the training processes; itself on one process. Every process must
    call it at the same point (a collective)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    import torch

    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return float(tensor.item())


def fsdp_arguments(layer_classes: list[str]) -> dict[str, Any]:
    """TrainingArguments for FSDP2 full-shard: every decoder layer its own unit (accelerate puts embeddings and
    the head in units of their own). Checkpointing stays the backend's own (lorastack's offload included), so
    accelerate's activation checkpointing is off; the full state dict is gathered for saving (rank 0 writes)."""
    return {
        "fsdp": True,  # full shard (reshard_after_forward), a unit per decoder layer (transformer-based wrap)
        "fsdp_config": {
            "version": 2,
            "transformer_layer_cls_to_wrap": layer_classes,
            "reshard_after_forward": True,
            "activation_checkpointing": False,
            "cpu_ram_efficient_loading": False,
            "state_dict_type": "FULL_STATE_DICT",
        },
    }


def decoder_layer_classes(model: Any) -> list[str]:
    """The class names FSDP wraps one by one: the model's ``_no_split_modules`` (its decoder layer)."""
    names = getattr(model, "_no_split_modules", None) or []
    if not names:
        raise LorastackError(
            f"{type(model).__name__} names no decoder layer class (_no_split_modules) to shard by.",
            "Use training.distributed: ddp for this model.",
        )
    return list(names)


def with_strategy(config: Any, choices: Any, model_path: str, gpu_gib: float | None = None) -> Any:
    """``choices`` (a :class:`~lorastack.finetune.choices.RunChoices` for several processes) with DDP or FSDP
    decided (:func:`choose_strategy`: auto plans the run on one GPU of ``gpu_gib``)."""
    if choices.processes == 1:
        return choices
    setting, plan_gib = config.training.distributed, None
    if choices.on_gpu and setting == "auto":
        plan_gib = _planned_gib(config, choices, model_path)
    strategy, reason = choose_strategy(setting, choices.processes, choices.on_gpu, plan_gib, gpu_gib)
    if strategy == "fsdp" and not choices.on_gpu:
        raise LorastackError(
            "training.distributed fsdp shards over CUDA GPUs; CPU processes train with DDP.",
            "Use training.distributed: ddp (or auto) on the CPU.",
        )
    if strategy == "fsdp" and choices.quantization == "int8":
        raise LorastackError(
            "FSDP shards nf4 (QLoRA) or unquantized base weights; int8 ones do not shard.",
            "Use quantization: nf4 (or none), or training.distributed: ddp.",
        )
    if strategy == "fsdp" and choices.backend == "unsloth":
        raise LorastackError("backend unsloth trains on one GPU.", "Use backend: peft with training.distributed: fsdp.")
    optimizer = optimizer_under(strategy, config, choices.optimizer)
    if strategy == "fsdp" and optimizer in BNB_OPTIMIZERS:  # named in the config, and auto chose FSDP
        raise LorastackError(
            f"training.optimizer {optimizer} (bitsandbytes) cannot update FSDP's sharded parameters.",
            "Use training.optimizer: adamw_torch (or auto) with FSDP, or training.distributed: ddp.",
        )
    return dataclasses.replace(choices, optimizer=optimizer, distributed=strategy, distributed_reason=reason)


def _planned_gib(config: Any, choices: Any, model_path: str) -> float | None:
    """The run's predicted peak on one GPU (DDP's share), or None if its shape cannot be read."""
    try:
        model = ModelShape.from_pretrained(model_path)
    except LorastackError as exc:
        logger.info("No memory plan for the strategy: %s", exc)
        return None
    one_gpu = run_shape(config, dataclasses.replace(choices, distributed="ddp"), model.model_type)
    return estimate_memory(model, one_gpu).total_bytes / GIB
