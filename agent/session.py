"""Where the agent's LLM comes from (the lorastack server or any OpenAI-compatible endpoint), and asking it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.tools import BaseTool
from langchain_openai import ChatOpenAI

from lorastack.agent.config import AgentConfig
from lorastack.agent.react import ReActChatModel
from lorastack.agent.runner import AgentResult, Step, run_agent
from lorastack.access import DEFAULT_ALIAS, Role, env_key
from lorastack.errors import LorastackError, ServerError


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str
    model: str
    tool_calling: bool | None
    """Whether the endpoint does OpenAI tool calling; None if unknown (a foreign endpoint)."""


_TOOL_PARAMS = {"tools", "tool_choice"}
"""Request fields an endpoint names (the error body's ``param``) when it refuses tool calling: vLLM sets it for a
tools / tool_choice it cannot take (``VLLMValidationError(parameter=...)``), OpenAI for a model without tools."""


@contextmanager
def open_endpoint(config: AgentConfig) -> Iterator[Endpoint]:
    """The endpoint for ``config``: --base-url as given, else the lorastack server (started if needed; it reports
    its progress through logging)."""
    if config.base_url:
        api_key = config.api_key or os.environ.get("OPENAI_API_KEY") or "unused"
        model = config.adapter or config.model or _first_model(config.base_url, api_key)
        yield Endpoint(config.base_url.rstrip("/"), api_key, model, None)
        return
    from lorastack.serve.server import running_server  # the web stack (uvicorn, FastAPI) loads only to start one

    with running_server() as state:
        model = config.adapter or config.model or default_model(state)
        yield Endpoint(f"{state.url}/v1", config.api_key or local_key(), model, state.tool_call_parser is not None)


def local_key() -> str:
    """The key lorastack's own commands present to the front door (needed once keys exist)."""
    return env_key(Role.inference) or "unused"


def default_model(state) -> str:  # state: lorastack.serve.state.ServerState
    """What the lorastack server answers with by default: its ``default`` alias (the bundled tools-demo adapter
    on the embedded model) when the front door serves one, else the base model."""
    try:
        served = {m["id"] for m in state.client.models()}
    except LorastackError:
        return state.base_name
    return DEFAULT_ALIAS if DEFAULT_ALIAS in served else state.base_name


def _first_model(base_url: str, api_key: str) -> str:
    try:
        models = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=10).models.list().data
    except openai.OpenAIError as exc:
        raise ServerError(f"Could not list the models at {base_url} ({exc}).", "Pass --model NAME.") from None
    if not models:
        raise ServerError(f"{base_url} serves no models.", "Pass --model NAME.")
    return models[0].id


def chat_model(endpoint: Endpoint, config: AgentConfig, react: bool) -> BaseChatModel:
    llm = ChatOpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        model=endpoint.model,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        timeout=config.timeout,
        max_retries=1,
    )
    return ReActChatModel(inner=llm) if react else llm


def build_tools(config: AgentConfig) -> list[BaseTool]:
    from lorastack.tools.calculator import calculator_tool
    from lorastack.tools.search import SearchConfig, make_search_tool  # bm25s and ddgs load only for the tools

    search = SearchConfig(backend=config.search, **({"index_dir": config.index} if config.index else {}))
    return [calculator_tool, make_search_tool(search)]


def ask(
    question: str,
    endpoint: Endpoint,
    config: AgentConfig,
    tools: Sequence[BaseTool],
    history: Sequence[BaseMessage] = (),
    on_step: Callable[[Step], None] | None = None,
) -> AgentResult:
    """Run the agent once. In auto mode an endpoint known to lack tool calling is asked in ReAct mode, and one
    that refuses the tools (:func:`refuses_tools`) is asked again in ReAct mode."""
    react = config.tool_mode == "react" or (config.tool_mode == "auto" and endpoint.tool_calling is False)

    def run(react: bool) -> AgentResult:
        return run_agent(
            question, chat_model(endpoint, config, react), tools, history=history,
            max_steps=config.max_steps, timeout=config.timeout, on_step=on_step,
        )  # fmt: skip

    try:
        return run(react)
    except openai.BadRequestError as exc:
        if react or config.tool_mode != "auto" or not refuses_tools(exc):
            raise LorastackError(f"The endpoint refused the request: {exc}") from None
        return run(True)
    except openai.NotFoundError as exc:
        raise LorastackError(
            f"The endpoint has no model {endpoint.model!r} ({exc.status_code}).",
            "See lorastack adapters list (load it with lorastack adapters load NAME), or pass --model.",
        ) from None
    except openai.APIConnectionError:
        raise ServerError(f"Could not reach {endpoint.base_url}.", "Is the server running?") from None


def refuses_tools(exc: openai.BadRequestError) -> bool:
    """Whether the endpoint refused the request for its tools (the error body's ``param`` names them), as opposed
    to anything else in it; never decided by the message text."""
    param = exc.param if isinstance(exc.param, str) else ""
    return re.split(r"[.\[]", param, maxsplit=1)[0] in _TOOL_PARAMS  # "tool_choice.function.name", "tools[0]"
