"""Eval items that test function calling with a client's own functions (not the agent's tools).

An item offers its own OpenAI function schemas (``tools``) and names the call it expects (``expected_call``:
``{"name", "arguments"}``), or ``null`` when none of the functions fits the question. The model is asked once,
as a program calling the API would ask it, and :func:`score_call` compares its first call with the expected one.

    {"question": "Play some jazz.", "kind": "function", "tools": [...],
     "expected_call": {"name": "play_music", "arguments": {"genre": "jazz"}}}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallResult:
    """What the model did with an item's functions: its calls (``{"name", "arguments"}``, arguments a dict,
    or the raw text when it was not a JSON object) and its text."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    answer: str = ""
    seconds: float = 0.0


def _text(value: str) -> str:
    return value.strip().strip("'\"").strip().rstrip(".").casefold()


def same_value(expected: Any, given: Any) -> bool:
    """Argument equality: numbers by value (7 == 7.0, never "7"), strings ignoring case, surrounding space and
    quotes and a final full stop, lists item by item in order, objects key by key; booleans exactly."""
    if isinstance(expected, bool) or isinstance(given, bool):
        return type(expected) is type(given) and expected == given
    if isinstance(expected, (int, float)):
        return isinstance(given, (int, float)) and float(given) == float(expected)
    if isinstance(expected, str):
        return isinstance(given, str) and _text(given) == _text(expected)
    if isinstance(expected, list):
        return isinstance(given, list) and len(given) == len(expected) and all(map(same_value, expected, given))
    if isinstance(expected, dict):
        return isinstance(given, dict) and same_arguments(expected, given, {})
    return expected == given


def same_arguments(expected: dict[str, Any], given: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """Every expected argument given with its value; an argument not expected is allowed only with the value the
    schema declares as its default (``"unit": "celsius"`` where celsius is the default)."""
    for key in expected.keys() | given.keys():
        if key in expected:
            if key not in given or not same_value(expected[key], given[key]):
                return False
        elif key not in defaults or not same_value(defaults[key], given[key]):
            return False
    return True


def schema_defaults(tools: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The declared defaults of function ``name``'s parameters."""
    for tool in tools:
        function = tool.get("function", {})
        if function.get("name") == name:
            properties = function.get("parameters", {}).get("properties", {})
            return {k: p["default"] for k, p in properties.items() if isinstance(p, dict) and "default" in p}
    return {}


def score_call(expected: dict[str, Any] | None, calls: list[dict[str, Any]], tools: list[dict[str, Any]]) -> bool:
    """Whether the model's ``calls`` are right: none when ``expected`` is None; else a first call with the
    expected name and arguments (:func:`same_arguments`)."""
    if expected is None:
        return not calls
    if not calls or calls[0]["name"] != expected["name"] or not isinstance(calls[0]["arguments"], dict):
        return False
    return same_arguments(expected["arguments"], calls[0]["arguments"], schema_defaults(tools, expected["name"]))


def valid_call(call: dict[str, Any], tools: list[dict[str, Any]]) -> bool:
    """A call that names one of the offered functions and passes a JSON object."""
    names = {t.get("function", {}).get("name") for t in tools}
    return call["name"] in names and isinstance(call["arguments"], dict)


def check_item(row: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The ``tools`` and ``expected_call`` of a function-calling eval row, checked; ValueError says what is wrong."""
    tools = row.get("tools")
    if not isinstance(tools, list) or not tools:
        raise ValueError(f'{where}: "tools" must be a non-empty list of function schemas.')
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict) or not function.get("name"):
            raise ValueError(f'{where}: each tool must be {{"type": "function", "function": {{"name", ...}}}}.')
        names.append(function["name"])
    if "expected_call" not in row:
        raise ValueError(f'{where}: a row with "tools" needs "expected_call" (an object, or null for no call).')
    expected = row["expected_call"]
    if expected is not None:
        if not isinstance(expected, dict) or not isinstance(expected.get("arguments"), dict):
            raise ValueError(f'{where}: "expected_call" must be {{"name", "arguments": {{...}}}} or null.')
        if expected.get("name") not in names:
            raise ValueError(f"{where}: expected_call names {expected.get('name')!r}, which is not among the tools.")
    return tools, expected


def ask_functions(
    client: Any,  # openai.OpenAI
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    max_tokens: int,
) -> CallResult:
    """One chat completion with ``tools`` (temperature 0), read back as a :class:`CallResult`."""
    start = time.perf_counter()
    response = client.chat.completions.create(
        model=model, messages=messages, tools=tools, temperature=0.0, max_tokens=max_tokens
    )
    message = response.choices[0].message
    calls = []
    for call in message.tool_calls or []:
        try:
            arguments: Any = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError:
            arguments = call.function.arguments
        calls.append({"name": call.function.name, "arguments": arguments})
    return CallResult(calls, message.content or "", time.perf_counter() - start)
