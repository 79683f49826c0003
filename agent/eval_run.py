"""Running an eval set against models of one endpoint: :func:`run_eval` for ``lorastack eval``, and
:func:`evaluate_model`, the :data:`~lorastack.evaluation.Evaluator` a promotion with an eval requirement is given.

Progress goes through logging (``lorastack.report``); the CLI renders it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lorastack.agent.config import AgentConfig
from lorastack.agent.evaluate import EvalItem, EvalReport, ItemResult, evaluate, load_items
from lorastack.agent.function_calls import CallResult, ask_functions
from lorastack.errors import LorastackError
from lorastack.evaluation import Endpoint, EvalRequirement

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from lorastack.agent.runner import AgentResult
    from lorastack.agent.session import Endpoint as AgentEndpoint

logger = logging.getLogger(__name__)


def with_corpus(config: AgentConfig, corpus: Path | None, stack: ExitStack) -> AgentConfig:
    """``config`` searching a temporary local index of ``corpus`` (kept until ``stack`` closes)."""
    if corpus is None:
        return config
    from lorastack.tools.search.local_index import LocalIndex  # bm25s loads only for a corpus

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lorastack-eval-index-")))
    built = LocalIndex(folder).update(corpus)
    if built.chunks == 0:
        raise LorastackError(f"{corpus} holds no documents to search (.txt, .md, .rst, .html).")
    logger.info("Indexed %d chunks of %s for this run.", built.chunks, corpus)
    return config.model_copy(update={"search": "local", "index": folder})


def run_eval(
    items: Sequence[EvalItem],
    config: AgentConfig,
    models: Sequence[str | None] = (None,),
    corpus: Path | None = None,
    *,
    on_result: Callable[[str, int, ItemResult], None] | None = None,
    concurrency: int = 1,
) -> list[EvalReport]:
    """One report per entry of ``models`` (None: the model ``config`` selects), on the same items, ``concurrency``
    items at a time. ``on_result(model, done, result)`` is called after each item, in the items' order."""
    from lorastack.agent.session import build_tools, open_endpoint  # LangChain loads only when the agent runs

    with ExitStack() as stack:
        config = with_corpus(config, corpus, stack)
        endpoint = stack.enter_context(open_endpoint(config))
        logger.info("Asking %s", endpoint.describe)
        tools = build_tools(config)
        reports = []
        for model in models:
            target = endpoint if model is None else replace(endpoint, model=model)
            reports.append(_evaluate_at(items, target, config, tools, on_result, concurrency))
        return reports


def evaluate_model(requirement: EvalRequirement, endpoint: Endpoint, model: str) -> float:
    """The accuracy (0..1) of ``model`` at ``endpoint`` on the requirement's eval set, its corpus (if any) indexed
    for the search tool. A :data:`lorastack.evaluation.Evaluator`: the promotion's eval, given to the serving room
    as a callable. Raises :class:`LorastackError` for an eval set it cannot run."""
    from lorastack.agent.session import Endpoint as AgentEndpoint
    from lorastack.agent.session import build_tools  # LangChain loads only when the agent runs

    items = [item for path in requirement.eval_files for item in load_items(path, requirement.limit)]
    config = AgentConfig(base_url=endpoint.base_url, api_key=endpoint.api_key, model=model)
    target = AgentEndpoint(endpoint.base_url.rstrip("/"), endpoint.api_key, model, endpoint.tool_calling)
    with ExitStack() as stack:
        config = with_corpus(config, requirement.corpus, stack)
        logger.info("Evaluating %s on %d items of %s...", model, len(items), requirement.name)
        report = _evaluate_at(items, target, config, build_tools(config))
    logger.info("%s: %.1f%% on %s.", model, 100 * report.accuracy, requirement.name)
    return report.accuracy


def _evaluate_at(
    items: Sequence[EvalItem],
    target: AgentEndpoint,
    config: AgentConfig,
    tools: Sequence[BaseTool],
    on_result: Callable[[str, int, ItemResult], None] | None = None,
    concurrency: int = 1,
) -> EvalReport:
    from langchain_core.messages import AIMessage, HumanMessage  # LangChain loads only when the agent runs

    from lorastack.agent.session import ask  # LangChain, as above

    done = 0

    def progress(outcome: ItemResult) -> None:
        nonlocal done
        done += 1
        if on_result:
            on_result(target.model, done, outcome)

    def run_one(question: str, history: Sequence[dict[str, str]] = ()) -> AgentResult:
        turns = [HumanMessage(t["content"]) if t["role"] == "user" else AIMessage(t["content"]) for t in history]
        return ask(question, target, config, tools, history=turns)

    return evaluate(items, run_one, model=target.model, on_result=progress, call_one=function_caller(target, config),
                    concurrency=concurrency)  # fmt: skip


def function_caller(target: AgentEndpoint, config: AgentConfig) -> Callable[[EvalItem], CallResult]:
    """Asks ``target`` a function-calling item once with the item's own functions, as a client program would (its
    messages only: no agent, no agent system prompt)."""
    import openai  # loads only when an eval runs

    client = openai.OpenAI(base_url=target.base_url, api_key=target.api_key, timeout=config.timeout, max_retries=1)

    def call_one(item: EvalItem) -> CallResult:
        messages = [*item.history, {"role": "user", "content": item.question}]
        try:
            return ask_functions(client, target.model, messages, list(item.tools or ()), config.max_tokens)
        except openai.NotFoundError:
            raise LorastackError(f"The endpoint has no model {target.model!r}.") from None
        except openai.APIConnectionError:
            raise LorastackError(f"Could not reach {target.base_url}.", "Is the server running?") from None

    return call_one
