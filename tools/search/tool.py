"""The agent's ``search`` tool: one LangChain tool over the web or the user's local index."""

from __future__ import annotations

import logging

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from lorastack.errors import LorastackError
from lorastack.tools.search.config import SearchConfig
from lorastack.tools.search.local_index import LocalIndex
from lorastack.tools.search.results import SearchResult, format_results
from lorastack.tools.search.web import web_search

logger = logging.getLogger(__name__)

DESCRIPTIONS = {
    "web": (
        "Search the web (DuckDuckGo) for facts you do not know: people, places, events, definitions. "
        "Input: a short keyword query. Returns numbered results with a title, a snippet and a source URL."
    ),
    "local": (
        "Search the user's own documents (their notes and files on this computer). Use it for questions "
        "about their projects, notes or files. Input: a short keyword query. Returns numbered passages with "
        "a title, a snippet and the file they come from."
    ),
}
_NOTHING = {
    "web": "No web results for {query!r}. Try other or fewer keywords.",
    "local": "Nothing in the user's documents matches {query!r}. Try other keywords.",
}


class SearchInput(BaseModel):
    query: str = Field(description="A few keywords to search for, e.g. 'capital of Australia'.")


def resolve_backend(config: SearchConfig) -> SearchConfig:
    """``config`` with ``auto`` decided: local when the index at ``config.index_path`` holds documents, else web.
    The choice is logged at INFO, so decide once (per tool or command), not per query."""
    if config.backend != "auto":
        return config
    if LocalIndex(config.index_path).has_documents():
        logger.info("Searching the local index at %s (--search auto: it holds documents).", config.index_path)
        return config.model_copy(update={"backend": "local"})
    logger.info("Searching the web (--search auto: no local index with documents at %s).", config.index_path)
    return config.model_copy(update={"backend": "web"})


def search(query: str, config: SearchConfig, index: LocalIndex | None = None) -> list[SearchResult]:
    """Search with ``config.backend`` (``auto`` decided by :func:`resolve_backend`); ``index`` re-uses a loaded
    local index across calls.

    Raises :class:`LorastackError` subclasses: ``SearchUnavailable`` (web), ``IndexMissing`` (local).
    """
    if not query.strip():
        raise LorastackError("The search query is empty.", "Give a few keywords.")
    config = resolve_backend(config)
    if config.backend == "web":
        return web_search(query, config)
    return (index or LocalIndex(config.index_path)).search(query, config.max_results)


def make_search_tool(config: SearchConfig) -> BaseTool:
    """The ``search`` tool for an agent. Failures come back as the observation text, never as a crash.
    ``auto`` is decided here, once: the tool's description says which backend it searches."""
    config = resolve_backend(config)
    index = LocalIndex(config.index_path) if config.backend == "local" else None

    def run(query: str) -> str:
        try:
            results = search(query, config, index)
        except LorastackError as exc:
            raise ToolException(str(exc)) from exc
        if not results:
            return _NOTHING[config.backend].format(query=query)
        return format_results(results)

    return StructuredTool.from_function(
        func=run,
        name="search",
        description=DESCRIPTIONS[config.backend],
        args_schema=SearchInput,
        handle_tool_error=True,
    )
