"""Text ReAct for endpoints without OpenAI tool calling.

:class:`ReActChatModel` wraps any chat model and makes it look tool-calling to LangChain: the tools are
described in the prompt, the model writes ``Action:`` / ``Action Input:`` or ``Final Answer:``, and the
reply is parsed back into ``AIMessage.tool_calls``. The agent loop (``create_agent``) is then the same
for both modes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from lorastack.agent.template_tags import strip_tags

INSTRUCTIONS = """You can use these tools:
{tools}

To use a tool, reply with exactly:
Thought: what you need to find out
Action: the tool name, one of [{names}]
Action Input: the tool's arguments as a JSON object

You will get the result as "Observation: ...". When you know the answer, reply with:
Final Answer: the answer"""

_FINAL = re.compile(r"Final Answer\s*:\s*(?P<answer>.*)", re.DOTALL | re.IGNORECASE)
_ACTION = re.compile(
    r"Action\s*:\s*(?P<name>[^\n]*?)\s*\n+\s*Action Input\s*:\s*(?P<input>.*?)\s*(?:\nObservation|$)",
    re.DOTALL | re.IGNORECASE,
)
_STOP = ["\nObservation:"]


def _describe(tool: dict) -> str:
    fn = tool["function"]
    params = fn.get("parameters", {}).get("properties", {})
    args = ", ".join(f'"{name}": {spec.get("type", "any")}' for name, spec in params.items())
    return f"- {fn['name']}: {fn.get('description', '').strip()} Arguments: {{{args}}}"


def _render_call(message: AIMessage) -> str:
    text = str(message.content or "").strip()
    if not message.tool_calls:
        return f"Final Answer: {text}" if text and "Final Answer" not in text else text
    call = message.tool_calls[0]
    thought = text if text.startswith("Thought") else f"Thought: {text or 'I will use a tool.'}"
    return f"{thought}\nAction: {call['name']}\nAction Input: {json.dumps(call['args'])}"


class ReActChatModel(BaseChatModel):
    """Prompted tool use (Thought / Action / Observation / Final Answer) around any chat model."""

    inner: BaseChatModel
    tools: list[dict] = []

    @property
    def _llm_type(self) -> str:
        return "react-" + self.inner._llm_type

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ReActChatModel:  # noqa: ARG002 (tool_choice etc.)
        return self.model_copy(update={"tools": [convert_to_openai_tool(t) for t in tools]})

    def prompt(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """The conversation as a plain chat: tool calls become text, observations become user turns."""
        names = ", ".join(t["function"]["name"] for t in self.tools)
        instructions = INSTRUCTIONS.format(tools="\n".join(map(_describe, self.tools)), names=names)
        out: list[BaseMessage] = []
        for message in messages:
            if isinstance(message, SystemMessage):
                out.append(SystemMessage(f"{message.content}\n\n{instructions}"))
            elif isinstance(message, AIMessage):
                out.append(AIMessage(_render_call(message)))
            elif isinstance(message, ToolMessage):
                out.append(HumanMessage(f"Observation: {strip_tags(str(message.content))}"))
            else:
                out.append(message)
        if not out or not isinstance(out[0], SystemMessage):
            out.insert(0, SystemMessage(instructions))
        return out

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self.inner.invoke(self.prompt(messages), stop=[*(stop or []), *_STOP])
        return ChatResult(generations=[ChatGeneration(message=self.parse(str(reply.content)))])

    def parse(self, text: str) -> AIMessage:
        """Turn a ReAct reply into an AIMessage: a tool call, a final answer, or an invalid tool call."""
        action = _ACTION.search(text)
        if action is None:
            final = _FINAL.search(text)
            # A final answer is the user's text: no template markup (an echoed "<tool_response>"). Text without
            # "Final Answer:" is left as it is, so that an unparsed <tool_call> in it is still sent back for a retry.
            return AIMessage(strip_tags(final["answer"]) if final else text.strip())
        name, raw = action["name"].strip().strip("`\"'"), action["input"].strip().strip("`")
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        args = _parse_args(raw, self._single_param(name))
        if args is None:
            return AIMessage(
                text,
                invalid_tool_calls=[
                    {"type": "invalid_tool_call", "id": call_id, "name": name, "args": raw,
                     "error": "Action Input is not a JSON object"},
                ],
            )  # fmt: skip
        return AIMessage(text, tool_calls=[{"type": "tool_call", "id": call_id, "name": name, "args": args}])

    def _single_param(self, name: str) -> str | None:
        for tool in self.tools:
            if tool["function"]["name"] == name:
                params = list(tool["function"].get("parameters", {}).get("properties", {}))
                return params[0] if len(params) == 1 else None
        return None


def _parse_args(raw: str, single_param: str | None) -> dict | None:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    if single_param is not None and raw:
        # Small models often write the bare argument ("Action Input: 2+2"); a one-argument tool can take it.
        return {single_param: value if isinstance(value, str) else raw.strip("\"'")}
    return None
