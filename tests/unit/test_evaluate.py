"""``lorastack eval``: scoring rules, and evaluate() over the real agent loop with a scripted chat model."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lorastack.agent.eval_cli import add_commands
from lorastack.agent.evaluate import (
    MAX_NEW_NUMBERS,
    EvalItem,
    EvalReport,
    chart_figure,
    evaluate,
    load_items,
    normalize,
    parse_numbers,
    reports_json,
    score,
    write_chart,
)
from lorastack.agent.runner import AgentResult, run_agent
from lorastack.errors import LorastackError
from tests.unit.test_agent_flow import ScriptedChatModel, call
from lorastack.tools.calculator import calculator_tool


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("It costs 1,234.5 in all.", [1234.5]),
        ("You pay $23.50.", [23.5]),
        ("A 12% rise, then -3 degrees.", [12, -3]),
        ("Each child gets 33.6 marbles (168 / 5).", [33.6, 168, 5]),
        ("COVID-19 in 2020-2021", [19, 2020, 2021]),  # hyphens are not minus signs
        ("10 - 3 = 7", [10, 3, 7]),
        ("The Stamty T84 sold for $1,316.", [1316]),  # digits inside a name are not a number
        ("about 1.5e3 m, or −2", [1500, -2]),
        ("no numbers here", []),
    ],
)
def test_parse_numbers(text: str, numbers: list[float]) -> None:
    assert parse_numbers(text) == numbers


@pytest.mark.parametrize(
    ("expected", "answer", "tolerance", "correct"),
    [
        (53.8944, "You will pay $53.89 altogether.", 0.01, True),
        (53.8944, "You will pay $53.80 altogether.", 0.01, False),
        (142.285, "The total is $142.29 (a $12.94 tip).", 0.01, True),  # any number, not the last
        (1316, "It sold for $1,316 at launch.", None, True),
        (1316, "It sold for $1,317 at launch.", None, False),
        (1316, "It sold for 1316.0000000001 dollars.", None, True),  # default: equal to 1e-9 relative
        (77.34, "It went up by 77.34%.", 0.01, True),
        (-3, "The low was -3 °C.", None, True),
        (-3, "The low was 3 °C.", None, False),
        ("1779", "Gaxvymford was founded in 1779.", None, True),  # a string that is only a number
        ("$1,316", "1316 dollars", None, True),
        (5, "Maybe 3, 4, 5, 6 or 7.", None, False),  # more than MAX_NEW_NUMBERS: a list of guesses
        ("navy blue", "It is sold in Navy-Blue only.", None, True),
        ("Thurhu copper loom", "She is remembered for the Thurhu Copper Loom.", None, True),
        ("Moon", "It is called the moon.", None, True),
        ("Moon", "By moonlight.", None, False),  # whole words only
        ("navy blue", "It is sold in blue.", None, False),
        ("The Eiffel Tower", "eiffel tower, in Paris", None, True),  # articles dropped on both sides
        ("Zoë", "zoe did", None, True),  # accents
    ],
)
def test_score(expected, answer: str, tolerance: float | None, correct: bool) -> None:
    assert score(expected, answer, tolerance) is correct


def test_numbers_copied_from_the_question_do_not_count_as_guesses() -> None:
    question = "Dinner came to $48.12 and we want to leave a 12% tip. What will we pay altogether?"
    answer = "A 12% tip on $48.12 is $5.77, so you pay $53.89; call it $54."
    assert MAX_NEW_NUMBERS == 3
    assert score(53.8944, answer, 0.01, question) is True
    assert score(53.8944, answer + " Or $55, or $56.", 0.01, question) is False


def test_normalize() -> None:
    assert normalize("  The  Thurhu Copper-Loom!  An élan, a test. ") == "thurhu copper loom elan test"


# -- evaluate() over the real agent loop ---------------------------------------------------------------------

ITEMS = [
    EvalItem("What is 48.12 plus a 12% tip?", 53.8944, 0.01, "calculator"),
    EvalItem("What is 17 * 23?", 391, None, "calculator"),
    EvalItem("Name Earth's natural satellite.", "Moon", None, "none"),
    EvalItem("In what colour is the Temtys V31 sold?", "navy blue", None, "search"),
]

SCRIPTS = {
    # a valid calculator call, then the right answer
    ITEMS[0].question: [call("calculator", {"expression": "48.12 * 1.12"}), "You pay $53.89."],
    # a call to a tool that does not exist, then a valid one, then a wrong answer
    ITEMS[1].question: [call("abacus", {"x": "17*23"}), call("calculator", {"expression": "17*23"}, "c2"), "It is 401."],
    ITEMS[2].question: ["It is the Moon."],
    # never answers: the step limit ends the run, and the stop message's number must not score
    ITEMS[3].question: [call("calculator", {"expression": "1+1"}, f"c{i}") for i in range(10)],
}


def run_scripted(question: str) -> AgentResult:
    model = ScriptedChatModel(script=list(SCRIPTS[question]), calls=[])
    return run_agent(question, model, [calculator_tool], max_steps=3)


def test_evaluate_through_the_agent_loop() -> None:
    seen = []
    report = evaluate(ITEMS, run_scripted, model="scripted", on_result=seen.append)

    assert [r.correct for r in report.results] == [True, False, True, False]
    assert len(seen) == 4
    assert report.accuracy == 0.5
    assert report.per_kind() == {"calculator": 0.5, "none": 1.0, "search": 0.0}
    # 1 + 2 + 0 + 3 tool calls, of which only the "abacus" one is invalid
    assert report.tool_call_count == 6
    assert report.valid_tool_calls == pytest.approx(5 / 6)
    assert report.results[1].tool_calls[0] == {"tool": "abacus", "args": "17*23", "ok": False}
    assert report.results[3].stopped == "steps"
    assert report.mean_steps == pytest.approx((2 + 3 + 1 + 3) / 4)
    assert report.mean_seconds > 0 and report.median_seconds > 0


def test_no_tool_calls_means_no_valid_share() -> None:
    report = evaluate([ITEMS[2]], run_scripted)
    assert report.valid_tool_calls is None and report.tool_call_count == 0


def test_a_failing_run_marks_one_item_wrong_but_a_lorastack_error_stops() -> None:
    def flaky(question: str) -> AgentResult:
        if question == ITEMS[0].question:
            raise TimeoutError("read timed out")
        return run_scripted(question)

    report = evaluate(ITEMS[:3], flaky)
    assert report.results[0].correct is False and "TimeoutError" in report.results[0].error
    assert report.results[2].correct is True

    def broken(question: str) -> AgentResult:
        raise LorastackError("The endpoint has no model 'x'.")

    with pytest.raises(LorastackError, match="no model"):
        evaluate(ITEMS, broken)


def test_items_asked_at_once_keep_their_order_and_a_lorastack_error_still_stops() -> None:
    import threading
    import time

    active, most, lock = 0, 0, threading.Lock()

    def slow(question: str) -> AgentResult:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.05 * (4 - ITEMS.index(next(i for i in ITEMS if i.question == question))))  # first is slowest
        with lock:
            active -= 1
        return run_scripted(question)

    seen: list = []
    report = evaluate(ITEMS, slow, on_result=seen.append, concurrency=4)
    assert most > 1  # asked at once
    assert [r.item for r in report.results] == [r.item for r in seen] == ITEMS  # yet reported in order
    assert [r.correct for r in report.results] == [True, False, True, False]  # the same as one at a time

    asked: list[str] = []

    def broken(question: str) -> AgentResult:
        asked.append(question)
        raise LorastackError("The endpoint has no model 'x'.")

    with pytest.raises(LorastackError, match="no model"):
        evaluate(ITEMS * 20, broken, concurrency=2)
    assert len(asked) < len(ITEMS) * 20  # the items not started were not asked


def test_json_report_shape() -> None:
    report = evaluate(ITEMS, run_scripted, model="scripted")

    data = json.loads(json.dumps(reports_json([report])))

    (model,) = data["models"]
    assert model["model"] == "scripted" and model["items"] == 4 and model["accuracy"] == 0.5
    assert set(model) >= {"per_kind", "valid_tool_calls", "mean_steps", "mean_seconds", "median_seconds", "results"}
    first = model["results"][0]
    assert set(first) >= {"question", "expected", "answer", "correct", "kind", "tool_calls", "seconds"}
    assert first["expected"] == 53.8944 and first["answer"] == "You pay $53.89." and first["correct"] is True
    assert first["tool_calls"] == [{"tool": "calculator", "args": "48.12 * 1.12", "ok": True}]


def test_chart_is_written(tmp_path: Path) -> None:
    a = evaluate(ITEMS, run_scripted, model="adapter")
    b = EvalReport("base", [r for r in a.results if r.item.kind != "search"])  # a kind one model lacks

    path = write_chart([a, b], tmp_path / "out" / "chart.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_charts_y_axis_stops_at_100_percent() -> None:
    """Pins a fix: the y-axis went to 120% (room for the legend), so a perfect score looked short of the top."""
    import matplotlib.pyplot as plt

    a = evaluate(ITEMS, run_scripted, model="adapter")
    perfect = EvalReport("perfect", [replace(r, correct=True) for r in a.results])
    fig = chart_figure([a, perfect])
    try:
        (ax,) = fig.axes
        low, high = ax.get_ylim()
        assert low == 0 and 100 <= high <= 110  # a little headroom for the "100" label over a full bar
        ticks = list(ax.get_yticks())
        assert ticks[0] == 0 and ticks[-1] == 100
        assert max(bar.get_height() for bar in ax.patches) == 100
        legend = ax.get_legend()
        assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["adapter", "perfect"]
    finally:
        plt.close(fig)


# -- the eval set --------------------------------------------------------------------------------------------


def test_load_items(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    rows = [
        {"question": "Q1", "answer": 53.8944, "kind": "calculator", "tolerance": 0.01},
        {"question": "Q2", "answer": "navy blue", "kind": "search", "source": "products/x.md"},
        {"question": "Q3", "answer": "Moon"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")

    items = load_items(path)

    assert items == [
        EvalItem("Q1", 53.8944, 0.01, "calculator"),
        EvalItem("Q2", "navy blue", None, "search"),
        EvalItem("Q3", "Moon", None, "other"),
    ]
    assert len(load_items(path, limit=2)) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "Q", "answer": ', "not JSON"),
        ('["Q", "A"]', "JSON object"),
        ('{"answer": "A"}', '"question"'),
        ('{"question": "Q"}', '"answer"'),
        ('{"question": "Q", "answer": 1, "tolerance": -1}', '"tolerance"'),
    ],
)
def test_a_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"question": "ok", "answer": 1}) + "\n\n" + line + "\n")

    with pytest.raises(LorastackError, match=message) as info:
        load_items(path)
    assert str(info.value).startswith(f"{path}:3: ")


def test_eval_command_help_and_bad_file(tmp_path: Path) -> None:
    app = typer.Typer()
    add_commands(app)
    app.command(name="noop")(lambda: None)  # typer runs a lone command as the app itself
    runner = CliRunner()

    assert runner.invoke(app, ["eval", "--help"]).exit_code == 0
    path = tmp_path / "eval.jsonl"
    path.write_text("not json\n")
    result = runner.invoke(app, ["eval", str(path)])
    assert isinstance(result.exception, LorastackError) and f"{path}:1:" in str(result.exception)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--adapter", "a", "--model", "b"], "--adapter and --model name the same thing"),
        (["--corpus", ".", "--search", "web"], "--corpus builds its own local index"),
        (["--corpus", ".", "--index", "."], "--corpus builds its own local index"),
    ],
)
def test_eval_command_refuses_options_that_contradict(tmp_path: Path, options: list[str], message: str) -> None:
    app = typer.Typer()
    add_commands(app)
    app.command(name="noop")(lambda: None)
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": 1}) + "\n")

    result = CliRunner().invoke(app, ["eval", str(path), *options])

    assert isinstance(result.exception, LorastackError) and message in str(result.exception)


def test_a_run_stopped_at_a_limit_is_wrong_even_if_the_stop_message_has_the_number() -> None:
    """The stop message ("reached 3 model calls") holds a number; it must not pass for an answer of 3."""
    item = EvalItem("Loop?", 3, None, "calculator")
    script = [call("calculator", {"expression": "1+2"}, f"c{i}") for i in range(10)]

    def loop(question: str) -> AgentResult:
        return run_agent(question, ScriptedChatModel(script=script, calls=[]), [calculator_tool], max_steps=3)

    (result,) = evaluate([item], loop).results

    assert result.stopped == "steps" and "3 model calls" in result.answer and result.correct is False


def test_eval_command_compares_two_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's wiring (corpus index, both models, table, JSON, chart) with the endpoint faked out."""
    from contextlib import contextmanager

    import lorastack.agent.session
    from lorastack.agent.session import Endpoint

    @contextmanager
    def fake_endpoint(config, progress=None):
        assert config.search == "local" and (config.index / "index.sqlite").exists()
        yield Endpoint("http://unused/v1", "unused", config.model, True)

    def fake_ask(question, endpoint, config, tools, **kwargs):
        if endpoint.model == "base":
            return run_agent(question, ScriptedChatModel(script=["I do not know."], calls=[]), tools)
        return run_scripted(question)

    monkeypatch.setattr(lorastack.agent.session, "open_endpoint", fake_endpoint)
    monkeypatch.setattr(lorastack.agent.session, "ask", fake_ask)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "temtys.md").write_text("# Temtys V31\nThe Temtys V31 is sold in navy blue.\n")
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({"question": i.question, "answer": i.answer, "kind": i.kind}) + "\n"
                            for i in ITEMS[:3]))  # fmt: skip
    app = typer.Typer()
    add_commands(app)
    app.command(name="noop")(lambda: None)

    result = CliRunner().invoke(app, [
        "eval", str(path), "--model", "tuned", "--compare", "base", "--corpus", str(corpus),
        "--json", str(tmp_path / "report.json"), "--chart", str(tmp_path / "chart.png"), "--concurrency", "2",
    ])  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "tuned" in result.output and "base" in result.output and "accuracy" in result.output
    models = json.loads((tmp_path / "report.json").read_text())["models"]
    assert [(m["model"], m["items"]) for m in models] == [("tuned", 3), ("base", 3)]
    assert models[1]["accuracy"] == 0.0 and models[1]["valid_tool_calls"] is None
    assert (tmp_path / "chart.png").stat().st_size > 0


