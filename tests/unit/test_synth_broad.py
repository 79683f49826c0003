"""``data synth --variety broad --function-share``: multi-step problems with plans, documents with several facts of
each question type, earlier turns, a client's own functions; every row takes the trainer's validation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from lorastack.finetune.data import DataConfig, load_examples, validate
from lorastack.finetune.synth import SynthConfig, documents, functions, generate, multistep
from lorastack.finetune.synth.arithmetic import check
from lorastack.finetune.synth.generate import result_block
from lorastack.tools.calculator import calculator_tool

from lorastack.templates import TOOLS_TEMPLATE
from tests.unit.test_synth import fraction_eval

N_TRAIN = 300


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("broad")
    generate(folder, n_train=N_TRAIN, n_eval=20, seed=3, variety="broad", function_share=0.25, history_share=0.3)
    return folder


def train(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("template", multistep.BROAD_TEMPLATES, ids=lambda t: t.__name__)
def test_every_broad_template_is_right_and_has_a_plan(template) -> None:
    rng = random.Random(template.__name__)
    for _ in range(40):
        problem = template(rng)
        assert fraction_eval(problem.expression) == problem.value, problem
        check(problem, calculator_tool.invoke({"expression": problem.expression}))
        assert problem.plan and problem.question.endswith(("?", "."))


def test_the_mix_plans_histories_and_functions(out: Path) -> None:
    rows = train(out)
    assert len(rows) == N_TRAIN
    fn_rows = [r for r in rows if r["messages"][0]["role"] != "system"]
    agent_rows = [r for r in rows if r["messages"][0]["role"] == "system"]
    assert len(fn_rows) == pytest.approx(N_TRAIN * 0.25 / 1.25, abs=2)
    calls = [m for r in agent_rows for m in r["messages"] if m.get("tool_calls")]
    assert any(m["content"] for m in calls), "some calculator calls come after a plan"
    assert sum(sum(m["role"] == "user" for m in r["messages"]) == 2 for r in agent_rows) > 0.15 * len(agent_rows)
    with_call = [r for r in fn_rows if len(r["messages"]) == 4]
    assert with_call and len(with_call) < len(fn_rows), "both calls and no-fit rows"
    for row in with_call:
        call = row["messages"][1]["tool_calls"][0]["function"]
        offered = {t["function"]["name"]: t["function"]["parameters"] for t in row["tools"]}
        assert call["name"] in offered
        arguments, parameters = json.loads(call["arguments"]), offered[call["name"]]
        assert set(parameters["required"]) <= set(arguments) <= set(parameters["properties"])
        for key, value in arguments.items():
            if isinstance(value, str) and key != "text":
                assert value.lower() in row["messages"][0]["content"].lower(), (key, value)


def test_broad_search_rows_read_the_asked_fact(out: Path) -> None:
    rows = [r for r in train(out) if any(c["function"]["name"] == "search" for m in r["messages"]
                                         for c in m.get("tool_calls", ()))]  # fmt: skip
    assert rows
    folders = {p.parent.name for p in (out / "corpus_train").rglob("*.md")}
    assert folders == {"towns", "people", "companies", "buildings", "events"}
    for row in rows:
        observation, answer = row["messages"][-2]["content"], row["messages"][-1]["content"]
        source = next(line.split("source: ")[1] for line in observation.splitlines() if "source: " in line)
        assert result_block(observation, source)
        assert any(token in observation for token in answer.rstrip(".").split()[-1:])


def test_broad_documents_hold_each_question_type() -> None:
    pool = documents.NamePool(random.Random(0))
    for entity in documents.make_world(pool, random.Random(1), 10):
        for fact in entity.facts:
            assert fact.text in entity.document, (entity.name, fact.key)
        assert any(f.train[0].startswith("Who") for f in entity.facts)


def test_function_rows_never_use_the_eval_sets_functions() -> None:
    evalsets = Path(__file__).resolve().parents[2] / "agent" / "evalsets" / "functions.jsonl"
    held_out = {t["function"]["name"] for line in evalsets.read_text().splitlines() for t in json.loads(line)["tools"]}
    ours = {name for spec in functions.SPECS for name in spec.names}
    assert ours and not ours & held_out


def test_broad_rows_pass_validation_and_fit_the_template(out: Path, base_model) -> None:
    from transformers import AutoTokenizer

    config = DataConfig(path=out / "train.jsonl", max_length=1280, eval_fraction=0)  # the broad recipe's max_length
    assert validate(config).rows == N_TRAIN
    tokenizer = AutoTokenizer.from_pretrained(base_model.path)
    _, _, report = load_examples(config, tokenizer, TOOLS_TEMPLATE.read_text())
    assert report.train_examples == N_TRAIN and report.truncated == 0 and report.dropped == 0


def test_function_share_is_a_config_field() -> None:
    assert SynthConfig(function_share=0.2).shares["function"] == 0.2
    assert "function" not in SynthConfig().shares
    with pytest.raises(ValueError):
        SynthConfig(variety="widest")
