"""Running an eval set against one or more models of one endpoint: shared by ``lorastack eval`` and the
eval gate of ``lorastack adapters promote``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from lorastack.agent.config import AgentConfig
from lorastack.agent.evaluate import EvalItem, EvalReport, ItemResult, evaluate
from lorastack.errors import LorastackError


def with_corpus(config: AgentConfig, corpus: Path | None, stack: ExitStack, say: Callable[[str], None]) -> AgentConfig:
    """``config`` searching a temporary local index of ``corpus`` (kept until ``stack`` closes)."""
    if corpus is None:
        return config
    from lorastack.tools.search.local_index import LocalIndex

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lorastack-eval-index-")))
    built = LocalIndex(folder).update(corpus)
    if built.chunks == 0:
        raise LorastackError(f"{corpus} holds no documents to search (.txt, .md, .rst, .html).")
    say(f"Indexed {built.chunks} chunks of {corpus} for this run.")
    return config.model_copy(update={"search": "local", "index": folder})


def run_eval(
    items: Sequence[EvalItem],
    config: AgentConfig,
    models: Sequence[str | None] = (None,),
    corpus: Path | None = None,
    say: Callable[[str], None] = lambda msg: None,
    on_result: Callable[[str, int, ItemResult], None] | None = None,
) -> list[EvalReport]:
    """One report per entry of ``models`` (None: the model ``config`` selects), on the same items."""
    from lorastack.agent.session import ask, build_tools, open_endpoint  # LangChain loads only when the agent runs

    with ExitStack() as stack:
        config = with_corpus(config, corpus, stack, say)
        tools = build_tools(config)
        endpoint = stack.enter_context(open_endpoint(config, progress=say))
        reports = []
        for model in models:
            target = endpoint if model is None else replace(endpoint, model=model)
            done = 0

            def progress(outcome: ItemResult, name: str = target.model) -> None:
                nonlocal done
                done += 1
                if on_result:
                    on_result(name, done, outcome)

            run_one = lambda q, target=target: ask(q, target, config, tools)  # noqa: E731
            reports.append(evaluate(items, run_one, model=target.model, on_result=progress))
        return reports
