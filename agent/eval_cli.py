"""``lorastack eval``: the agent's accuracy on a JSONL set of questions with known answers.

    lorastack data synth data/ --eval 50
    lorastack eval data/eval.jsonl --adapter my-adapter --corpus data/corpus_eval --compare BASE --chart acc.png
    lorastack eval agent/evalsets/*.jsonl --corpus agent/evalsets/corpus --compare SmolLM2-135M-Instruct
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lorastack.agent.config import AgentConfig
from lorastack.errors import LorastackError
from lorastack.options import config_options

console = Console()
err = Console(stderr=True)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _table(reports) -> Table:  # list[lorastack.agent.evaluate.EvalReport]
    table = Table(title=f"Agent evaluation ({len(reports[0].results)} items)")
    table.add_column("")
    for report in reports:
        table.add_column(report.model, justify="right")
    kinds = list(dict.fromkeys(k for r in reports for k in r.per_kind()))
    counts = {k: sum(1 for r in reports[0].results if r.item.kind == k) for k in kinds}
    table.add_row("accuracy", *(f"[bold]{_percent(r.accuracy)}[/]" for r in reports))
    for kind in kinds:
        table.add_row(f"  {kind} ({counts[kind]})", *(_percent(r.per_kind().get(kind)) for r in reports))
    table.add_row("valid tool calls", *(f"{_percent(r.valid_tool_calls)} of {r.tool_call_count}" for r in reports))
    table.add_row("mean steps", *(f"{r.mean_steps:.2f}" for r in reports))
    table.add_row("latency mean / median", *(f"{r.mean_seconds:.2f} / {r.median_seconds:.2f} s" for r in reports))
    return table


@config_options(AgentConfig, exclude={"temperature"})
def eval_command(
    config: AgentConfig,
    eval_files: list[Path] = typer.Argument(
        ..., help="JSONL eval sets: one {question, answer, tolerance?, kind?, history?} a line, or a function-calling "
        "item {question, tools, expected_call}. Several files are run as one set."
    ),
    compare: Optional[str] = typer.Option(None, help="A second model or adapter to run on the same items."),
    corpus: Optional[Path] = typer.Option(
        None, help="Folder of documents for the search tool: indexed into a temporary local index for this run."
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report (every item) here."),
    chart: Optional[Path] = typer.Option(None, help="Write a PNG bar chart of accuracy per kind here."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N items of each file."),
    concurrency: int = typer.Option(
        1, min=1, max=64, help="Items asked at once: the server batches them (faster on a GPU; answers can differ "
        "slightly from one at a time, as batched arithmetic does)."
    ),
) -> None:
    """Run the agent over an eval set and report accuracy (overall, per kind), tool-call validity and latency."""
    from lorastack.agent.eval_run import run_eval
    from lorastack.agent.evaluate import load_items, reports_json, write_chart  # LangChain loads only for an eval

    if config.adapter and config.model:
        raise LorastackError("--adapter and --model name the same thing.", "Give one of them.")
    given = config.model_fields_set  # the options given on the command line
    if corpus and ("index" in given or ("search" in given and config.search == "web")):
        raise LorastackError("--corpus builds its own local index.", "Drop --index / --search web, or --corpus.")
    items = [item for path in eval_files for item in load_items(path, limit)]
    models = [None, compare] if compare else [None]
    reports = run_eval(items, config, models, corpus, on_result=_tick(len(items)), concurrency=concurrency)
    console.print(_table(reports))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(reports_json(reports), indent=2, ensure_ascii=False) + "\n")
        console.print(f"Report: {json_out}")
    if chart:
        console.print(f"Chart: {write_chart(reports, chart)}")


def _tick(total: int):
    def tick(model: str, done: int, outcome) -> None:
        mark = "[green]✓[/]" if outcome.correct else "[red]✗[/]"
        err.print(f"{escape(model)} {done}/{total} {mark} {escape(outcome.item.question[:70])}", highlight=False)

    return tick


def add_commands(app: typer.Typer) -> None:
    app.command(name="eval")(eval_command)
