"""The hand-written held-out eval sets in agent/evalsets: their answers are right, and the training generator
(finetune/synth) never writes their questions, their documents' names or their functions."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from lorastack.agent.evaluate import load_items, normalize, parse_numbers, score
from lorastack.finetune.synth import generate
from lorastack.finetune.synth.facts import MONTHS
from lorastack.serve.demo import demo_adapter_dir
from lorastack.tools.calculator import calculate

EVALSETS = Path(__file__).resolve().parents[2] / "agent" / "evalsets"
FILES = ("calculator", "search", "no_tool", "chat", "functions")
FRESH = ("fresh/calculator", "fresh/functions")
"""Written later, apart from the generator and after its last change (fresh/README.md)."""
NGRAM = 6
"""Two texts that share this many words in a row count as overlapping."""


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (EVALSETS / f"{name}.jsonl").read_text().splitlines()]


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = normalize(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_every_file_loads_with_the_sizes_the_issue_asks_for() -> None:
    sizes = {name: len(load_items(EVALSETS / f"{name}.jsonl")) for name in FILES}
    assert sizes["calculator"] >= 60 and sizes["search"] >= 40 and sizes["no_tool"] >= 30
    assert sizes["functions"] >= 40 and sizes["chat"] >= 5
    kinds = {item.kind for item in load_items(EVALSETS / "search.jsonl")}
    assert kinds == {"search-who", "search-when", "search-how-many", "search-where"}
    calls = [r["expected_call"] for r in rows("functions")]
    assert sum(c is None for c in calls) >= 8 and sum(c is not None for c in calls) >= 30


@pytest.mark.parametrize("row", rows("calculator"), ids=lambda r: r["question"][:40])
def test_calculator_answers_are_what_their_expression_gives(row: dict) -> None:
    """Each item keeps the expression that solves it; the calculator's result must score as the answer."""
    assert score(row["answer"], calculate(row["expression"]), row.get("tolerance"))


def test_search_answers_are_in_the_corpus_and_each_document_is_asked_about() -> None:
    documents = [p.read_text() for p in sorted((EVALSETS / "corpus").glob("*.md"))]
    text, numbers = f" {normalize(' '.join(documents))} ", parse_numbers(" ".join(documents))
    for row in rows("search"):
        answer = row["answer"]
        assert answer in numbers if isinstance(answer, int) else f" {normalize(answer)} " in text, row
    asked = normalize(" ".join(r["question"] for r in rows("search")))
    for document in documents:
        title = normalize(document.splitlines()[0])
        assert any(word in asked for word in title.split() if len(word) > 5), title


def test_function_items_offer_functions_the_training_data_never_shows(generated: Path) -> None:
    trained = set()
    for line in (generated / "train.jsonl").read_text().splitlines():
        trained |= {t["function"]["name"] for t in json.loads(line).get("tools", [])}
    offered = {t["function"]["name"] for name in ("functions", "fresh/functions") for r in rows(name) for t in r["tools"]}
    assert offered and not offered & trained


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generator's output as the tools-demo recipes ask for it: the basic data of the first release and, whole,
    the broad data the bundled adapter was trained on (finetune/recipes/smollm2-135m-tools-demo-broad.yaml), the
    wide data of finetune/recipes/smollm2-135m-tools-demo-wide.yaml (seed 1) and the mix data of
    finetune/recipes/smollm2-135m-tools-demo-mix.yaml (seed 2: broad's problems, wide's invented functions)."""
    folder = tmp_path_factory.mktemp("synth")
    generate(folder / "basic", n_train=1500, n_eval=0, seed=0)
    shares = {"function_share": 0.2, "calculator_share": 0.35, "search_share": 0.3, "none_share": 0.2}
    generate(folder / "broad", n_train=12000, n_eval=200, seed=0, variety="broad", **shares)
    generate(folder / "wide", n_train=12000, n_eval=200, seed=1, variety="wide", **shares)
    generate(folder / "mix", n_train=12000, n_eval=200, seed=2, variety="wide", composed_share=0.0, **shares)
    both = folder / "both"
    (both / "corpus_train").mkdir(parents=True)
    kinds = ("basic", "broad", "wide", "mix")
    (both / "train.jsonl").write_text("".join((folder / k / "train.jsonl").read_text() for k in kinds))
    for kind in kinds:
        (folder / kind / "corpus_train").rename(both / "corpus_train" / kind)
    return both


def test_the_bundled_adapter_was_trained_on_the_data_checked_here(generated: Path) -> None:
    """The overlap checks below cover what the shipped tools-demo learned from: its card names this data's hash."""
    card = json.loads((demo_adapter_dir() / "training_card.json").read_text())
    trained_on = generated.parent / "broad" / "train.jsonl"
    assert card["data_sha256"] == hashlib.sha256(trained_on.read_bytes()).hexdigest()


def test_no_eval_question_overlaps_the_training_data(generated: Path) -> None:
    """No question (or earlier turn) of the held-out sets shares NGRAM words in a row with any training message,
    and no name from the held-out corpus appears in the training data or its corpus."""
    train_text = (generated / "train.jsonl").read_text()
    seen: set[tuple[str, ...]] = set()
    for line in train_text.splitlines():
        for message in json.loads(line)["messages"]:
            if message["role"] in ("user", "assistant") and message.get("content"):
                seen |= ngrams(message["content"])
    for name in (*FILES, *FRESH):
        for row in rows(name):
            texts = [row["question"], *(t["content"] for t in row.get("history", []))]
            shared = [g for text in texts for g in ngrams(text) & seen]
            assert not shared, (row["question"], shared[:3])

    corpus_text = " ".join(p.read_text() for p in (generated / "corpus_train").rglob("*.md"))
    names = {m for p in (EVALSETS / "corpus").glob("*.md") for m in re.findall(r"\b[A-Z][a-z]{4,}\b", p.read_text())}
    common = "About After Today Harbour Square Saturday Construction Lantern Night Instruments Exchange Museum Clock"
    names -= set(common.split()) | set(MONTHS)
    leaked = {n for n in names if re.search(rf"\b{n}\b", train_text + corpus_text)}
    assert not leaked
