"""Evaluating the agent on a set of questions with known answers (``lorastack eval``).

    items = load_items(Path("eval.jsonl"))
    report = evaluate(items, run_one=lambda q: ask(q, endpoint, config, tools), model="my-adapter")
    report.accuracy, report.per_kind(), report.to_dict()

``run_one`` is any function from a question (and, for a multi-turn item, its earlier turns) to an
:class:`AgentResult`; tests pass one that runs the real agent loop on a scripted chat model. Items that offer
their own functions (``tools`` and ``expected_call``, see :mod:`lorastack.agent.function_calls`) go to
``call_one`` instead. Scoring (:func:`score`, :func:`~lorastack.agent.function_calls.score_call`) is pure.
"""

from __future__ import annotations

import json
import logging
import math
import re
import statistics
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastack.agent.function_calls import CallResult, check_item, score_call, valid_call
from lorastack.agent.runner import AgentResult
from lorastack.errors import LorastackError

logger = logging.getLogger(__name__)

MAX_NEW_NUMBERS = 3
"""A numeric answer that states more distinct numbers than this (numbers copied from the question not
counted) is scored wrong even if one of them is right: it is a list of guesses, not an answer."""
DEFAULT_KIND = "other"
"""The kind of an item that names none."""

# A number as people write it: optional sign and currency, thousands separators, decimals, an exponent.
# The sign counts only where it cannot be a hyphen ("2020-2021", "COVID-19" are not negative numbers).
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−+])?(?:[$€£¥]\s?)?"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?P<exp>[eE][-+]?\d+)?(?![\d])"
)
_WHOLE_NUMBER = re.compile(r"\s*[-−+]?(?:[$€£¥]\s?)?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][-+]?\d+)?\s*%?\s*")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# -- scoring ------------------------------------------------------------------------------------------------


def parse_numbers(text: str) -> list[float]:
    """Every number in ``text``, in order: "1,234.5" -> 1234.5, "$23.50" -> 23.5, "12%" -> 12, "-3" -> -3.

    A percent sign is dropped, not divided out: eval sets write "by what percentage" answers as 77.34.
    """
    numbers = []
    for match in _NUMBER.finditer(text):
        sign = -1.0 if match["sign"] in ("-", "−") else 1.0
        numbers.append(sign * float(match["digits"].replace(",", "") + (match["exp"] or "")))
    return numbers


def as_number(expected: Any) -> float | None:
    """The expected answer as a number if it is one: a JSON number, or a string that is only a number."""
    if isinstance(expected, bool):
        return None
    if isinstance(expected, (int, float)):
        return float(expected)
    if isinstance(expected, str) and any(c.isdigit() for c in expected) and _WHOLE_NUMBER.fullmatch(expected):
        (number,) = parse_numbers(expected)
        return number
    return None


def normalize(text: str) -> str:
    """Lower case, accents, punctuation and the articles a/an/the removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKD", str(text).lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = "".join(c if c.isalnum() else " " for c in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def score(expected: Any, answer: str, tolerance: float | None = None, question: str = "") -> bool:
    """Whether ``answer`` gives the ``expected`` answer.

    Numbers (a JSON number, or a string that is just a number): correct if any number in the answer is
    within ``tolerance`` of it (absolute; unset: equal to 1e-9 relative), unless the answer states more than
    :data:`MAX_NEW_NUMBERS` distinct numbers that are not in ``question`` (a list of guesses). Any number,
    not the last: answers often end with working ("33.6 marbles each (168 / 5)").

    Text: correct if the normalized expected answer (:func:`normalize`) appears in the normalized answer
    as whole words ("moon" is in "It is the Moon." but not in "moonlight").
    """
    target = as_number(expected)
    if target is None:
        wanted = normalize(str(expected))
        return bool(wanted) and f" {wanted} " in f" {normalize(answer)} "
    found = parse_numbers(answer)
    given = set(parse_numbers(question))
    if len({n for n in found if n not in given}) > MAX_NEW_NUMBERS:
        return False
    if tolerance is None:
        return any(math.isclose(n, target, rel_tol=1e-9) for n in found)
    return any(abs(n - target) <= tolerance for n in found)


# -- the eval set -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalItem:
    question: str
    answer: str | float | int
    """The expected answer; for a function-calling item, the expected function's name or "(no call)"."""
    tolerance: float | None = None
    kind: str = DEFAULT_KIND
    history: tuple[dict[str, str], ...] = ()
    """Earlier turns of a multi-turn item: ``{"role": "user" | "assistant", "content"}`` each, in order."""
    tools: tuple[dict[str, Any], ...] | None = None
    """The functions a function-calling item offers (OpenAI schemas); None for an agent item."""
    expected_call: dict[str, Any] | None = None
    """The call a function-calling item expects (``{"name", "arguments"}``); None: no call."""

    @property
    def calls_functions(self) -> bool:
        return self.tools is not None


