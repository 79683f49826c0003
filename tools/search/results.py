"""A search result, and the compact text an LLM reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_OBSERVATION_CHARS = 1500
"""Longest tool observation: a small model's context is short, and long observations drown the question."""


@dataclass(frozen=True)
class SearchResult:
    title: str
    snippet: str
    source: str
    """A URL (web) or the file's path relative to its indexed folder (local)."""
    path: Path | None = None
    """The file itself (local results only)."""
    score: float | None = None


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 1)]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.") + "…"


def format_results(results: list[SearchResult], limit: int = MAX_OBSERVATION_CHARS) -> str:
    """Numbered results (title, snippet, source), at most ``limit`` characters in all."""
    lines = [
        (f"{i}. {shorten(r.title, 100)}", f"   source: {shorten(r.source, 150)}") for i, r in enumerate(results, 1)
    ]
    # What the titles and sources leave is shared equally among the snippets (3 newlines + indent per result).
    room = (limit - sum(len(title) + len(source) + 6 for title, source in lines)) // max(len(results), 1)
    blocks = [
        f"{title}\n   {shorten(r.snippet, max(room, 40))}\n{source}" for (title, source), r in zip(lines, results)
    ]
    return "\n".join(blocks)[:limit]
