"""Row formats -> one normalized conversation, with every malformed row refused by location and reason.

The normalized form is what chat templates (and vLLM, when it serves) take: OpenAI-style messages

    {"role": "system" | "user" | "assistant" | "tool", "content": str,
     "tool_calls": [{"type": "function", "function": {"name": str, "arguments": dict}, "id"?: str}],  # assistant
     "tool_call_id"?: str, "name"?: str}                                                              # tool

plus an optional row-level ``tools`` list of OpenAI function schemas. Tool-call arguments are parsed to
dicts because vLLM parses them so before it renders a request's history (vllm/renderers/chat_utils.py,
0.32): training then renders calls byte for byte as serving does.

Formats (``format: auto`` picks one from the first row's keys):

- messages (OpenAI): ``{"messages": [...], "tools"?: [...]}``; arguments a JSON string or an object.
- sharegpt: ``{"conversations": [{"from": ..., "value": ...}], "system"?: str, "tools"?: list | JSON str}``
  with ``from`` one of :data:`SHAREGPT_ROLES`; a ``function_call`` value is ``{"name", "arguments"}``
  (or a list of them) as JSON, and becomes an assistant message with ``tool_calls``. Entries written
  ``{"role", "content"}`` are read the same way.
- alpaca: ``{"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}``; the
  user turn is the instruction, then a blank line and the input when there is one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from lorastack.finetune.data.errors import DataError

Format = Literal["messages", "sharegpt", "alpaca"]
ROLES = ("system", "user", "assistant", "tool")

SHAREGPT_ROLES: dict[str, str] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "tool_call",  # an assistant turn that calls tools (LLaMA-Factory)
    "observation": "tool",  # a tool's result (LLaMA-Factory)
    "tool": "tool",
}
"""ShareGPT ``from`` names and the role each becomes. Other names are refused, not guessed."""

_FORMAT_KEYS = "messages (OpenAI), conversations (ShareGPT) or instruction + output (Alpaca)"


@dataclass(frozen=True)
class Conversation:
    """One training example: messages, the tools it may call, and where it came from (for errors)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    where: str = ""

    @property
    def tool_calls(self) -> int:
        return sum(len(m.get("tool_calls", ())) for m in self.messages)

    @property
    def assistant_turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)

    def with_system(self, prompt: str | None) -> Conversation:
        """This conversation with ``prompt`` as its system message, unless it has one already."""
        if prompt is None or self.messages[0]["role"] == "system":
            return self
        return Conversation([{"role": "system", "content": prompt}, *self.messages], self.tools, self.where)


def detect_format(row: Any, where: str) -> Format:
    """The format a row is written in, from its keys."""
    if not isinstance(row, dict):
        raise DataError(
            f"{where}: the row is a {_kind(row)}, not a JSON object.", f"Each row must hold {_FORMAT_KEYS}."
        )
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    keys = ", ".join(sorted(row)) or "none"
    raise DataError(
        f"{where}: cannot tell the data format from the row's keys ({keys}).",
        f"Rows need {_FORMAT_KEYS}; or set data.format.",
    )


def to_conversation(row: Any, fmt: Format, where: str) -> Conversation:
    """Parse and check one row; raise :class:`DataError` naming ``where`` and the problem."""
    if not isinstance(row, dict):
        raise DataError(
            f"{where}: the row is a {_kind(row)}, not a JSON object.", f"Each row must hold {_FORMAT_KEYS}."
        )
    if fmt == "messages":
        messages, tools = _from_messages(row, where), row.get("tools")
    elif fmt == "sharegpt":
        messages, tools = _from_sharegpt(row, where), row.get("tools")
    else:
        messages, tools = _from_alpaca(row, where), None
    return Conversation(_checked(messages, where), _tools(tools, where), where)


# --- formats -----------------------------------------------------------------------------------------------


def _require(row: dict, key: str, fmt: str, where: str) -> Any:
    if row.get(key) is None:
        keys = ", ".join(sorted(row)) or "none"
        raise DataError(f"{where}: missing key {key!r} (the row has {keys}).", f"Every {fmt} row needs {key!r}.")
    return row[key]