# -- the promotion's evaluator ------------------------------------------------------------------------------


def test_evaluate_model_is_an_evaluator_over_the_agent_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """evaluate_model (what a gated promotion is given) runs the real agent loop and tools at the endpoint it is
    handed, on the requirement's items, with its corpus indexed for search; the chat model is scripted below."""
    import lorastack.agent.session
    from lorastack.agent.eval_run import evaluate_model
    from lorastack.evaluation import Endpoint, EvalRequirement, Evaluator

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "temtys.md").write_text("# Temtys V31\nThe Temtys V31 is sold in navy blue.\n")
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps({"question": i.question, "answer": i.answer, "kind": i.kind}) + "\n"
                                 for i in [ITEMS[3], ITEMS[2], ITEMS[1]]))  # fmt: skip
    scripts = iter([
        [call("search", {"query": "Temtys V31 colour"}), "It is sold in navy blue."],  # ITEMS[3]
        ["It is the Moon."],  # ITEMS[2]
    ])  # fmt: skip
    models: list[ScriptedChatModel] = []
    asked: list[tuple] = []

    def scripted_chat_model(endpoint, config, react):
        asked.append((endpoint.base_url, endpoint.api_key, endpoint.model, endpoint.tool_calling, react))
        models.append(ScriptedChatModel(script=next(scripts), calls=[]))
        return models[-1]

    monkeypatch.setattr(lorastack.agent.session, "chat_model", scripted_chat_model)
    evaluator: Evaluator = evaluate_model
    requirement = EvalRequirement(eval_file, corpus=corpus, limit=2)

    agent_log = logging.getLogger("lorastack.agent")
    # Caught here, whatever the CLI root (run by other tests) did to lorastack's logger.
    monkeypatch.setattr(agent_log, "handlers", [caplog.handler])
    monkeypatch.setattr(agent_log, "propagate", False)
    caplog.set_level(logging.INFO, logger="lorastack.agent")

    accuracy = evaluator(requirement, Endpoint("http://front.test/v1/", "sk-admin", tool_calling=True), "tuned@v2")

    assert accuracy == 1.0
    assert asked == [("http://front.test/v1", "sk-admin", "tuned@v2", True, False)] * 2  # limit=2: two items
    assert models[0].calls[0][-1].content == ITEMS[3].question
    observation = models[0].calls[1][-1]
    assert "navy blue" in observation.content and "temtys.md" in observation.content  # the corpus was searched
    # progress goes through logging (the CLI renders it), not print
    assert [r.getMessage() for r in caplog.records] == [
        f"Indexed 1 chunks of {corpus} for this run.",
        "Evaluating tuned@v2 on 2 items of eval.jsonl...",
        "tuned@v2: 100.0% on eval.jsonl.",
    ]