def load_items(path: Path, limit: int | None = None) -> list[EvalItem]:
    """The items of a JSONL eval set (one JSON object a line; blank lines skipped; extra keys ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LorastackError(f"{path} does not exist.", "Make one with: lorastack data synth DIR") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LorastackError(f"Could not read {path}: {exc}") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        items.append(_item(line, f"{path}:{number}"))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise LorastackError(f"{path} holds no questions.", 'Write one JSON object a line: {"question", "answer"}.')
    return items


def _item(line: str, where: str) -> EvalItem:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LorastackError(f"{where}: not JSON ({exc.msg}).") from None
    if not isinstance(row, dict):
        raise LorastackError(f"{where}: expected a JSON object, got {type(row).__name__}.")
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise LorastackError(f"{where}: needs a non-empty string \"question\".")
    history = _history(row.get("history", []), where)
    if "tools" in row:
        try:
            tools, expected = check_item(row, where)
        except ValueError as exc:
            raise LorastackError(str(exc)) from None
        name = "(no call)" if expected is None else expected["name"]
        return EvalItem(question, name, None, _kind(row, where), history, tuple(tools), expected)
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or answer == "":
        raise LorastackError(f"{where}: needs an \"answer\" (a string or a number).")
    tolerance = row.get("tolerance")
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                  or tolerance < 0):  # fmt: skip
        raise LorastackError(f"{where}: \"tolerance\" must be a number >= 0, got {tolerance!r}.")
    return EvalItem(question, answer, None if tolerance is None else float(tolerance), _kind(row, where), history)


def _kind(row: dict, where: str) -> str:
    kind = row.get("kind", DEFAULT_KIND)
    if not isinstance(kind, str) or not kind:
        raise LorastackError(f"{where}: \"kind\" must be a non-empty string, got {kind!r}.")
    return kind


def _history(turns: Any, where: str) -> tuple[dict[str, str], ...]:
    if not isinstance(turns, list) or not all(
        isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
        for t in turns
    ):
        raise LorastackError(f'{where}: "history" must be a list of {{"role": "user" | "assistant", "content"}}.')
    return tuple({"role": t["role"], "content": t["content"]} for t in turns)


# -- running and reporting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    item: EvalItem
    answer: str
    correct: bool
    tool_calls: list[dict[str, Any]]
    """``{"tool", "args", "ok"}`` per tool call the model made."""
    model_calls: int
    seconds: float
    stopped: str | None = None
    error: str | None = None
    """Set when the run raised instead of answering (the item counts as wrong)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.item.question,
            "expected": self.item.answer,
            "tolerance": self.item.tolerance,
            "kind": self.item.kind,
            "answer": self.answer,
            "correct": self.correct,
            "tool_calls": self.tool_calls,
            "model_calls": self.model_calls,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "error": self.error,
        }


@dataclass
class EvalReport:
    model: str
    results: list[ItemResult] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return _share([r.correct for r in self.results]) or 0.0

    def per_kind(self) -> dict[str, float]:
        """Accuracy per item kind, kinds in order of first appearance."""
        kinds: dict[str, list[bool]] = {}
        for r in self.results:
            kinds.setdefault(r.item.kind, []).append(r.correct)
        return {kind: sum(marks) / len(marks) for kind, marks in kinds.items()}

    @property
    def valid_tool_calls(self) -> float | None:
        """Share of tool calls that named a known tool with valid arguments; None if there were none."""
        return _share([c["ok"] for r in self.results for c in r.tool_calls])

    @property
    def tool_call_count(self) -> int:
        return sum(len(r.tool_calls) for r in self.results)

    @property
    def mean_steps(self) -> float:
        """Mean model calls per item."""
        return statistics.fmean(r.model_calls for r in self.results) if self.results else 0.0

    @property
    def mean_seconds(self) -> float:
        return statistics.fmean(r.seconds for r in self.results) if self.results else 0.0

    @property
    def median_seconds(self) -> float:
        return statistics.median(r.seconds for r in self.results) if self.results else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "items": len(self.results),
            "accuracy": self.accuracy,
            "per_kind": self.per_kind(),
            "tool_calls": self.tool_call_count,
            "valid_tool_calls": self.valid_tool_calls,
            "mean_steps": self.mean_steps,
            "mean_seconds": round(self.mean_seconds, 3),
            "median_seconds": round(self.median_seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "results": [r.to_dict() for r in self.results]}


def _share(marks: Sequence[bool]) -> float | None:
    return sum(marks) / len(marks) if marks else None


