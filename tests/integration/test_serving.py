"""Serving against a real vLLM (CPU build) server, driven with the official openai client.

One server for the session (see conftest.vllm_server); the restart test runs last in this module.
"""

from __future__ import annotations

import openai
import pytest

from lorastack.errors import AdapterRejected
from lorastack.serve.loading import load_adapter, unload_adapter

pytestmark = pytest.mark.vllm

PROMPT = [{"role": "user", "content": "Name a colour."}]


def _chat(client, model: str) -> str:
    response = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=8, temperature=0)
    return response.choices[0].message.content


def _first_token_logprobs(client, model: str) -> dict[str, float]:
    """The top 5 candidates for the first token and their log-probabilities: they move with any change of the
    weights, also where the greedy text does not (on a random-init base model, two random adapters can both
    answer with the same repeated token)."""
    response = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=1, temperature=0,
                                              logprobs=True, top_logprobs=5)  # fmt: skip
    return {c.token: c.logprob for c in response.choices[0].logprobs.content[0].top_logprobs}


def _moved(before: dict[str, float], after: dict[str, float]) -> float:
    """How far the first token's distribution moved (a candidate in one top-5 only counts as moved by 1)."""
    return max(abs(before[t] - after[t]) if t in before and t in after else 1.0 for t in {*before, *after})


@pytest.fixture(scope="module")
def two_adapters(vllm_server, make_adapter, base_model, base_shapes):
    registry = vllm_server.registry
    for name, seed in (("alpha", 1), ("beta", 2)):
        registry.register(name, make_adapter(seed=seed), base_model, base_shapes)
        load_adapter(registry, name, vllm_server.state)
    return vllm_server


def test_models_lists_loaded_adapters_with_base_as_parent(two_adapters) -> None:
    models = {m.id: m for m in two_adapters.openai().models.list().data}
    base = two_adapters.state.base_name
    assert {base, "alpha", "beta"} <= set(models)  # the session's server also has other tests' adapters
    assert all(m.parent == base for name, m in models.items() if name != base)
    assert models[base].parent is None


def test_base_and_adapters_answer_differently(two_adapters) -> None:
    client = two_adapters.openai()
    answers = {model: _chat(client, model) for model in (two_adapters.state.base_name, "alpha", "beta")}
    assert len(set(answers.values())) == 3, answers


def test_unknown_adapter_gets_openai_404(two_adapters) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        _chat(two_adapters.openai(), "no-such-adapter")
    assert missing.value.status_code == 404
    assert "no-such-adapter" in str(missing.value.body)


def test_runtime_load_then_unload(vllm_server, make_adapter, base_model, base_shapes) -> None:
    registry, state, client = vllm_server.registry, vllm_server.state, vllm_server.openai()
    registry.register("gamma", make_adapter(seed=3), base_model, base_shapes)

    result = load_adapter(registry, "gamma", state)
    assert result.live
    assert "gamma" in {m.id for m in client.models.list().data}
    assert _chat(client, "gamma")

    assert unload_adapter(registry, "gamma", state) is True
    assert "gamma" not in vllm_server.vllm.served_adapters()
    assert "gamma" not in {a.name for a in registry.loaded()}
    listed = {m.id: m for m in client.models.list().data}
    assert listed["gamma"].model_extra["loaded"] is False  # still registered: listed, and loaded on request
    assert _chat(client, "gamma")
    assert "gamma" in vllm_server.vllm.served_adapters()


def test_new_version_replaces_the_served_one(vllm_server, make_adapter, base_model, base_shapes) -> None:
    registry, state, client = vllm_server.registry, vllm_server.state, vllm_server.openai()
    registry.register("delta", make_adapter(seed=4), base_model, base_shapes)
    load_adapter(registry, "delta", state)
    first = _first_token_logprobs(client, "delta")
    assert _moved(first, _first_token_logprobs(client, "delta")) < 1e-3  # repeatable while nothing changed
    registry.register("delta", make_adapter(seed=5), base_model, base_shapes)

    result = load_adapter(registry, "delta@v2", state)

    assert result.replaced == 1
    assert vllm_server.vllm.served_adapters()["delta"] == str(registry.get("delta@v2").path)
    served = {m.id: m.root for m in client.models.list().data}
    assert served["delta"] == "delta"  # clients see names, never the store's paths
    assert _moved(first, _first_token_logprobs(client, "delta")) > 1e-2  # v2's weights answer, not v1's
    unload_adapter(registry, "delta", state)


def test_failed_load_leaves_registry_and_server_as_they_were(vllm_server, make_adapter, base_model, base_shapes) -> None:
    registry, state, client = vllm_server.registry, vllm_server.state, vllm_server.openai()
    registry.register("wide", make_adapter(rank=32), base_model, base_shapes)  # server allows 16
    served_before = {m.id for m in client.models.list().data}
    loaded_before = [a.ref for a in registry.loaded()]

    with pytest.raises(AdapterRejected, match="above the server's --max-lora-rank 16"):
        load_adapter(registry, "wide", state)

    assert {m.id for m in client.models.list().data} == served_before
    assert [a.ref for a in registry.loaded()] == loaded_before


def test_restart_restores_loaded_adapters(two_adapters, make_adapter, base_model, base_shapes) -> None:
    server = two_adapters
    registry = server.registry
    # Marked while the server is down: loaded at the next start too.
    server.server.stop()
    registry.register("epsilon", make_adapter(seed=6), base_model, base_shapes)
    assert not load_adapter(registry, "epsilon", None).live

    server.start()

    assert server.server.restore_errors == []
    assert server.state.max_lora_rank == 32  # sized for the rank-32 adapter registered above
    served = {m.id for m in server.openai().models.list().data}
    assert {"alpha", "beta", "epsilon"} <= served
    assert _chat(server.openai(), "epsilon")