def test_evaluate_model_runs_several_files_as_one_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate on several eval files (promote --eval A --eval B): every file's items, limit counted per file, as
    `lorastack eval A B --limit N` runs them."""
    import lorastack.agent.session
    from lorastack.agent.eval_run import evaluate_model
    from lorastack.evaluation import Endpoint, EvalRequirement

    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("".join(json.dumps({"question": q, "answer": 4}) + "\n" for q in ("2+2?", "1+3?", "0+4?")))
    second.write_text(json.dumps({"question": "What is 17 * 23?", "answer": 391}) + "\n")
    models: list[ScriptedChatModel] = []

    def scripted_chat_model(endpoint, config, react):
        models.append(ScriptedChatModel(script=["It is 4."], calls=[]))
        return models[-1]

    monkeypatch.setattr(lorastack.agent.session, "chat_model", scripted_chat_model)
    requirement = EvalRequirement((first, second), limit=2)
    assert requirement.name == "first.jsonl + 1 more"

    accuracy = evaluate_model(requirement, Endpoint("http://front.test/v1", "k", tool_calling=True), "tuned@v2")

    asked = sorted(model.calls[0][-1].content for model in models)
    assert asked == sorted(["2+2?", "1+3?", "What is 17 * 23?"])  # two of the first file, one of the second
    assert accuracy == pytest.approx(2 / 3)


def test_evaluate_model_raises_for_an_eval_set_it_cannot_run(tmp_path: Path) -> None:
    from lorastack.agent.eval_run import evaluate_model
    from lorastack.evaluation import Endpoint, EvalRequirement

    with pytest.raises(LorastackError, match="does not exist"):
        evaluate_model(EvalRequirement(tmp_path / "missing.jsonl"), Endpoint("http://x/v1", "k"), "m")
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": "q", "answer": 1}) + "\n")
    with pytest.raises(LorastackError, match="holds no documents"):
        evaluate_model(EvalRequirement(tmp_path / "eval.jsonl", corpus=empty), Endpoint("http://x/v1", "k"), "m")