def _from_messages(row: dict, where: str) -> list[dict]:
    messages = _require(row, "messages", "messages-format", where)
    if not isinstance(messages, list):
        raise DataError(f"{where}: 'messages' is a {_kind(messages)}, not a list.", "Give a list of message objects.")
    out = []
    for i, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            raise DataError(f"{where}: message {i} is a {_kind(message)}, not an object.", 'Write {"role", "content"}.')
        out.append(dict(message))
    return out


def _from_sharegpt(row: dict, where: str) -> list[dict]:
    turns = _require(row, "conversations", "ShareGPT", where)
    if not isinstance(turns, list):
        raise DataError(f"{where}: 'conversations' is a {_kind(turns)}, not a list.", "Give a list of turns.")
    out: list[dict] = []
    system = row.get("system")
    if system is not None:
        out.append({"role": "system", "content": system})
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            raise DataError(f"{where}: turn {i} is a {_kind(turn)}, not an object.", 'Write {"from", "value"}.')
        name = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        role = SHAREGPT_ROLES.get(name) if isinstance(name, str) else None
        if role is None:
            raise DataError(
                f"{where}: turn {i} is from {name!r}.", f"Use one of {', '.join(SHAREGPT_ROLES)} (or set data.format)."
            )
        if role == "tool_call":
            out.append({"role": "assistant", "content": "", "tool_calls": _sharegpt_calls(value, i, where)})
        else:
            out.append({"role": role, "content": value})
    return out


def _sharegpt_calls(value: Any, turn: int, where: str) -> list[dict]:
    try:
        calls = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{where}: turn {turn} (function_call) is not valid JSON ({exc.msg} at char {exc.pos}).",
            'Write {"name": ..., "arguments": {...}} as JSON.',
        ) from None
    calls = calls if isinstance(calls, list) else [calls]
    return [{"type": "function", "function": c} if isinstance(c, dict) else c for c in calls]


def _from_alpaca(row: dict, where: str) -> list[dict]:
    instruction = _require(row, "instruction", "Alpaca", where)
    output = _require(row, "output", "Alpaca", where)
    for key, value in (("instruction", instruction), ("output", output), ("input", row.get("input"))):
        if value is not None and not isinstance(value, str):
            raise DataError(f"{where}: {key!r} is a {_kind(value)}, not a string.", "Alpaca fields are text.")
    out: list[dict] = []
    if row.get("system") is not None:
        out.append({"role": "system", "content": row["system"]})
    history = row.get("history") or []
    if not isinstance(history, list) or not all(isinstance(p, list) and len(p) == 2 for p in history):
        raise DataError(f"{where}: 'history' is not a list of [user, assistant] pairs.", "Fix or drop it.")
    for user, assistant in history:
        out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    query = f"{instruction}\n\n{row['input']}" if row.get("input") else instruction
    return [*out, {"role": "user", "content": query}, {"role": "assistant", "content": output}]


# --- checks shared by all formats ---------------------------------------------------------------------------


