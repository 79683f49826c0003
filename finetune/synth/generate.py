"""Write a tool-use training set and a held-out eval set (the step before ``lorastack train``).

Run as:   lorastack data synth OUT_DIR --train 2000 --eval 200 --seed 0

Writes ``OUT_DIR/train.jsonl`` (OpenAI messages rows with the agent's own system prompt and tool schemas),
``OUT_DIR/eval.jsonl`` (``{"question", "answer", "tolerance"?, "kind", "source"?}`` per line) and the two
invented corpora ``corpus_train/`` and ``corpus_eval/``. Every tool message is what the real tool returns:
the calculator is called, and search runs on a real local index of ``corpus_train/``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lorastack.agent.prompts import SYSTEM_PROMPT
from lorastack.finetune.synth import arithmetic, chat, composed, documents, facts, functions, invented, multistep

logger = logging.getLogger(__name__)

KINDS = ("calculator", "search", "none")


class SynthConfig(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    n_train: int = Field(2000, ge=1)
    """Training conversations to write."""
    n_eval: int = Field(200, ge=0)
    """Held-out eval questions to write (other templates, numbers and facts than the training rows)."""
    seed: int = 0
    """Random seed: the same seed writes the same files."""
    calculator_share: float = Field(0.45, ge=0)
    """Share of conversations (train and eval) solved with the calculator."""
    search_share: float = Field(0.35, ge=0)
    """Share answered by searching the invented corpus."""
    none_share: float = Field(0.2, ge=0)
    """Share answered directly, without a tool (greetings, common knowledge)."""
    train_docs: int = Field(0, ge=0)
    """Documents in corpus_train (0 = one per 4 search conversations, at least 12)."""
    eval_docs: int = Field(0, ge=0)
    """Documents in corpus_eval (0 = one per 2 search questions, at least 6)."""
    variety: Literal["basic", "broad", "wide"] = "basic"
    """basic: the data the first tools-demo was trained on (byte for byte per seed). broad: adds two- and three-step
    problems with a short plan before the call, documents with several facts of each question type (who, when, how
    many, where), more plain knowledge, and an earlier chat turn before some questions. wide: broad, with a share of its
    multi-step problems composed from parts instead (many surfaces of each structure, a plan naming every quantity;
    ``composed_share``) and a share of its function rows calling functions invented per row (``invented_share``)."""
    function_share: float = Field(0.0, ge=0)
    """Share of training rows that call a client's own invented functions (or, one in four, none fits and the
    reply is plain text). 0: none, as in basic. The eval set never has them (agent/evalsets/functions.jsonl does)."""
    history_share: float = Field(0.15, ge=0, le=1)
    """broad only: share of conversations that start with an earlier plain exchange."""
    composed_share: float = Field(0.6, ge=0, le=1)
    """wide only: share of the multi-step problems composed from parts (finetune/synth/composed.py)."""
    invented_share: float = Field(0.6, ge=0, le=1)
    """wide only: share of the function rows whose functions are invented per row (finetune/synth/invented.py)."""

    @model_validator(mode="after")
    def _some_share(self) -> SynthConfig:
        if self.calculator_share + self.search_share + self.none_share <= 0:
            raise ValueError("calculator_share, search_share and none_share are all 0; give at least one a share")
        wide_only = sorted(self.model_fields_set & {"composed_share", "invented_share"})
        if wide_only and self.variety != "wide":
            raise ValueError(f"only variety wide reads {' and '.join(wide_only)}; add --variety wide or leave it out")
        return self

    @property
    def shares(self) -> dict[str, float]:
        shares = {"calculator": self.calculator_share, "search": self.search_share, "none": self.none_share}
        return {**shares, "function": self.function_share} if self.function_share else shares

    @property
    def broad(self) -> bool:
        return self.variety in ("broad", "wide")


@dataclass
class SynthReport:
    """What :func:`generate` wrote."""

    out_dir: Path
    train: dict[str, int] = field(default_factory=dict)
    """Training rows per kind."""
    eval: dict[str, int] = field(default_factory=dict)
    """Eval items per kind."""
    train_docs: int = 0
    eval_docs: int = 0

    def __str__(self) -> str:
        def counts(d: dict[str, int]) -> str:
            return ", ".join(f"{v} {k}" for k, v in d.items())

        return (
            f"{sum(self.train.values())} train rows ({counts(self.train)}) and {sum(self.eval.values())} eval "
            f"questions ({counts(self.eval)}) in {self.out_dir}; corpora of {self.train_docs} and "
            f"{self.eval_docs} documents"
        )


def split_counts(n: int, shares: dict[str, float]) -> dict[str, int]:
    """``n`` divided by ``shares`` (largest remainder, so the counts add up to ``n``)."""
    total = sum(shares.values())
    exact = {k: n * s / total for k, s in shares.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def tool_schemas() -> list[dict[str, Any]]:
    """The OpenAI schemas of exactly the agent's two tools, as the server shows them to the model."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    # the tools load LangChain: only when data is made, not when its config is read (every lorastack command)
    from lorastack.tools.calculator import calculator_tool
    from lorastack.tools.search import SearchConfig, make_search_tool

    search_tool = make_search_tool(SearchConfig(backend="local"))
    return [convert_to_openai_tool(calculator_tool), convert_to_openai_tool(search_tool)]


