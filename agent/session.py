"""Where the agent's LLM comes from (the lorastack server or any OpenAI-compatible endpoint), and asking it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.tools import BaseTool
from langchain_openai import ChatOpenAI

from lorastack.agent.config import AgentConfig
from lorastack.agent.react import ReActChatModel
from lorastack.agent.runner import AgentResult, Step, run_agent
from lorastack.access import DEFAULT_ALIAS, Role, env_key
from lorastack.errors import LorastackError, ServerError, Unauthorized


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str
    model: str
    tool_calling: bool | None
    """Whether the endpoint does OpenAI tool calling; None if unknown (a foreign endpoint)."""
    front_door: bool = False
    """Whether it is (by all signs) a lorastack front door: its 401s then name lorastack's key variables."""
    chosen: str = ""
    """How the model was chosen when none was named, for the "Asking ..." line; empty when named."""

    @property
    def describe(self) -> str:
        """The model and, when lorastack chose it, how: "default (tools-demo@v1 on SmolLM2-135M-Instruct)"."""
        return f"{self.model} ({self.chosen})" if self.chosen else self.model


_TOOL_PARAMS = {"tools", "tool_choice"}
"""Request fields an endpoint names (the error body's ``param``) when it refuses tool calling: vLLM sets it for a
tools / tool_choice it cannot take (``VLLMValidationError(parameter=...)``), OpenAI for a model without tools."""

_LORASTACK_KEY_HINT = (
    "Set LORASTACK_API_KEY (or LORASTACK_ADMIN_KEY) to one of this server's keys; make one with "
    "`lorastack keys create --role inference`."
)
_FOREIGN_KEY_HINT = "Pass --api-key KEY or set OPENAI_API_KEY."


@contextmanager
def open_endpoint(config: AgentConfig) -> Iterator[Endpoint]:
    """The endpoint for ``config``: --base-url as given, else the lorastack server of LORASTACK_HOME/server.json
    (started if none runs; it reports its progress through logging). With no --model / --adapter, a lorastack
    server answers with its ``default`` alias and any other endpoint with its first model (:func:`choose_model`).
    A refused key is :class:`Unauthorized` (never a fallback to another model)."""
    named = config.adapter or config.model
    if config.base_url:
        base_url = config.base_url.rstrip("/")
        front_door = looks_like_front_door(base_url)
        own_key = env_key(Role.inference) if front_door else None  # lorastack's keys go to lorastack servers only
        api_key = config.api_key or own_key or os.environ.get("OPENAI_API_KEY") or "unused"
        if named:
            yield Endpoint(base_url, api_key, named, None, front_door)
            return
        models = _list_models(base_url, api_key, front_door)
        model, chosen, lorastack = choose_model(models, base_url)
        yield Endpoint(base_url, api_key, model, None, front_door or lorastack, chosen)
        return
    from lorastack.serve.server import running_server  # the web stack (uvicorn, FastAPI) loads only to start one

    with running_server() as state:
        tool_calling = state.tool_call_parser is not None
        api_key = config.api_key or local_key()
        if named:
            yield Endpoint(f"{state.url}/v1", api_key, named, tool_calling, True)
            return
        model, chosen = default_model(state)
        yield Endpoint(f"{state.url}/v1", api_key, model, tool_calling, True, chosen)


def local_key() -> str:
    """The key lorastack's own commands present to the front door (needed once keys exist)."""
    return env_key(Role.inference) or "unused"


def default_model(state) -> tuple[str, str]:  # state: lorastack.serve.state.ServerState
    """What the lorastack server answers with by default, and how that was chosen: its ``default`` alias (the
    bundled tools-demo adapter on the embedded model) when the front door serves one, else the base model.
    Raises :class:`Unauthorized` when the front door refuses the key, and other :class:`LorastackError` errors when
    it cannot list its models: never a silent fallback to the base model."""
    try:
        models = state.client.models()
    except Unauthorized as exc:
        message = f"The lorastack server at {state.url} refused the API key (HTTP 401): {_sentence(exc.message)}"
        raise Unauthorized(message, _LORASTACK_KEY_HINT) from None
    model, chosen, _ = choose_model(models, state.url, base=state.base_name)
    return model, chosen


def choose_model(models: Sequence[dict], where: str, base: str | None = None) -> tuple[str, str, bool]:
    """``(model, how it was chosen, whether the listing is a lorastack server's)`` for ``/v1/models`` entries.

    A lorastack server lists its aliases as entries owned by ``lorastack`` (``root``: the version, ``parent``:
    the base model): its ``default`` alias answers, else its base model (``base``, or an alias's parent). Any
    other endpoint answers with its first model, and says so."""
    aliases = [m for m in models if m.get("owned_by") == "lorastack"]
    default = next((m for m in aliases if m.get("id") == DEFAULT_ALIAS), None)
    if default is not None:
        on = f" on {default['parent']}" if default.get("parent") else ""
        return DEFAULT_ALIAS, f"{default.get('root') or 'the default alias'}{on}", True
    base = base or next((m["parent"] for m in aliases if m.get("parent")), None)
    if base is not None:
        return base, "the base model: the server has no default alias; pass --model to choose", True
    if not models:
        raise ServerError(f"{where} serves no models.", "Pass --model NAME.")
    return str(models[0]["id"]), "the endpoint's first model; pass --model to choose", False


def looks_like_front_door(base_url: str) -> bool:
    """Whether ``base_url`` answers ``/health`` as a lorastack front door does (``{"status": "ok"}``; open, no key
    needed). Decides only which key to present and what a 401 says; the model is chosen from ``/v1/models``."""
    root = base_url.removesuffix("/v1")
    try:
        response = httpx.get(f"{root}/health", timeout=2)
        return response.status_code == 200 and response.json() == {"status": "ok"}
    except (httpx.HTTPError, ValueError):
        return False


def _list_models(base_url: str, api_key: str, front_door: bool) -> list[dict]:
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=10)
    try:
        return [m.model_dump() for m in client.models.list().data]
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise unauthorized(base_url, front_door, exc) from None
    except openai.OpenAIError as exc:
        raise ServerError(f"Could not list the models at {base_url} ({_detail(exc)}).", "Pass --model NAME.") from None


def unauthorized(base_url: str, front_door: bool, exc: openai.APIStatusError) -> Unauthorized:
    """The endpoint's 401 (or 403) as one line that says which key to set."""
    return Unauthorized(
        f"{base_url} refused the API key (HTTP {exc.status_code}): {_sentence(_detail(exc))}",
        _LORASTACK_KEY_HINT if front_door else _FOREIGN_KEY_HINT,
    )


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _detail(exc: openai.OpenAIError) -> str:
    """The error body's message where there is one (not the whole body), on one line."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(message or exc).split())


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
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise unauthorized(endpoint.base_url, endpoint.front_door, exc) from None
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
