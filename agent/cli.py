"""``lorastack ask``: a question to the served model.

TODO(agent issue): this asks the model directly; the LangChain agent with calculator and search tools
replaces it.
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from serve.server import running_server

console = Console()


def ask(
    question: str = typer.Argument(..., help="The question."),
    adapter: Optional[str] = typer.Option(None, help="Adapter to answer with (its registered name); default: base."),
    max_tokens: int = typer.Option(256, help="Longest answer, in tokens."),
) -> None:
    """Ask the served model a question. Starts a temporary server if none is running."""
    from openai import OpenAI

    with running_server(progress=lambda msg: console.print(msg, style="dim")) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        stream = client.chat.completions.create(
            model=adapter or server.base_name,
            messages=[{"role": "user", "content": question}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                console.print(chunk.choices[0].delta.content, end="", highlight=False, markup=False)
        console.print()


def add_commands(app: typer.Typer) -> None:
    app.command()(ask)
