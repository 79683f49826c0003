"""The agent's search tool: the web (DuckDuckGo via ddgs) or a local BM25 index of the user's documents.

    from lorastack.tools.search import SearchConfig, make_search_tool, search
    tool = make_search_tool(SearchConfig(backend="local"))   # a LangChain tool named "search"
    results = search("capital of Australia", SearchConfig())  # list[SearchResult]

Modules: ``config`` (SearchConfig), ``web`` (DuckDuckGo, retries), ``cache`` (web result cache),
``documents`` (reading and chunking files), ``local_index`` (the BM25 index), ``results`` (SearchResult and
the text an LLM reads), ``tool`` (search() and the LangChain tool), ``errors``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are imported on first use, so that `lorastack --help` does not pay for LangChain and bm25s.
_EXPORTS = {
    "SearchConfig": "config",
    "IndexMissing": "errors",
    "SearchUnavailable": "errors",
    "IndexReport": "local_index",
    "LocalIndex": "local_index",
    "SearchResult": "results",
    "format_results": "results",
    "make_search_tool": "tool",
    "resolve_backend": "tool",
    "search": "tool",
    "web_search": "web",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
