"""Adapters served on their first request, at most N at once, on the session's real vLLM CPU server.

The session server runs with max_loras=4 (and vLLM's host cache of 4); the test gives its front door 4 slots for
its own adapters (on top of the pinned ones other tests left), then takes the limit away again.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from lorastack.testing import vary_adapter

pytestmark = pytest.mark.vllm

PROMPT = [{"role": "user", "content": "Name a colour."}]
COUNT, SLOTS = 20, 4


def _chat(client: openai.OpenAI, model: str) -> str:
    response = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=6, temperature=0)
    return response.choices[0].message.content


def _metric(text: str, name: str, adapter: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{adapter="{adapter}"'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def fleet(vllm_server, make_adapter: Callable[..., Path], base_model, base_shapes, tmp_path_factory) -> Iterator:
    """20 registered adapters (none loaded) and 4 slots for them; od-00 pinned."""
    registry, door = vllm_server.registry, vllm_server.server.front_door
    residency = door.residency
    folder = tmp_path_factory.mktemp("fleet")
    names = [f"od-{i:02d}" for i in range(COUNT)]
    for i, name in enumerate(names):
        registry.register(name, vary_adapter(make_adapter(seed=7), folder / name, seed=100 + i, scale=3), base_model,
                          base_shapes)  # fmt: skip
    vllm_server.state.client.pin("od-00", True)
    with door.routes.lock:
        pinned_by_others = sum(1 for n in residency.resident if residency.pinned(n))
    residency.capacity = pinned_by_others + SLOTS
    try:
        yield vllm_server, names
    finally:
        residency.capacity = None
        for name in names:
            if name in residency.resident:
                residency.unload_adapter(name)


def test_a_random_stream_over_20_adapters_in_4_slots(fleet) -> None:
    server, names = fleet
    client, residency = server.openai(), server.server.front_door.residency
    metrics_url = f"{server.state.url}/metrics"
    base = _chat(client, server.state.base_name)
    # Each adapter alone first: its answer, from a first request that loads it (and evicts another).
    reference = {name: _chat(client, name) for name in names}
    assert "od-00" in residency.resident and len(set(reference.values())) >= COUNT - 2, reference
    assert base not in reference.values()

    stream = random.Random(18).choices(names, k=80)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda name: (name, _chat(client, name)), stream))

    wrong = [(name, answer, reference[name]) for name, answer in answers if answer != reference[name]]
    assert not wrong, wrong  # 0 errors (any would have raised), and each answer is its own adapter's
    metrics = httpx.get(metrics_url).text
    assert _metric(metrics, "lorastack_adapter_evictions_total", "od-00") == 0
    assert sum(_metric(metrics, "lorastack_adapter_evictions_total", n) for n in names) >= COUNT - SLOTS
    assert "od-00" in residency.resident
    mine = [n for n in server.vllm.served_adapters() if n in names]
    assert len(mine) <= SLOTS and "od-00" in mine
    assert _metric(metrics, "lorastack_adapter_first_request_load_seconds_count", "od-05") >= 1


def test_concurrent_first_requests_load_once(fleet) -> None:
    server, names = fleet
    client, residency = server.openai(), server.server.front_door.residency
    name = next(n for n in names if n not in residency.resident)
    loads = lambda: _metric(httpx.get(f"{server.state.url}/metrics").text, "lorastack_adapter_loads_total", name)  # noqa: E731
    before = loads()

    with ThreadPoolExecutor(8) as pool:
        answers = set(pool.map(lambda _: _chat(client, name), range(8)))

    assert len(answers) == 1
    assert loads() == before + 1


def test_models_lists_registered_adapters_loaded_or_not(fleet) -> None:
    server, names = fleet
    residency = server.server.front_door.residency
    listed = {m["id"]: m for m in httpx.get(f"{server.state.url}/v1/models").json()["data"]}
    assert set(names) <= set(listed)
    unloaded = next(n for n in names if n not in residency.resident)
    assert listed[unloaded]["loaded"] is False and listed[unloaded]["parent"] == server.state.base_name
    assert listed[unloaded]["root"] == f"{unloaded}@v1"


def test_a_load_that_fails_is_an_openai_error(fleet, make_adapter: Callable[..., Path], base_model, base_shapes,
                                              tmp_path: Path) -> None:  # fmt: skip
    server, _ = fleet
    registry, client = server.registry, server.openai()
    broken = registry.register("od-broken", shutil.copytree(make_adapter(seed=7), tmp_path / "b"), base_model,
                               base_shapes)  # fmt: skip
    (broken.path / "adapter_model.safetensors").write_bytes(b"changed on disk")

    with pytest.raises(openai.ConflictError) as refused:
        _chat(client, "od-broken")

    assert refused.value.body["code"] == "adapter_rejected" and "sha256" in refused.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        _chat(client, "od-never-registered")
