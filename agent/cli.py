"""``lorastack ask`` and ``lorastack chat``: the agent from the command line.

With no server running, both start a temporary one on the embedded default model (about half a minute
on a CPU) and stop it when they end; run ``lorastack serve`` in another terminal to keep one warm.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape

from lorastack.agent.config import AgentConfig
from lorastack.options import config_options

console = Console()
err = Console(stderr=True)


def _print_step(step) -> None:  # lorastack.agent.runner.Step
    if step.kind == "tool_call":
        mark = "" if step.ok else " [red](malformed)[/]"
        console.print(f"[cyan]→ {step.tool or '?'}[/]({step.text}){mark}", highlight=False)
    elif step.kind == "observation":
        style = "dim" if step.ok else "red"
        text = step.text if len(step.text) <= 400 else step.text[:400] + " …"
        console.print("  " + text, style=style, highlight=False, markup=False)
    elif step.kind == "retry":
        console.print(f"[yellow]↻ {step.text}[/]")


def _report(question: str, model: str, result) -> dict:  # lorastack.agent.runner.AgentResult
    return {
        "question": question,
        "answer": result.answer,
        "model": model,
        "steps": [{"kind": s.kind, "tool": s.tool, "text": s.text, "ok": s.ok} for s in result.steps],
        "stopped": result.stopped,
        "model_calls": result.model_calls,
        "seconds": round(result.seconds, 3),
        "model_seconds": round(result.model_seconds, 3),
        "tool_seconds": round(result.tool_seconds, 3),
    }


@config_options(AgentConfig, exclude={"temperature"})
def ask(
    config: AgentConfig,
    question: str = typer.Argument(..., help="The question."),
    steps: bool = typer.Option(True, "--steps/--no-steps", help="Show tool calls and observations as they happen."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (answer, steps, timings) for scripts."),
) -> None:
    """Ask the agent a question; it may use the calculator and search before it answers."""
    from lorastack.agent.session import ask as ask_agent
    from lorastack.agent.session import build_tools, open_endpoint  # LangChain loads only when the agent runs

    with open_endpoint(config) as endpoint:
        if not as_json:
            err.print(f"Asking {endpoint.describe}", style="dim", highlight=False, markup=False)
        tools = build_tools(config)
        on_step = _print_step if steps and not as_json else None
        result = ask_agent(question, endpoint, config, tools, on_step=on_step)
    if as_json:
        typer.echo(json.dumps(_report(question, endpoint.model, result)))
        return
    console.print(result.answer, highlight=False, markup=False)


@config_options(
    AgentConfig, only=("base_url", "api_key", "model", "adapter", "tool_mode", "max_steps", "search", "index")
)
def chat(config: AgentConfig) -> None:
    """Talk with the agent; it remembers the conversation. /reset forgets it, /exit (or Ctrl-D) ends."""
    from lorastack.agent.session import ask as ask_agent
    from lorastack.agent.session import build_tools, open_endpoint  # LangChain loads only when the agent runs

    with open_endpoint(config) as endpoint:
        console.print(f"Chatting with [bold]{escape(endpoint.describe)}[/]. /reset forgets, /exit ends.")
        tools = build_tools(config)
        history: list = []
        while True:
            try:
                question = console.input("[bold green]> [/]").strip()
            except (EOFError, KeyboardInterrupt):
                console.print()
                break
            if question in ("/exit", "/quit"):
                break
            if question == "/reset":
                history = []
                console.print("(forgotten)", style="dim")
                continue
            if not question:
                continue
            result = ask_agent(question, endpoint, config, tools, history=history, on_step=_print_step)
            history = result.messages
            console.print(result.answer, highlight=False, markup=False)


def add_commands(app: typer.Typer) -> None:
    app.command()(ask)
    app.command()(chat)
