"""Running the agent: LangChain's ``create_agent`` loop with limits, repair of malformed tool calls, and
a record of every step with the time spent in the model and in the tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, hook_config
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool

from lorastack.agent.prompts import MALFORMED_TOOL_CALL, SYSTEM_PROMPT
from lorastack.agent.template_tags import has_tags, strip_tags

StepKind = Literal["tool_call", "observation", "answer", "retry"]


@dataclass(frozen=True)
class Step:
    kind: StepKind
    text: str
    tool: str | None = None
    ok: bool = True
    """For tool calls: the call named a known tool with valid arguments. For observations: no tool error."""


@dataclass
class AgentResult:
    answer: str
    steps: list[Step] = field(default_factory=list)
    messages: list[BaseMessage] = field(default_factory=list)
    """The whole conversation after this turn (history for the next question)."""
    stopped: Literal["steps", "time"] | None = None
    model_calls: int = 0
    model_seconds: float = 0.0
    tool_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def tool_calls(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "tool_call"]


class LimitsMiddleware(AgentMiddleware):
    """Ends the run before a model call that would exceed ``max_steps`` model calls or the deadline."""

    def __init__(self, max_steps: int, deadline: float) -> None:
        super().__init__()
        self.max_steps, self.deadline = max_steps, deadline
        self.calls = 0
        self.stopped: Literal["steps", "time"] | None = None

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        if self.calls >= self.max_steps:
            self.stopped = "steps"
        elif time.monotonic() >= self.deadline:
            self.stopped = "time"
        else:
            self.calls += 1
            return None
        what = f"{self.max_steps} model calls" if self.stopped == "steps" else "the time limit"
        return {"jump_to": "end", "messages": [AIMessage(f"(Stopped: reached {what} before a final answer.)")]}


class MalformedToolCallMiddleware(AgentMiddleware):
    """Sends the model back to try again when it wrote a tool call nobody could parse.

    Two shapes: the endpoint's parser gave up and left ``<tool_call>`` text in the content, or the
    client could not parse the arguments (``invalid_tool_calls``; LangChain answers those with an error
    ToolMessage on the next model call). Either way the model gets the error and another step.
    """

    @hook_config(can_jump_to=["model"])
    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        last = state["messages"][-1]
        if not isinstance(last, AIMessage) or last.tool_calls:
            return None
        if last.invalid_tool_calls:
            return {"jump_to": "model"}
        if "<tool_call>" in str(last.content):
            return {"jump_to": "model", "messages": [HumanMessage(MALFORMED_TOOL_CALL)]}
        return None


class CleanObservationsMiddleware(AgentMiddleware):
    """Strips template markup (:mod:`~lorastack.agent.template_tags`) from what a tool returns, errors included,
    before the model reads it: a tool's text cannot close the template's ``<tool_response>`` block or open a
    ``<tool_call>``, and the model has less markup to echo into its answer."""

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        result = handler(request)
        if isinstance(result, ToolMessage) and isinstance(result.content, str) and has_tags(result.content):
            return result.model_copy(update={"content": strip_tags(result.content)})
        return result


def run_agent(
    question: str,
    llm: BaseChatModel,
    tools: Sequence[BaseTool],
    *,
    history: Sequence[BaseMessage] = (),
    max_steps: int = 6,
    timeout: float = 300,
    system_prompt: str = SYSTEM_PROMPT,
    on_step: Callable[[Step], None] | None = None,
) -> AgentResult:
    """Answer ``question`` with the tools, at most ``max_steps`` model calls and ``timeout`` seconds."""
    started = time.monotonic()
    limits = LimitsMiddleware(max_steps, started + timeout)
    agent = create_agent(
        llm, list(tools), system_prompt=system_prompt,
        middleware=[limits, MalformedToolCallMiddleware(), CleanObservationsMiddleware()],
    )  # fmt: skip
    known = {t.name for t in tools}
    result = AgentResult(answer="")
    messages = [*history, HumanMessage(question)]

    def emit(step: Step) -> None:
        result.steps.append(step)
        if on_step:
            on_step(step)

    last = time.monotonic()
    stream = agent.stream({"messages": messages}, {"recursion_limit": 4 * max_steps + 10}, stream_mode="updates")
    for update in stream:
        now = time.monotonic()
        elapsed, last = now - last, now
        for node, payload in update.items():
            new = list((payload or {}).get("messages", []))
            messages += new
            if node == "model":
                result.model_seconds += elapsed
                for message in new:
                    _model_steps(message, known, emit)
            elif node == "tools":
                result.tool_seconds += elapsed
                for message in new:
                    if isinstance(message, ToolMessage):
                        emit(Step("observation", str(message.content), message.name, message.status != "error"))
            elif any(isinstance(m, HumanMessage) for m in new):
                emit(Step("retry", "The tool call was malformed; asking the model again."))
    result.messages = messages
    result.model_calls = limits.calls
    result.stopped = limits.stopped
    result.seconds = time.monotonic() - started
    final = next((m for m in reversed(messages) if isinstance(m, AIMessage) and not m.tool_calls), None)
    # Never template markup in an answer: a small model echoes "<tool_response>" around a tool's error.
    result.answer = strip_tags(str(final.content)) if final is not None else ""
    return result


def _model_steps(message: BaseMessage, known: set[str], emit: Callable[[Step], None]) -> None:
    if not isinstance(message, AIMessage):
        return
    for call in message.tool_calls:
        emit(Step("tool_call", _format_args(call["args"]), call["name"], ok=call["name"] in known))
    for call in message.invalid_tool_calls:
        emit(Step("tool_call", str(call.get("args") or ""), call.get("name"), ok=False))
    if not message.tool_calls and not message.invalid_tool_calls:
        text = str(message.content).strip()
        if "<tool_call>" in text:
            emit(Step("tool_call", text, None, ok=False))
        else:
            emit(Step("answer", strip_tags(text)))


def _format_args(args: dict) -> str:
    if len(args) == 1:
        return str(next(iter(args.values())))
    return ", ".join(f"{k}={v!r}" for k, v in args.items())
