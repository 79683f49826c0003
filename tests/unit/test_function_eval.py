"""Eval items with a client's own functions (agent/function_calls.py) and multi-turn items: loading, scoring,
and evaluate() routing each item to the right runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lorastack.agent.evaluate import EvalItem, evaluate, load_items
from lorastack.agent.function_calls import CallResult, same_value, score_call
from lorastack.agent.runner import AgentResult

from lorastack.errors import LorastackError

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "Weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
PLAYLIST = {
    "type": "function",
    "function": {"name": "make_playlist", "parameters": {"type": "object", "properties": {"songs": {"type": "array"}}}},
}
TOOLS = [WEATHER, PLAYLIST]
EXPECTED = {"name": "get_forecast", "arguments": {"city": "Lisbon"}}


def call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


@pytest.mark.parametrize(
    ("calls", "correct"),
    [
        ([call("get_forecast", city="Lisbon")], True),
        ([call("get_forecast", city=" lisbon. ")], True),  # case, space and a full stop do not count
        ([call("get_forecast", city="Lisbon", unit="celsius")], True),  # an unasked argument at its default
        ([call("get_forecast", city="Lisbon", unit="fahrenheit")], False),  # ... but not at another value
        ([call("get_forecast", city="Lisbon", days=3)], False),  # an argument nobody asked for
        ([call("get_forecast", city="Porto")], False),
        ([call("get_forecast")], False),
        ([call("make_playlist", songs=[])], False),
        ([{"name": "get_forecast", "arguments": '{"city": "Lisbon"'}], False),  # not JSON
        ([], False),
        ([call("make_playlist", songs=[]), call("get_forecast", city="Lisbon")], False),  # the first call counts
    ],
)
def test_score_call(calls: list[dict], correct: bool) -> None:
    assert score_call(EXPECTED, calls, TOOLS) is correct


def test_no_call_expected_means_no_call_made() -> None:
    assert score_call(None, [], TOOLS)
    assert not score_call(None, [call("get_forecast", city="Lisbon")], TOOLS)


@pytest.mark.parametrize(
    ("expected", "given", "same"),
    [
        (4, 4.0, True),
        (4, "4", False),
        (5.5, 5.5, True),
        (True, True, True),
        (True, 1, False),
        (False, 0, False),
        (["Hey Jude", "Africa"], ["hey jude", "Africa"], True),
        (["Hey Jude", "Africa"], ["Africa", "Hey Jude"], False),  # order matters
        (["a"], "a", False),
        ({"x": 1}, {"x": 1.0}, True),
    ],
)
def test_same_value(expected, given, same: bool) -> None:
    assert same_value(expected, given) is same


def write(path: Path, *rows: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_function_and_multi_turn_items(tmp_path: Path) -> None:
    history = [{"role": "user", "content": "What is 12 times 15?"}, {"role": "assistant", "content": "180."}]
    path = write(
        tmp_path / "eval.jsonl",
        {"question": "Weather in Lisbon?", "kind": "function", "tools": TOOLS, "expected_call": EXPECTED},
        {"question": "Thanks!", "kind": "no-function", "tools": TOOLS, "expected_call": None},
        {"question": "And divided by 4?", "answer": 45, "kind": "chat", "history": history},
    )

    fn, none, chat = load_items(path)

    assert fn.calls_functions and fn.tools == tuple(TOOLS) and fn.expected_call == EXPECTED
    assert fn.answer == "get_forecast" and none.answer == "(no call)" and none.expected_call is None
    assert not chat.calls_functions and chat.history == tuple(history) and chat.answer == 45


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "Q", "tools": [], "expected_call": None}, '"tools" must be a non-empty list'),
        ({"question": "Q", "tools": [{"name": "f"}], "expected_call": None}, "each tool must be"),
        ({"question": "Q", "tools": TOOLS}, 'needs "expected_call"'),
        ({"question": "Q", "tools": TOOLS, "expected_call": {"name": "nope", "arguments": {}}}, "not among the tools"),
        ({"question": "Q", "tools": TOOLS, "expected_call": {"name": "get_forecast"}}, '"expected_call" must be'),
        ({"question": "Q", "answer": 1, "history": [{"role": "system", "content": "x"}]}, '"history" must be'),
        ({"question": "Q", "answer": 1, "history": "hi"}, '"history" must be'),
    ],
)
def test_a_bad_function_or_history_row_is_refused(tmp_path: Path, row: dict, message: str) -> None:
    path = write(tmp_path / "eval.jsonl", row)
    with pytest.raises(LorastackError, match=message) as info:
        load_items(path)
    assert str(info.value).startswith(f"{path}:1: ")


def test_evaluate_routes_items_to_their_runner() -> None:
    """Agent items go to run_one (with the history of a multi-turn item), function items to call_one."""
    items = [
        EvalItem("What is 2 + 2?", 4),
        EvalItem(
            "And times 3?", 12, history=({"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"})
        ),
        EvalItem("Weather in Lisbon?", "get_forecast", kind="function", tools=tuple(TOOLS), expected_call=EXPECTED),
        EvalItem("Thanks!", "(no call)", kind="no-function", tools=tuple(TOOLS)),
    ]
    asked: list[tuple] = []

    def run_one(question: str, *history) -> AgentResult:
        asked.append((question, *history))
        return AgentResult(answer="4" if question.startswith("What") else "It is 12.")

    def call_one(item: EvalItem) -> CallResult:
        if item.expected_call:
            return CallResult([call("get_forecast", city="Lisbon", unit="celsius")], seconds=0.5)
        return CallResult([call("make_playlist", songs=[])], seconds=0.25)

    report = evaluate(items, run_one, model="m", call_one=call_one)

    assert [r.correct for r in report.results] == [True, True, True, False]
    assert asked == [("What is 2 + 2?",), ("And times 3?", items[1].history)]
    assert report.per_kind() == {"other": 1.0, "function": 1.0, "no-function": 0.0}
    assert report.results[2].tool_calls == [
        {"tool": "get_forecast", "args": {"city": "Lisbon", "unit": "celsius"}, "ok": True}
    ]
    assert report.results[3].answer == 'make_playlist({"songs": []})'
    with pytest.raises(LorastackError, match="cannot call them"):
        evaluate(items[2:], run_one)


def test_eval_command_runs_several_files_as_one_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lorastack eval a.jsonl b.jsonl --limit 1`: the first item of each file, in order, in one run."""
    import typer
    from typer.testing import CliRunner

    import lorastack.agent.eval_run
    from lorastack.agent.eval_cli import add_commands
    from lorastack.agent.evaluate import EvalReport

    asked: list[str] = []

    def fake_run_eval(items, config, models, corpus, on_result=None, concurrency=1):
        asked.extend(i.question for i in items)
        return [EvalReport(m or "default") for m in models]

    monkeypatch.setattr(lorastack.agent.eval_run, "run_eval", fake_run_eval)
    first = write(tmp_path / "a.jsonl", {"question": "A1", "answer": 1}, {"question": "A2", "answer": 2})
    second = write(tmp_path / "b.jsonl", {"question": "B1", "tools": TOOLS, "expected_call": None})
    app = typer.Typer()
    add_commands(app)
    app.command(name="noop")(lambda: None)

    result = CliRunner().invoke(app, ["eval", str(first), str(second), "--limit", "1", "--model", "m"])

    assert result.exit_code == 0, result.output
    assert asked == ["A1", "B1"]
