"""Command-line options shared by ``ask``, ``chat`` and ``eval``: one per AgentConfig field, its docstring
as the help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lorastack.agent.config import AgentConfig


def _doc(field: str) -> str:
    return AgentConfig.model_fields[field].description or ""


Adapter = Annotated[Optional[str], typer.Option(help=_doc("adapter"))]
BaseUrl = Annotated[Optional[str], typer.Option(help=_doc("base_url"))]
ApiKey = Annotated[Optional[str], typer.Option(help=_doc("api_key"))]
Model = Annotated[Optional[str], typer.Option(help=_doc("model"))]
ToolMode = Annotated[Optional[str], typer.Option(help=_doc("tool_mode"))]
MaxSteps = Annotated[Optional[int], typer.Option(help=_doc("max_steps"))]
Timeout = Annotated[Optional[float], typer.Option(help=_doc("timeout"))]
MaxTokens = Annotated[Optional[int], typer.Option(help=_doc("max_tokens"))]
Search = Annotated[Optional[str], typer.Option(help=_doc("search"))]
Index = Annotated[Optional[Path], typer.Option(help=_doc("index"))]