def _checked(messages: list[dict], where: str) -> list[dict]:
    if not messages:
        raise DataError(f"{where}: the conversation is empty.", "Give at least a user and an assistant message.")
    out: list[dict] = []
    call_ids: set[str] | None = None  # ids of the calls the tool messages that follow may answer
    for i, message in enumerate(messages, 1):
        role = message.get("role")
        if role not in ROLES:
            shown = repr(role) if role is not None else "no role"
            raise DataError(f"{where}: message {i} has role {shown}.", "Use system, user, assistant or tool.")
        if role == "system" and i != 1:
            raise DataError(f"{where}: message {i} is a system message after the start.", "Put it first.")
        if role != "system" and role != "user" and all(m["role"] == "system" for m in out):
            raise DataError(
                f"{where}: message {i} is from the {role}, but the conversation must start with the user.",
                "Begin with a user message (after an optional system message).",
            )
        clean: dict[str, Any] = {"role": role, "content": _content(message, i, role, where)}
        if role == "assistant":
            calls = message.get("tool_calls")
            if calls:
                clean["tool_calls"] = [_tool_call(c, i, j, where) for j, c in enumerate(_as_list(calls, i, where), 1)]
                call_ids = {c["id"] for c in clean["tool_calls"] if "id" in c}
            elif not clean["content"]:
                raise DataError(f"{where}: message {i} (assistant) has no content and no tool calls.", "Remove it.")
            else:
                call_ids = None
        elif role == "tool":
            if call_ids is None:
                raise DataError(
                    f"{where}: message {i} is a tool result, but no assistant tool call comes before it.",
                    "Put the assistant message with tool_calls first, or make this a user message.",
                )
            for key in ("tool_call_id", "name"):
                if message.get(key) is not None:
                    clean[key] = str(message[key])
            if call_ids and clean.get("tool_call_id") is not None and clean["tool_call_id"] not in call_ids:
                raise DataError(
                    f"{where}: message {i} answers tool_call_id {clean['tool_call_id']!r}, "
                    "which no preceding call has.",
                    f"Use one of {', '.join(sorted(call_ids))}.",
                )
        else:
            call_ids = None
        out.append(clean)
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{where}: the conversation has no assistant message.", "There is nothing to learn from it.")
    return out


def _content(message: dict, i: int, role: str, where: str) -> str:
    content = message.get("content")
    if content is None:
        if role == "assistant" and message.get("tool_calls"):
            return ""  # OpenAI writes content null beside tool calls
        raise DataError(f"{where}: message {i} ({role}) has no content.", "Give its text as 'content'.")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: text only
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                kind = part.get("type") if isinstance(part, dict) else _kind(part)
                raise DataError(f"{where}: message {i} ({role}) has a {kind} content part.", "Only text is supported.")
            texts.append(part["text"])
        return "".join(texts)
    hint = "Encode tool results as a string (e.g. JSON text)." if role == "tool" else "Give the text as a string."
    raise DataError(f"{where}: message {i} ({role}) content is a {_kind(content)}, not a string.", hint)


def _as_list(calls: Any, i: int, where: str) -> list:
    if not isinstance(calls, list):
        raise DataError(f"{where}: message {i} 'tool_calls' is a {_kind(calls)}, not a list.", "Give a list.")
    return calls


def _tool_call(call: Any, i: int, j: int, where: str) -> dict:
    at = f"{where}: message {i} tool call {j}"
    if not isinstance(call, dict):
        raise DataError(f"{at} is a {_kind(call)}, not an object.", 'Write {"type": "function", "function": {...}}.')
    if call.get("type") not in (None, "function"):
        raise DataError(f"{at} has type {call['type']!r}.", "Only function calls are supported.")
    fn = call.get("function", call)  # also the flat {"name", "arguments"} form
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise DataError(f"{at} has no function name.", 'Write {"function": {"name": ..., "arguments": ...}}.')
    arguments = fn.get("arguments") or {}  # vLLM reads none or "" as {} too
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{at} ({name}): arguments are not valid JSON ({exc.msg} at char {exc.pos}).",
                "Give a JSON object, or a string holding one.",
            ) from None
    if not isinstance(arguments, dict):
        raise DataError(
            f"{at} ({name}): arguments are a {_kind(arguments)}, not a JSON object.", "Wrap them in an object."
        )
    out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call.get("id") is not None:
        out["id"] = str(call["id"])
    return out


def _tools(tools: Any, where: str) -> list[dict] | None:
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):  # LLaMA-Factory writes the list as JSON text
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where}: 'tools' is text but not valid JSON ({exc.msg}).", "Give a list of schemas."
            ) from None
    if not isinstance(tools, list):
        raise DataError(f"{where}: 'tools' is a {_kind(tools)}, not a list.", "Give a list of function schemas.")
    out = []
    for k, tool in enumerate(tools, 1):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else tool
        if not (isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]):
            raise DataError(
                f"{where}: tool {k} is not a function schema.",
                'Write {"type": "function", "function": {"name": ..., "parameters": {...}}}.',
            )
        out.append({"type": "function", "function": fn})
    return out or None


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )
