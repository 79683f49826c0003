"""The chat template's markup (``<tool_call>``, ``<tool_response>``, ``<|im_end|>`` ...), kept out of what the user
reads and out of what a tool hands the model.

A small model echoes the template around a tool's result: offline, an answer came out as
``<tool_response>\\nWeb search is unavailable ...``. And a tool's text (a web snippet, a document) that carried the
markup could close the template's block around it and open a tool call of its own. So the agent strips it from
final answers and from tool observations; the model's own unparsed ``<tool_call>`` text is caught before that (the
runner sends it back for a retry).
"""

from __future__ import annotations

import re

_TAGS = re.compile(
    r"</?\s*(?:tool_call|tool_response|tools)\s*>|<\|im_start\|>(?:system|user|assistant|tool)?|<\|[a-z_]+\|>",
    re.IGNORECASE,
)
"""Hermes tool-call blocks and ChatML's special tokens, as the templates in lorastack/templates write them."""


def has_tags(text: str) -> bool:
    return _TAGS.search(text) is not None


def strip_tags(text: str) -> str:
    """``text`` without template markup, surrounding whitespace trimmed: "<tool_response>\\nX\\n</tool_response>"
    -> "X"."""
    return _TAGS.sub("", text).strip()
