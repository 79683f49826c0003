"""``lorastack train``, ``lorastack plan`` and ``lorastack export``."""

from __future__ import annotations

import logging
import os
import shlex
import signal
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lorastack.finetune.choices import Machine, importable, resolve
from lorastack.finetune.config import field_docs, load_train_config
from lorastack.finetune.distributed import (
    Launch,
    World,
    check_gpus,
    choose_strategy,
    global_batch,
    inside_launcher,
    run_torchrun,
    stop_with_launcher,
    torchrun_command,
    visible_gpus,
)
from lorastack.finetune.memory import GIB
from lorastack.finetune.synth.generate import SynthConfig
from lorastack.errors import LorastackError
from lorastack.options import config_options

console = Console()
err_console = Console(stderr=True)

INTERRUPTED = 130
"""Exit status of a run stopped with Ctrl-C (128 + SIGINT), as shells report it."""


def _fields_help() -> str:
    # Escaped: help is rich markup, where "[q_proj, v_proj]" would read as a style tag and vanish.
    rows = "\n\n".join(escape(f"{name} (default {default}): {doc}") for name, default, doc in field_docs())
    return f"Config fields (YAML keys; override any with KEY=VALUE, e.g. lora.r=32):\n\n{rows}"


def _split(config: str | None, overrides: list[str] | None) -> tuple[Path | None, list[str]]:
    """`lorastack train key=value ...` without a recipe: the first override lands in the config slot (taken as a
    string: a Path would fold base_model=s3://... into s3:/...)."""
    if config is not None and "=" in config and not Path(config).exists():
        return None, [config, *(overrides or [])]
    return (Path(config) if config is not None else None), list(overrides or [])