def generate(out_dir: Path, config: SynthConfig | None = None, **fields: Any) -> SynthReport:
    """Write train.jsonl, eval.jsonl, corpus_train/ and corpus_eval/ under ``out_dir`` (replacing them).

    ``generate(out, n_train=2000, n_eval=200, seed=0)`` or ``generate(out, SynthConfig(...))``.
    """
    config = config or SynthConfig(**fields)
    out_dir = Path(out_dir)
    seed = config.seed
    train_counts = split_counts(config.n_train, config.shares)
    eval_counts = split_counts(config.n_eval, {k: v for k, v in config.shares.items() if k in KINDS})
    # The eval can ask each held-out common-knowledge question once; what does not fit goes to the calculator.
    spare = max(eval_counts["none"] - len(chat.eval_pool()), 0)
    eval_counts["none"] -= spare
    eval_counts["calculator"] += spare

    reserved = " ".join(str(x) for x in (chat.train_pool(), chat.eval_pool(), facts.FIRST_NAMES, SYSTEM_PROMPT))
    pool = facts.NamePool(random.Random(f"synth-names-{seed}"), reserved)
    n_train_docs = config.train_docs or max(12, -(-train_counts["search"] // 4))
    n_eval_docs = config.eval_docs or max(6, -(-eval_counts["search"] // 2))
    make_world = documents.make_world if config.broad else facts.make_world
    train_world = make_world(pool, random.Random(f"synth-world-train-{seed}"), n_train_docs)
    eval_world = make_world(pool, random.Random(f"synth-world-eval-{seed}"), n_eval_docs)

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, world in (("corpus_train", train_world), ("corpus_eval", eval_world)):
        _write_corpus(out_dir / name, world)

    with tempfile.TemporaryDirectory(prefix="lorastack-synth-") as tmp:
        train_search = _search_tool(out_dir / "corpus_train", Path(tmp) / "train")
        eval_search = _search_tool(out_dir / "corpus_eval", Path(tmp) / "eval")
        rows = _train_rows(random.Random(f"synth-train-{seed}"), train_counts, train_world, train_search, config)
        items = _eval_items(random.Random(f"synth-eval-{seed}"), eval_counts, eval_world, eval_search)

    _write_jsonl(out_dir / "train.jsonl", rows)
    _write_jsonl(out_dir / "eval.jsonl", items)
    report = SynthReport(out_dir, train_counts, eval_counts, len(train_world), len(eval_world))
    logger.debug("Synthesised %s", report)
    return report


# --- pieces -------------------------------------------------------------------------------------------------


def _write_corpus(folder: Path, world: list[facts.Entity]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    for entity in world:
        path = folder / entity.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entity.document)


def _search_tool(corpus: Path, index_dir: Path) -> Any:
    from lorastack.tools.search import LocalIndex, SearchConfig, make_search_tool  # LangChain, as above

    LocalIndex(index_dir).update(corpus)
    return make_search_tool(SearchConfig(backend="local", index_dir=index_dir))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _conversation(
    question: str, call: tuple[str, dict] | None, observation: str, answer: str, plan: str = "",
    before: tuple[tuple[str, str], ...] = (),
) -> list[dict]:
    """The agent's conversation: its system prompt, any ``before`` exchanges, the question, a tool call (after the
    ``plan`` text, if any) and its observation, and the answer."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for asked, replied in before:
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": replied}]
    messages.append({"role": "user", "content": question})
    if call is not None:
        name, arguments = call
        messages += [
            {"role": "assistant", "content": plan, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": observation},
        ]  # fmt: skip
    return [*messages, {"role": "assistant", "content": answer}]


def _fact_question(
    rng: random.Random, world: list[facts.Entity], search: Any, phrasings: str
) -> tuple[facts.Entity, facts.Fact, str, str]:
    """A random (entity, fact, question, observation) whose canonical search finds the fact."""
    for _ in range(1000):
        entity = rng.choice(world)
        fact = rng.choice(entity.facts)
        question = rng.choice(getattr(fact, phrasings)).format(e=entity.name)
        observation = search.invoke({"query": fact.query.format(e=entity.name)})
        if fact.text in result_block(observation, entity.relpath):
            return entity, fact, question, observation
    raise RuntimeError("the search tool does not find the generated facts; is the corpus empty?")


def result_block(observation: str, source: str) -> str:
    """The part of a search observation that shows the result from ``source`` ('' if none does)."""
    blocks = re.split(r"(?m)^(?=\d+\. )", observation)
    return next((b for b in blocks if b.rstrip().endswith(f"source: {source}")), "")


def _train_rows(
    rng: random.Random, counts: dict[str, int], world: list[facts.Entity], search: Any, config: SynthConfig
) -> list[dict]:
    from lorastack.tools.calculator import calculator_tool  # LangChain, as above

    schemas = tool_schemas()
    kinds = [k for k in counts for _ in range(counts[k])]
    rng.shuffle(kinds)
    chat_pool, rows = (chat.broad_pool() if config.broad else chat.train_pool()), []
    for kind in kinds:
        if kind == "function":  # a client's own functions, not the agent's
            fits = rng.random() < 0.75
            make = invented.row if config.variety == "wide" and rng.random() < config.invented_share else functions.row
            rows.append(make(rng, fits=fits))
            continue
        before = (rng.choice(chat_pool),) if config.broad and rng.random() < config.history_share else ()
        if kind == "calculator":
            broad = config.broad and rng.random() < 0.75  # multi-step problems; the rest one-step
            templates = multistep.BROAD_TEMPLATES if broad else arithmetic.TRAIN_TEMPLATES
            # broad draws no number here: its rows stay the same
            if broad and config.variety == "wide" and rng.random() < config.composed_share:
                templates = composed.TEMPLATES
            problem = rng.choice(templates)(rng)
            observation = calculator_tool.invoke({"expression": problem.expression})
            arithmetic.check(problem, observation)
            messages = _conversation(problem.question, ("calculator", {"expression": problem.expression}),
                                     observation, problem.answer.format(result=observation), problem.plan, before)  # fmt: skip
        elif kind == "search":
            entity, fact, question, observation = _fact_question(rng, world, search, "train")
            query = fact.query.format(e=entity.name)
            answer = fact.answer.format(e=entity.name, v=fact.text)
            messages = _conversation(question, ("search", {"query": query}), observation, answer, before=before)
        else:
            question, reply = rng.choice(chat_pool)
            messages = _conversation(question, None, "", reply, before=before)
        rows.append({"messages": messages, "tools": schemas})
    return rows


def _eval_items(rng: random.Random, counts: dict[str, int], world: list[facts.Entity], search: Any) -> list[dict]:
    items: list[dict] = []
    seen: set[str] = set()

    def add(item: dict) -> bool:
        if item["question"] in seen:
            return False
        seen.add(item["question"])
        items.append(item)
        return True

    while sum(i["kind"] == "calculator" for i in items) < counts["calculator"]:
        problem = rng.choice(arithmetic.EVAL_TEMPLATES)(rng)
        value = problem.value
        answer: int | float = value.numerator if value.denominator == 1 else float(value)
        item = {"question": problem.question, "answer": answer, "kind": "calculator"}
        if problem.rounded or value.denominator != 1:
            item["tolerance"] = 0.01  # a cent, or the second decimal the question asks for
        add(item)
    needed = counts["search"]
    for _ in range(needed * 50):
        if sum(i["kind"] == "search" for i in items) >= needed:
            break
        entity, fact, question, _ = _fact_question(rng, world, search, "eval")
        add({"question": question, "answer": fact.value, "kind": "search", "source": entity.relpath})
    for question, answer in rng.sample(chat.eval_pool(), counts["none"]):
        add({"question": question, "answer": answer, "kind": "none"})
    rng.shuffle(items)
    return items
