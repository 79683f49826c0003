"""The ``lorastack`` command: one entry point, a sub-command group per room.

User mistakes (:class:`LorastackError`, invalid options) print one line on stderr and exit 1.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from lorastack import __version__
from lorastack.errors import LorastackError, validation_message
from lorastack.evaluation import Endpoint, EvalRequirement
from lorastack.report import show_progress

if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
    # Piped or captured output is laid out for 80 columns by rich, which cuts long option names and table cells
    # short ("--tensor-parallel-si…", "tools…"); a file has no width to respect. Set before any console exists.
    os.environ["COLUMNS"] = "160"

app = typer.Typer(
    name="lorastack",
    help="Fine-tune, serve and use LoRA adapters on one base model, behind an OpenAI-compatible API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lorastack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what lorastack does (to stderr)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # The level goes on the handler too: some libraries (bm25s) set their own loggers to DEBUG.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    # The hub client logs each retry twice (its own handler and ours); lorastack reports the failure itself.
    # It reads its level from the environment when first imported, so both are set.
    os.environ.setdefault("HF_HUB_VERBOSITY", "info" if verbose else "error")
    logging.getLogger("huggingface_hub").setLevel(logging.INFO if verbose else logging.ERROR)
    # bitsandbytes warns on every import that an optional CPU kernel package is missing; nothing to act on.
    logging.getLogger("bitsandbytes").setLevel(logging.INFO if verbose else logging.ERROR)
    show_progress(verbose)  # lorastack's own progress lines (library code logs, never prints)


def _register() -> None:
    # Each room adds its own commands; imported here so that `lorastack --help` stays one place.
    from lorastack.agent.cli import add_commands as add_agent_commands
    from lorastack.agent.eval_cli import add_commands as add_eval_commands
    from lorastack.finetune.cli import add_commands as add_finetune_commands
    from lorastack.serve.cli import add_commands as add_serve_commands
    from lorastack.serve.jobs.cli import add_commands as add_jobs_commands
    from lorastack.serve.keys_cli import add_commands as add_keys_commands
    from lorastack.tools.cli import add_commands as add_tools_commands

    add_finetune_commands(app)
    add_serve_commands(app, evaluator=_agent_evaluator, data_check=_data_check)
    add_jobs_commands(app)
    add_keys_commands(app)
    add_agent_commands(app)
    add_eval_commands(app)
    add_tools_commands(app)


def _agent_evaluator(requirement: EvalRequirement, endpoint: Endpoint, model: str) -> float:
    """The agent's eval, handed to the server for gated promotions (this root wires rooms; serving does not
    import the agent). Imported when first called: LangChain loads only when an eval runs."""
    from lorastack.agent.eval_run import evaluate_model  # LangChain: only once an eval runs

    return evaluate_model(requirement, endpoint, model)


def _data_check(path: Path) -> str:
    """lorastack train's own check of a training data file, handed to the server for uploaded files (serving does
    not import the fine-tuning room). Raises its DataError naming the file and line of the first bad row."""
    from lorastack.finetune.data import DataConfig, validate  # the data package imports torch: only when checking

    return str(validate(DataConfig(path=path)))


_register()


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except LorastackError as exc:
        _error(str(exc))
        sys.exit(exc.exit_code)
    except ValidationError as exc:
        _error("; ".join(validation_message(e) for e in exc.errors()))
        sys.exit(2)


def _error(message: str) -> None:
    """One line on stderr, never wrapped, never read as markup."""
    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True, highlight=False)


if __name__ == "__main__":
    main()
