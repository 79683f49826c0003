"""``data synth --variety wide``: word problems composed from parts (each with a plan naming every quantity), and
client functions invented from parameter kinds; ``broad`` stays byte for byte what it was."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from lorastack.finetune.data import DataConfig, validate
from lorastack.finetune.synth import composed, functions, generate, invented
from lorastack.finetune.synth.arithmetic import check
from lorastack.tools.calculator import calculator_tool

from tests.unit.test_synth import fraction_eval

N_TRAIN = 400
EVALSETS = Path(__file__).resolve().parents[2] / "agent" / "evalsets"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wide")
    generate(folder, n_train=N_TRAIN, n_eval=20, seed=5, variety="wide", function_share=0.5)
    return folder


def train(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("template", sorted(set(composed.TEMPLATES), key=lambda t: t.__name__), ids=lambda t: t.__name__)
def test_every_composed_template_is_right_and_plans_its_call(template) -> None:
    rng = random.Random(template.__name__)
    questions = set()
    for _ in range(60):
        problem = template(rng)
        assert fraction_eval(problem.expression) == problem.value, problem
        check(problem, calculator_tool.invoke({"expression": problem.expression}))
        assert problem.plan and problem.question.endswith(("?", ".")), problem
        questions.add(problem.question)
    assert len(questions) > 50, "the same structure written many ways"


def test_shopping_plans_name_each_item_then_the_whole_expression() -> None:
    rng = random.Random(0)
    for _ in range(50):
        problem = composed.shopping(rng)
        assert problem.plan.endswith(f"Total: {problem.expression}.")
        for term in problem.expression.split(" + "):
            assert term in problem.plan


def test_invented_calls_follow_their_schema_and_the_request(out: Path) -> None:
    rows = [r for r in train(out) if r["messages"][0]["role"] != "system" and len(r["messages"]) == 4]
    assert len(rows) > 50
    invented_names = 0
    for row in rows:
        call = row["messages"][1]["tool_calls"][0]["function"]
        offered = {t["function"]["name"]: t["function"]["parameters"] for t in row["tools"]}
        parameters, arguments = offered[call["name"]], json.loads(call["arguments"])
        assert set(parameters["required"]) <= set(arguments) <= set(parameters["properties"])
        request = row["messages"][0]["content"].lower()
        for key, value in arguments.items():
            schema = parameters["properties"][key]
            if "enum" in schema:
                assert value in schema["enum"]
            kind = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list}[schema["type"]]
            assert isinstance(value, kind), (key, value)
            for part in value if isinstance(value, list) else [value]:
                if not isinstance(part, bool):
                    assert str(part).lower() in request, (key, part, request)
        invented_names += call["name"] not in {n for s in functions.SPECS for n in s.names}
    assert invented_names > 0.3 * len(rows), "most function rows use invented functions"


def test_invented_functions_never_take_an_eval_sets_name() -> None:
    held_out = {t["function"]["name"] for line in (EVALSETS / "functions.jsonl").read_text().splitlines()
                for t in json.loads(line)["tools"]}  # fmt: skip
    rng = random.Random(1)
    names = {invented.invent(rng)[0]["function"]["name"] for _ in range(3000)}
    assert len(names) > 40 and not names & held_out


def test_wide_rows_pass_validation(out: Path) -> None:
    assert validate(DataConfig(path=out / "train.jsonl", max_length=1280, eval_fraction=0)).rows == N_TRAIN


def test_broad_is_unchanged_by_wide(tmp_path: Path) -> None:
    """The broad data the bundled adapter learned from is still what seed 0 writes (its card names the hash, see
    test_evalsets); here: the same seed writes other calculator rows under wide, the same search rows."""
    generate(tmp_path / "b", n_train=200, n_eval=0, seed=2, variety="broad", function_share=0.2)
    generate(tmp_path / "w", n_train=200, n_eval=0, seed=2, variety="wide", function_share=0.2)
    broad, wide = (tmp_path / "b" / "train.jsonl").read_text(), (tmp_path / "w" / "train.jsonl").read_text()
    assert broad != wide
    generate(tmp_path / "b2", n_train=200, n_eval=0, seed=2, variety="broad", function_share=0.2)
    assert (tmp_path / "b2" / "train.jsonl").read_text() == broad


def test_composed_and_invented_shares_choose_what_wide_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    used: list = []
    monkeypatch.setattr(composed, "TEMPLATES", [lambda rng, t=t: used.append(t) or t(rng) for t in composed.TEMPLATES])
    known = {n for s in functions.SPECS for n in s.names}

    def function_calls(folder: Path) -> list[str]:
        rows = [r for r in train(folder) if r["messages"][0]["role"] != "system" and len(r["messages"]) == 4]
        return [r["messages"][1]["tool_calls"][0]["function"]["name"] for r in rows]

    shares = {"n_train": 300, "n_eval": 0, "seed": 3, "variety": "wide", "function_share": 0.3}
    generate(tmp_path / "none", composed_share=0.0, invented_share=0.0, **shares)
    calls = function_calls(tmp_path / "none")
    assert not used and calls and set(calls) <= known
    generate(tmp_path / "all", composed_share=1.0, invented_share=1.0, **shares)
    calls = function_calls(tmp_path / "all")
    assert len(used) > 20 and calls and not set(calls) & known
