"""``lorastack index`` and ``lorastack search``: build the local search index, and search by hand."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from lorastack.options import config_options
from lorastack.tools.search.config import SearchConfig

console = Console()
_INDEX = {"index_dir": ("--index",)}


@config_options(SearchConfig, only=("index_dir",), flags=_INDEX)
def index(
    config: SearchConfig,
    folder: Path = typer.Argument(..., help="Folder of documents (.txt, .md, .rst, .html), read recursively."),
    remove: bool = typer.Option(False, "--remove", help="Drop FOLDER's documents from the index instead."),
) -> None:
    """Index a folder of documents for local search. A re-run reads only new and changed files."""
    from lorastack.tools.search.local_index import LocalIndex  # bm25s loads only to index

    local = LocalIndex(config.index_path)
    if remove:
        report = local.remove_folder(folder)
        _say(f"Removed {report.folder} from the index at {report.index}: {report.removed} files left it, "
             f"{report.total_chunks} chunks remain.")  # fmt: skip
        return
    report = local.update(folder)
    skipped = f", {report.skipped} skipped" if report.skipped else ""
    _say(
        f"Indexed {report.folder} into {report.index}: {report.added} added, {report.updated} updated, "
        f"{report.removed} removed, {report.unchanged} unchanged{skipped}; {report.chunks} chunks "
        f"({report.total_chunks} in the index)."
    )
    if report.chunks == 0:
        _say("No text found there: the index reads .txt, .md, .markdown, .rst, .html and .htm files.")
    else:
        _say('Search it with: lorastack search "QUERY" --backend local')


@config_options(
    SearchConfig, only=("backend", "index_dir", "max_results", "timeout"),
    flags={**_INDEX, "max_results": ("-n", "--max-results")},
)  # fmt: skip
def search(
    config: SearchConfig,
    query: str = typer.Argument(..., help="What to search for: a few keywords."),
) -> None:
    """Search the web or your local index, as the agent's search tool does."""
    from lorastack.tools.search.tool import search as run_search  # LangChain, bm25s and ddgs load only to search

    results = run_search(query, config)
    if not results:
        _say(f"No results for {query!r}.")
    for i, result in enumerate(results, 1):
        console.print(f"{i}. {result.title}", style="bold", markup=False, highlight=False)
        _say(f"   {result.snippet}")
        console.print(f"   {result.path or result.source}", style="dim", markup=False, highlight=False)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def add_commands(app: typer.Typer) -> None:
    app.command()(index)
    app.command()(search)