def evaluate(
    items: Iterable[EvalItem],
    run_one: Callable[..., AgentResult],
    model: str = "model",
    on_result: Callable[[ItemResult], None] | None = None,
    call_one: Callable[[EvalItem], CallResult] | None = None,
    concurrency: int = 1,
) -> EvalReport:
    """Ask every item's question through ``run_one`` (``run_one(question)``, or ``run_one(question, history)``
    for a multi-turn item) and score the answers; function-calling items go to ``call_one``.

    ``concurrency`` items are asked at once (threads; the server batches them); results and ``on_result`` calls
    keep the items' order. An item whose run stopped at a limit is wrong whatever its text says (the stop message
    has numbers). A :class:`LorastackError` (no such model, server unreachable) ends the evaluation, since every
    other item would fail the same way; any other exception marks that one item wrong and the run goes on.
    """
    items = list(items)
    if call_one is None and (offered := next((i for i in items if i.calls_functions), None)) is not None:
        raise LorastackError(f"{offered.question!r} offers its own functions, and this evaluation cannot call them.")

    def one(item: EvalItem) -> ItemResult:
        try:
            if item.calls_functions:
                return _called(item, call_one(item))  # type: ignore[misc]  # checked above
            return _answered(item, run_one(item.question, item.history) if item.history else run_one(item.question))
        except LorastackError:
            raise
        except Exception as exc:  # one flaky request should not sink a long evaluation
            logger.warning("%s failed on %r: %s", model, item.question, exc)
            return ItemResult(item, "", False, [], 0, 0.0, error=f"{type(exc).__name__}: {exc}")

    report = EvalReport(model)

    def record(outcome: ItemResult) -> None:
        report.results.append(outcome)
        if on_result:
            on_result(outcome)

    if concurrency <= 1:
        for item in items:
            record(one(item))
        return report
    with ThreadPoolExecutor(concurrency, thread_name_prefix="eval") as pool:
        futures = [pool.submit(one, item) for item in items]
        try:
            for future in futures:
                record(future.result())
        finally:
            for future in futures:
                future.cancel()  # after an error: the items not started yet are not asked
    return report


def _answered(item: EvalItem, result: AgentResult) -> ItemResult:
    correct = result.stopped is None and score(item.answer, result.answer, item.tolerance, item.question)
    calls = [{"tool": s.tool, "args": s.text, "ok": s.ok} for s in result.tool_calls]
    return ItemResult(item, result.answer, correct, calls, result.model_calls, result.seconds, result.stopped)


def _called(item: EvalItem, called: CallResult) -> ItemResult:
    tools = list(item.tools or ())
    correct = score_call(item.expected_call, called.calls, tools)
    calls = [{"tool": c["name"], "args": c["arguments"], "ok": valid_call(c, tools)} for c in called.calls]
    answer = called.answer or "; ".join(f"{c['name']}({json.dumps(c['arguments'])})" for c in called.calls)
    return ItemResult(item, answer, correct, calls, 1, called.seconds)


def reports_json(reports: Sequence[EvalReport]) -> dict[str, Any]:
    """The JSON report: one entry per model, each with its summary and per-item results."""
    return {"models": [r.to_dict() for r in reports]}


CHART_HEADROOM = 1.08
"""The chart's y-axis ends at this times 100%, so a full bar's label fits; its ticks stop at 100%."""


def chart_figure(reports: Sequence[EvalReport]) -> Any:  # a matplotlib Figure
    """The bar chart of accuracy per kind (and overall), one bar per model in each group. The y-axis stops at
    100% (its ticks too): the headroom above it holds the bars' labels, and the legend sits below the plot."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must come before pyplot
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(k for r in reports for k in r.per_kind())) + ["overall"]
    width = 0.8 / len(reports)
    size = (max(4.0, 1.4 * len(kinds) * max(1, len(reports) / 2)), 3.8)
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    for i, report in enumerate(reports):
        values = {**report.per_kind(), "overall": report.accuracy}
        xs = [k + (i - (len(reports) - 1) / 2) * width for k in range(len(kinds))]
        bars = ax.bar(xs, [100 * values.get(k, 0.0) for k in kinds], width, label=report.model)
        ax.bar_label(bars, [f"{100 * values[k]:.0f}" if k in values else "" for k in kinds], fontsize=8)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100 * CHART_HEADROOM)  # room for the "100" label over a full bar, no more
    ax.set_yticks(range(0, 101, 20))
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=len(reports), fontsize=8, frameon=False)
    ax.set_title("Agent accuracy per kind")
    return fig


def write_chart(reports: Sequence[EvalReport], path: Path) -> Path:
    """Write :func:`chart_figure` to ``path`` as a PNG."""
    fig = chart_figure(reports)
    import matplotlib.pyplot as plt  # after chart_figure chose the Agg backend

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
