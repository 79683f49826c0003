"""The closed loop on the real vLLM CPU server: the bundled demo adapter against the base model on held-out
questions (templates, numbers and facts it never saw), and the eval-gated promotion that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorastack.agent.config import AgentConfig
from lorastack.agent.eval_run import run_eval
from lorastack.agent.evaluate import load_items
from lorastack.finetune.synth import generate
from lorastack.errors import AdapterRejected
from lorastack.serve.demo import DEMO_NAME, demo_adapter_dir
from lorastack.serve.loading import load_adapter
from lorastack.evaluation import EvalRequirement
from lorastack.serve.promote import promote

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh held-out set of the generator the demo adapter learned from (broad; seed 11, it was trained on seed
    0's train split)."""
    out = tmp_path_factory.mktemp("synth")
    generate(out, n_train=1, n_eval=40, seed=11, variety="broad")
    return out


def _slice(held_out: Path, per_kind: dict[str, int], to: Path) -> Path:
    """The first N eval items of each kind, as a JSONL file."""
    taken: list[str] = []
    left = dict(per_kind)
    for line in (held_out / "eval.jsonl").read_text().splitlines():
        kind = json.loads(line)["kind"]
        if left.get(kind, 0) > 0:
            taken.append(line)
            left[kind] -= 1
    to.write_text("\n".join(taken) + "\n")
    return to


@pytest.fixture(scope="module")
def demo(vllm_server):
    registry = vllm_server.registry
    base = vllm_server.state.base
    adapter = registry.register(DEMO_NAME, demo_adapter_dir(), base, base.weight_shapes())
    load_adapter(registry, adapter.ref, vllm_server.state)
    return adapter


def test_demo_adapter_uses_its_tools_and_beats_the_base(vllm_server, demo, held_out, tmp_path) -> None:
    items = load_items(_slice(held_out, {"calculator": 6, "search": 6}, tmp_path / "slice.jsonl"))
    config = AgentConfig(base_url=f"{vllm_server.state.url}/v1")

    adapter, base = run_eval(items, config, [demo.name, vllm_server.state.base_name], held_out / "corpus_eval")

    assert adapter.accuracy >= 2 / 3, [(r.item.question, r.answer) for r in adapter.results if not r.correct]
    assert adapter.accuracy > base.accuracy
    assert adapter.tool_call_count >= len(items) and adapter.valid_tool_calls == 1.0


def test_eval_requirement_promotes_a_better_adapter_and_refuses_a_worse_one(
    vllm_server, demo, held_out, make_adapter, tmp_path
) -> None:
    registry, server = vllm_server.registry, vllm_server.state
    items = _slice(held_out, {"calculator": 2, "search": 2}, tmp_path / "requirement.jsonl")
    requirement = EvalRequirement(items, min_accuracy=0.5, corpus=held_out / "corpus_eval")

    promoted = promote(registry, demo.ref, "gated", server, requirement)

    assert registry.alias("gated").ref == demo.ref
    assert promoted.accuracy >= 0.5 and promoted.accuracy > promoted.baseline
    # A random adapter cannot beat it: refused, and the alias, the registry's loaded set and the server stay.
    rival = registry.register("rival", make_adapter(seed=5), server.base, server.base.weight_shapes())
    loaded_before, served_before = registry.loaded(), set(vllm_server.vllm.served_adapters())
    with pytest.raises(AdapterRejected, match="stays where it is"):
        promote(registry, rival.ref, "gated", server, requirement)
    assert registry.alias("gated").ref == demo.ref
    assert registry.loaded() == loaded_before
    assert set(vllm_server.vllm.served_adapters()) == served_before