def train(
    config: Optional[str] = typer.Argument(None, help="A YAML recipe (see finetune/recipes/)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="KEY=VALUE settings over the recipe, e.g. training.max_steps=50."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output_dir from its last checkpoint."),
    register: Optional[str] = typer.Option(None, "--register", help="Register the trained adapter under this name."),
    load: bool = typer.Option(False, "--load", help="Also hot-load it into the running server (needs --register)."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs on this machine, one process each, under torchrun (training.distributed: DDP or FSDP); 1: the first visible GPU only. Without a GPU: CPU processes (gloo)."),
    nnodes: Optional[str] = typer.Option(None, "--nnodes", help="Machines in the run, N or MIN:MAX (torchrun's --nnodes); run the same command on each."),
    node_rank: Optional[int] = typer.Option(None, "--node-rank", help="This machine's rank, 0 to nnodes-1 (torchrun's --node-rank)."),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT where the machines meet, the same on each (torchrun's --rdzv-endpoint)."),
    rdzv_backend: Optional[str] = typer.Option(None, "--rdzv-backend", help="torchrun's rendezvous: static (its default, needs --node-rank) or c10d (elastic)."),
    rdzv_id: Optional[str] = typer.Option(None, "--rdzv-id", help="A name for the run shared by its machines (torchrun's --rdzv-id, for c10d)."),
) -> None:
    """Train a LoRA/QLoRA adapter from a recipe; the adapter and its card land in output_dir/adapter."""
    if load and not register:
        raise typer.BadParameter("--load needs --register NAME")
    launch = Launch(gpus, nnodes, node_rank, rdzv_endpoint, rdzv_backend, rdzv_id)
    recipe, settings_given = _split(config, overrides)
    settings = load_train_config(recipe, settings_given)
    flags = [*(["--register", register] if register else []), *(["--load"] if load else []), *launch.flags()]
    if launch.needs_launcher and not inside_launcher():
        _run_under_torchrun(launch, settings, recipe, settings_given, flags, resume)
        return
    world = World.this()
    stop_with_launcher()  # under lorastack's own torchrun only
    if not world.main:
        _quiet()
    if not inside_launcher() and "CUDA_VISIBLE_DEVICES" not in os.environ:
        # One process trains on one GPU: with several visible, transformers' Trainer would wrap the model in
        # DataParallel across all of them (slower, and broken with gradient checkpointing). --gpus N spreads a run.
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    # torch and transformers: only once the config is sound
    from lorastack.finetune.measure import describe_metrics
    from lorastack.finetune.progress import progress_for
    from lorastack.finetune.trainer import train as run

    progress = progress_for(err_console) if world.main else None
    try:
        result = run(settings, resume=resume, callbacks=[progress] if progress else [])
    except KeyboardInterrupt:
        if inside_launcher():  # torchrun passes the terminal's Ctrl-C on once more: this process is leaving anyway
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if progress is not None:
            progress.close()
        if not inside_launcher():  # under torchrun, the command that started it says how to resume
            hint = _resume_hint(recipe, [*settings_given, *flags], settings.output_dir)
            err_console.print(hint, highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(INTERRUPTED) from None
    except LorastackError:
        if world.main:
            raise
        raise typer.Exit(1) from None  # rank 0 says it
    if not world.main:
        return
    console.print(f"Adapter saved to [bold]{result.adapter_dir}[/]: {escape(describe_metrics(result.metrics))}")
    if register:
        # the registry's SQLite and file checks: only for --register
        from lorastack.serve.loading import load_adapter
        from lorastack.serve.registry import Registry
        from lorastack.serve.state import current_server

        registry = Registry()
        adapter = registry.register(register, result.adapter_dir, result.base, result.base.weight_shapes())
        console.print(f"Registered {adapter.ref}.")
        if load:
            loaded = load_adapter(registry, adapter.ref, current_server(registry.home))
            console.print(f"Loaded {adapter.ref}." if loaded.live else "No server is running: it loads at the next start.")


def _run_under_torchrun(launch, settings, recipe: Path | None, settings_given: list[str], flags: list[str],
                        resume: bool) -> None:
    """Start torchrun with this command (each process it starts trains; rank 0 reports), and say how it ended."""
    from lorastack.finetune.trainer import check_run_folder  # torch and transformers (the trainer module)

    check_run_folder(settings.output_dir, resume)  # before N processes start to say the same
    gpus_here = visible_gpus()
    # What the processes will resolve, for the refusals (Unsloth forced, no bitsandbytes ...) to come once, here;
    # described rather than probed, so that this process never opens a CUDA context on GPU 0.
    machine = Machine(cuda=gpus_here > 0, bf16=True, unsloth=importable("unsloth"), bitsandbytes=importable("bitsandbytes"))
    choices = resolve(settings, machine, processes=max(launch.gpus, 2))
    where = check_gpus(launch, choices.backend, gpus_here)
    verbose = ["-v"] if logging.getLogger("lorastack").level <= logging.DEBUG else []
    arguments = [*verbose, "train", *([str(recipe)] if recipe else []), *settings_given,
                 *(["--resume"] if resume else []), *flags]  # fmt: skip
    command = torchrun_command(launch, arguments)
    err_console.print(f"Starting torchrun: {where}.", highlight=False, soft_wrap=True, markup=False)
    status, interrupted = run_torchrun(command)
    if interrupted:
        hint = _resume_hint(recipe, [*settings_given, *flags], settings.output_dir)
        err_console.print(hint, highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(INTERRUPTED)
    if status != 0:
        raise LorastackError(f"The training processes under torchrun failed (exit status {status}).",
                             "Rank 0's error is above; fix it and run the same command again (--resume continues "
                             "from the last checkpoint).")


def _quiet() -> None:
    """Ranks other than 0 report nothing but warnings: rank 0 speaks for the run."""
    from transformers.utils import logging as hf_logging

    logging.getLogger("lorastack").setLevel(logging.WARNING)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _resume_hint(recipe: Path | None, arguments: list[str], output_dir: Path) -> str:
    """What an interrupted run says: the command that continues it, as the user gave it, with --resume (or, with no
    checkpoint written yet, the command that starts it again)."""
    from lorastack.finetune.trainer import last_checkpoint  # the trainer module imports torch and transformers

    command = shlex.join(["lorastack", "train", *([str(recipe)] if recipe else []), *arguments])
    checkpoint = last_checkpoint(output_dir)
    if checkpoint is None:
        return f"Interrupted before the first checkpoint (training.save_steps): start again with: {command}"
    return f"Interrupted; {Path(checkpoint).name} is saved. Continue with: {command} --resume"


train.__doc__ = f"{train.__doc__}\n\n{_fields_help()}"


def plan(
    config: Optional[str] = typer.Argument(None, help="A YAML recipe."),
    overrides: Optional[list[str]] = typer.Argument(None, help="KEY=VALUE settings over the recipe."),
    gpu_memory: float = typer.Option(80.0, help="GPU memory in GiB, for the largest batch that fits."),
    gpus: int = typer.Option(1, "--gpus", min=1, help="GPUs the run spreads over: the peak per GPU with DDP and with FSDP."),
) -> None:
    """Predict peak GPU memory of a training config (with a breakdown) and the largest batch that fits."""
    from lorastack.finetune.memory_plan import plan_for  # transformers (the model's config)

    settings = load_train_config(*_split(config, overrides))
    if gpus == 1:
        estimate, largest = plan_for(settings, gpu_memory)
        _plan_table(estimate)
        console.print(f"Largest batch_size that fits {gpu_memory:g} GiB: {largest}")
        return
    plans = {strategy: plan_for(settings, gpu_memory, gpus, strategy) for strategy in ("ddp", "fsdp")}
    one_gpu = plans["ddp"][0].total_bytes / GIB
    chosen, reason = choose_strategy(settings.training.distributed, gpus, True, one_gpu, gpu_memory)
    _plan_table(plans[chosen][0], f"{chosen.upper()} on {gpus} GPUs, per GPU")
    for strategy, (estimate, largest) in plans.items():
        console.print(f"{strategy.upper()} on {gpus} GPUs: {estimate.summary} per GPU; largest batch_size that fits "
                      f"{gpu_memory:g} GiB: {largest}")
    console.print(f"training.distributed {settings.training.distributed}: {chosen.upper()} ({reason}).")
    console.print(global_batch(settings.training.batch_size, settings.training.grad_accum, gpus)[1] + ".")


def _plan_table(estimate, title: str | None = None) -> None:
    table = Table("part", "GiB", "note", title=title)
    for name, gib, note in estimate.rows():
        table.add_row(name, f"{gib:.2f}", note)
    console.print(table)
    console.print(estimate.summary)


def export(
    adapter: str = typer.Argument(..., help="An adapter folder, or a registered NAME / NAME@vN."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged model."),
    merge: bool = typer.Option(True, "--merge/--no-merge", help="Merge the adapter into the base weights (the only mode now)."),
    base_model: Optional[str] = typer.Option(None, help="Base model (default: the one the adapter was trained on)."),
) -> None:
    """Write a merged model: base weights + adapter folded in, servable without LoRA."""
    from lorastack.finetune.export import export_merged  # torch, transformers and peft

    if not merge:
        raise typer.BadParameter("only --merge is supported")
    path = export_merged(adapter, out, base_model)
    console.print(f"Merged model written to [bold]{escape(str(path))}[/].")


data = typer.Typer(help="Make training data.", no_args_is_help=True)


@data.command()
@config_options(SynthConfig, flags={"n_train": ("--train",), "n_eval": ("--eval",)})
def synth(
    config: SynthConfig,
    out_dir: Path = typer.Argument(..., help="Folder for train.jsonl, eval.jsonl, corpus_train/ and corpus_eval/."),
) -> None:
    """Generate tool-use training data (calculator, search over an invented corpus, no tool) and a held-out eval set."""
    from lorastack.finetune.synth import generate  # LangChain (the real tools' schemas and outputs)

    report = generate(out_dir, config)
    console.print(str(report), highlight=False)


def add_commands(app: typer.Typer) -> None:
    app.add_typer(data, name="data")
    app.command()(train)
    app.command()(plan)
    app.command()(export)
