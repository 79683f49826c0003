"""``lorastack train``, ``lorastack plan`` and ``lorastack export``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lorastack.finetune.config import field_docs, load_train_config
from lorastack.finetune.synth.generate import SynthConfig
from lorastack.options import config_options

console = Console()
err_console = Console(stderr=True)

INTERRUPTED = 130
"""Exit status of a run stopped with Ctrl-C (128 + SIGINT), as shells report it."""


def _fields_help() -> str:
    # Escaped: help is rich markup, where "[q_proj, v_proj]" would read as a style tag and vanish.
    rows = "\n\n".join(escape(f"{name} (default {default}): {doc}") for name, default, doc in field_docs())
    return f"Config fields (YAML keys; override any with KEY=VALUE, e.g. lora.r=32):\n\n{rows}"


def _split(config: Path | None, overrides: list[str] | None) -> tuple[Path | None, list[str]]:
    """`lorastack train key=value ...` without a recipe: the first override lands in the config slot."""
    if config is not None and "=" in str(config) and not config.exists():
        return None, [str(config), *(overrides or [])]
    return config, list(overrides or [])


def train(
    config: Optional[Path] = typer.Argument(None, help="A YAML recipe (see finetune/recipes/)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="KEY=VALUE settings over the recipe, e.g. training.max_steps=50."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output_dir from its last checkpoint."),
    register: Optional[str] = typer.Option(None, "--register", help="Register the trained adapter under this name."),
    load: bool = typer.Option(False, "--load", help="Also hot-load it into the running server (needs --register)."),
) -> None:
    """Train a LoRA/QLoRA adapter from a recipe; the adapter and its card land in output_dir/adapter."""
    if load and not register:
        raise typer.BadParameter("--load needs --register NAME")
    recipe, settings_given = _split(config, overrides)
    settings = load_train_config(recipe, settings_given)
    # torch and transformers: only once the config is sound
    from lorastack.finetune.measure import describe_metrics
    from lorastack.finetune.progress import progress_for
    from lorastack.finetune.trainer import train as run

    progress = progress_for(err_console)
    try:
        result = run(settings, resume=resume, callbacks=[progress])
    except KeyboardInterrupt:
        progress.close()
        flags = [*(["--register", register] if register else []), *(["--load"] if load else [])]
        hint = _resume_hint(recipe, [*settings_given, *flags], settings.output_dir)
        err_console.print(hint, highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(INTERRUPTED) from None
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
    config: Optional[Path] = typer.Argument(None, help="A YAML recipe."),
    overrides: Optional[list[str]] = typer.Argument(None, help="KEY=VALUE settings over the recipe."),
    gpu_memory: float = typer.Option(80.0, help="GPU memory in GiB, for the largest batch that fits."),
) -> None:
    """Predict peak GPU memory of a training config (with a breakdown) and the largest batch that fits."""
    from lorastack.finetune.memory_plan import plan_for  # transformers (the model's config)

    settings = load_train_config(*_split(config, overrides))
    estimate, largest = plan_for(settings, gpu_memory)
    table = Table("part", "GiB", "note")
    for name, gib, note in estimate.rows():
        table.add_row(name, f"{gib:.2f}", note)
    console.print(table)
    console.print(estimate.summary)
    console.print(f"Largest batch_size that fits {gpu_memory:g} GiB: {largest}")


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
