"""The tool-use data generator: right answers, real tool observations, disjoint splits, rows the trainer takes."""

from __future__ import annotations

import ast
import json
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest

from lorastack.agent.prompts import SYSTEM_PROMPT
from lorastack.finetune.data import DataConfig, load_examples, validate
from lorastack.finetune.synth import SynthConfig, arithmetic, chat, facts, generate
from lorastack.finetune.synth.generate import result_block, split_counts, tool_schemas
from lorastack.templates import TOOLS_TEMPLATE
from lorastack.tools.calculator import format_number

N_TRAIN, N_EVAL = 240, 60


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth")
    generate(folder, n_train=N_TRAIN, n_eval=N_EVAL, seed=7)
    return folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def fraction_eval(expression: str) -> Fraction:
    """The expression's value computed here, without the calculator: numbers as Fractions, round half up."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            return Fraction(str(node.value))
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b, ast.Div: a / b if b else None}[type(node.op)]
        if isinstance(node, ast.Call) and node.func.id == "round":
            x, places = walk(node.args[0]), int(walk(node.args[1]))
            scale = Fraction(10) ** places
            return Fraction(int(abs(x) * scale + Fraction(1, 2)), 1) / scale * (1 if x >= 0 else -1)
        raise AssertionError(f"unexpected syntax in {expression!r}: {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval"))


def numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?", text))


def kind_of(row: dict) -> str:
    calls = [c for m in row["messages"] for c in m.get("tool_calls", ())]
    return calls[0]["function"]["name"] if calls else "none"


def corpus_text(folder: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(folder.rglob("*.md")))


def test_files_kinds_and_shape(out: Path):
    train, items = read_jsonl(out / "train.jsonl"), read_jsonl(out / "eval.jsonl")
    assert len(train) == N_TRAIN and len(items) == N_EVAL
    assert {kind_of(r) for r in train} == {"calculator", "search", "none"}
    assert {i["kind"] for i in items} == {"calculator", "search", "none"}
    assert list((out / "corpus_train").rglob("*.md")) and list((out / "corpus_eval").rglob("*.md"))
    schemas = tool_schemas()
    assert [s["function"]["name"] for s in schemas] == ["calculator", "search"]
    for row in train:
        assert row["tools"] == schemas
        messages = row["messages"]
        assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert messages[1]["role"] == "user" and messages[-1]["role"] == "assistant" and messages[-1]["content"]
        if kind_of(row) != "none":
            call = messages[2]["tool_calls"][0]
            assert messages[3] == {"role": "tool", "tool_call_id": call["id"], "content": messages[3]["content"]}
            assert len(messages) == 5
    for item in items:
        assert set(item) <= {"question", "answer", "tolerance", "kind", "source"}
        assert isinstance(item["answer"], (str, int, float))


def test_calculator_rows_are_right(out: Path):
    """The tool message is the real calculator's output, equal to an independent Fraction evaluation."""
    rows = [r for r in read_jsonl(out / "train.jsonl") if kind_of(r) == "calculator"]
    assert rows
    for row in rows:
        question, call, tool, answer = (m for m in row["messages"][1:])
        expression = json.loads(call["tool_calls"][0]["function"]["arguments"])["expression"]
        assert tool["content"] == format_number(fraction_eval(expression))
        assert tool["content"] in answer["content"]
        assert numbers(expression) - {"100", "2", "3"} <= numbers(question["content"]), expression


@pytest.mark.parametrize("templates", [arithmetic.TRAIN_TEMPLATES, arithmetic.EVAL_TEMPLATES], ids=["train", "eval"])
def test_every_template_value_matches_its_expression(templates):
    rng = random.Random(0)
    for template in templates:
        for _ in range(40):
            problem = template(rng)
            assert fraction_eval(problem.expression) == problem.value, (template.__name__, problem.expression)
            assert numbers(problem.expression) - {"100", "2", "3"} <= numbers(problem.question)


def test_eval_calculator_answers(out: Path):
    items = [i for i in read_jsonl(out / "eval.jsonl") if i["kind"] == "calculator"]
    assert items
    for item in items:
        if not isinstance(item["answer"], int):
            assert item["tolerance"] > 0


def fact_templates() -> list[facts.Fact]:
    """One entity of each kind: its facts carry the (value-free) question and answer templates."""
    return [f for e in facts.make_world(facts.NamePool(random.Random(0)), random.Random(0), 3) for f in e.facts]


def test_search_rows_show_the_fact_from_its_document(out: Path):
    """The final answer's value is in the real search observation, in the result from the entity's document."""
    patterns = [re.compile(re.escape(f.answer).replace(re.escape("{e}"), "(?P<e>.+)", 1)
                           .replace(re.escape("{e}"), "(?P=e)").replace(re.escape("{v}"), "(?P<v>.+)") + "$")
                for f in fact_templates()]  # fmt: skip
    rows = [r for r in read_jsonl(out / "train.jsonl") if kind_of(r) == "search"]
    assert rows
    for row in rows:
        _, _, call, tool, answer = row["messages"]
        match = next(m for p in patterns if (m := p.match(answer["content"])))
        entity, value = match["e"], match["v"]
        assert entity in json.loads(call["tool_calls"][0]["function"]["arguments"])["query"]
        source = next(s for s in re.findall(r"source: (\S+)", tool["content"])
                      if (out / "corpus_train" / s).read_text().startswith(f"# {entity}\n"))  # fmt: skip
        assert value in (out / "corpus_train" / source).read_text()
        assert value in result_block(tool["content"], source)


def test_eval_search_answers_are_in_their_eval_document(out: Path):
    for item in (i for i in read_jsonl(out / "eval.jsonl") if i["kind"] == "search"):
        doc = (out / "corpus_eval" / item["source"]).read_text()
        assert str(item["answer"]) in doc


def test_splits_are_disjoint(out: Path):
    train_text = (out / "train.jsonl").read_text() + corpus_text(out / "corpus_train")
    train_questions = {r["messages"][1]["content"] for r in read_jsonl(out / "train.jsonl")}
    items = read_jsonl(out / "eval.jsonl")
    assert len({i["question"] for i in items}) == len(items)
    for item in items:
        assert item["question"] not in train_questions
    eval_names = [p.read_text().splitlines()[0].removeprefix("# ") for p in (out / "corpus_eval").rglob("*.md")]
    for name in eval_names:
        assert name.lower() not in train_text.lower(), name
    for item in items:  # invented names given as answers (mayors, rivers, makers) are new as well
        if item["kind"] == "search" and isinstance(item["answer"], str) and item["answer"][0].isupper():
            assert item["answer"] not in train_text, item
    # Question wording: no eval template's fixed text is a train question.
    templates = lambda qs: {re.sub(r"[\d.$]+", "#", q) for q in qs}  # noqa: E731
    calc_eval = templates(i["question"] for i in items if i["kind"] == "calculator")
    assert not calc_eval & templates(train_questions)
    assert not {q for q, _ in chat.eval_pool()} & {q for q, _ in chat.train_pool()}
    for fact in fact_templates():
        assert not set(fact.eval) & set(fact.train)


def test_rows_pass_validation_and_fit_the_template(out: Path, base_model):
    from transformers import AutoTokenizer

    config = DataConfig(path=out / "train.jsonl", max_length=1024, eval_fraction=0)
    stats = validate(config)
    assert stats.rows == N_TRAIN and stats.tool_calls == sum(kind_of(r) != "none" for r in read_jsonl(config.path))
    tokenizer = AutoTokenizer.from_pretrained(base_model.path)
    train, _, report = load_examples(config, tokenizer, TOOLS_TEMPLATE.read_text())
    assert report.train_examples == N_TRAIN and report.truncated == 0 and report.dropped == 0


def test_same_seed_same_files(out: Path, tmp_path: Path):
    again, other = tmp_path / "again", tmp_path / "other"
    generate(again, SynthConfig(n_train=N_TRAIN, n_eval=N_EVAL, seed=7))
    generate(other, n_train=N_TRAIN, n_eval=N_EVAL, seed=8)

    def files(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    assert files(again) == files(out)
    assert files(other)["train.jsonl"] != files(out)["train.jsonl"]


def test_shares_and_config():
    counts = split_counts(10, {"calculator": 0.45, "search": 0.35, "none": 0.2})
    assert counts == {"calculator": 5, "search": 3, "none": 2}
    assert sum(split_counts(7, {"a": 1, "b": 1, "c": 1}).values()) == 7
    with pytest.raises(ValueError, match="all 0"):
        SynthConfig(calculator_share=0, search_share=0, none_share=0)
