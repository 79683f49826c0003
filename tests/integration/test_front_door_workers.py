"""The front door as several processes (``--workers 2``) on the session's real vLLM: streams relayed by the
workers, admin work done by the control process, promotions that every worker sees before the promote returns,
metrics summed over the processes, and a worker killed with SIGKILL replaced while the others serve."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from lorastack.access import Role
from lorastack.serve.config import ServeConfig
from lorastack.serve.keys import KeyStore
from lorastack.serve.registry import Registry
from lorastack.serve.server import start_server
from tests.conftest import free_port

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def door(vllm_server, tmp_path_factory):
    """A second lorastack server, two workers, attached to the session's vLLM (no second vLLM), own registry."""
    registry = Registry(tmp_path_factory.mktemp("workers-home"))
    config = ServeConfig(
        port=free_port(), vllm_url=vllm_server.state.upstream_url, demo_adapter=False, workers=2,
        vllm_api_key=vllm_server.server.front_door.upstream_key,
    )  # fmt: skip
    server = start_server(config, registry)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def versions(door, vllm_server, make_adapter):
    base = vllm_server.state.base
    shapes = base.weight_shapes()
    return [door.registry.register("wsupport", make_adapter(seed=s), base, shapes) for s in (31, 32)]


def _openai(door):
    from openai import OpenAI

    return OpenAI(base_url=f"{door.state.url}/v1", api_key="unused", max_retries=0, timeout=300)


def _chat(client, model: str, stream: bool = False):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                          temperature=0, stream=stream)  # fmt: skip


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_workers_listen_on_the_port_and_the_control_process_does_not(door) -> None:
    assert len(door.pool.pids()) == 2
    assert door.state.pid == os.getpid() and os.getpid() not in door.pool.pids()
    health = httpx.get(f"{door.state.url}/health", timeout=10)
    assert health.status_code == 200
    # The workers' own route is not there for clients, whatever headers they send.
    sync = httpx.post(f"{door.state.url}/_lorastack/sync", json={"worker": 0}, timeout=10,
                      headers={"x-lorastack-worker": "guess", "x-lorastack-client": "127.0.0.1"})  # fmt: skip
    assert sync.status_code == 404 and sync.json()["error"]["code"] == "route_not_found"


def test_promotion_through_workers_switches_every_worker_before_it_returns(door, versions) -> None:
    v1, v2 = versions
    client, admin = _openai(door), door.state.client
    assert admin.load(v1.ref)["ref"] == v1.ref  # admin call on the public port: forwarded to the control process
    admin.promote(v1.ref, "wsupport")
    assert {_chat(client, "wsupport").model for _ in range(6)} == {"wsupport@v1"}

    streams: list[set] = []
    failures: list[Exception] = []

    def stream() -> None:
        try:
            chunks = client.chat.completions.create(
                model="wsupport", messages=[{"role": "user", "content": "Count slowly from one to fifty."}],
                max_tokens=40, temperature=0, stream=True,
            )  # fmt: skip
            streams.append({chunk.model for chunk in chunks})
        except Exception as exc:  # noqa: BLE001 - any failure is what the test counts
            failures.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    admin.promote(v2.ref, "wsupport")
    # Whichever worker the kernel hands each new connection to, it already routes to v2.
    after = {_chat(_openai(door), "wsupport").model for _ in range(8)}  # a new connection each
    for t in threads:
        t.join(timeout=300)
    assert failures == [] and len(streams) == 4
    assert all(len(models) == 1 for models in streams)
    assert after == {"wsupport@v2"}
    # v1 is unloaded once no worker has a request on it in flight.
    deadline = time.monotonic() + 60
    while "wsupport@v1" in door.front_door.vllm.served_adapters() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "wsupport@v1" not in door.front_door.vllm.served_adapters()


def test_metrics_sum_what_every_worker_served(door) -> None:
    before = _metric(door.state.client.metrics(), "lorastack_requests_total", alias=door.state.base_name)
    for i in range(6):
        list(_chat(_openai(door), door.state.base_name, stream=bool(i % 2)))  # a new connection each
    text = door.state.client.metrics()  # at once: the control asks every worker for its figures as of now
    assert _metric(text, "lorastack_requests_total", alias=door.state.base_name, status="200") == before + 6
    assert _metric(text, "lorastack_request_seconds_count", alias=door.state.base_name) == before + 6
    # One family per name (a merged exposition, not one per process).
    assert text.count("# TYPE lorastack_requests_total counter") + text.count("# TYPE lorastack_requests counter") == 1


def test_an_unknown_model_is_answered_by_the_control_process(door) -> None:
    answer = httpx.post(f"{door.state.url}/v1/chat/completions", timeout=30,
                        json={"model": "no-such-adapter", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert answer.status_code == 404 and answer.json()["error"]["message"]


def test_keys_created_and_revoked_reach_every_worker(door) -> None:
    keys = KeyStore(door.registry.home)
    info, secret = keys.create(Role.inference, "workers-test")
    try:
        url = f"{door.state.url}/v1/models"
        assert all(httpx.get(url, timeout=10).status_code == 401 for _ in range(4))
        assert all(
            httpx.get(url, timeout=10, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
            for _ in range(4)
        )
        body = {"model": door.state.base_name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        chat = f"{door.state.url}/v1/chat/completions"
        assert all(httpx.post(chat, json=body, timeout=30).status_code == 401 for _ in range(4))
    finally:
        keys.revoke(info.id)
    assert all(httpx.post(chat, json=body, timeout=30).status_code == 200 for _ in range(4))


def test_a_killed_worker_is_replaced_and_the_other_keeps_serving(door) -> None:
    victim = door.pool.pids()[0]
    os.kill(victim, signal.SIGKILL)
    answered = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _chat(_openai(door), door.state.base_name)
            answered += 1
        except Exception:  # noqa: BLE001 - a connection the dying worker had accepted
            pass
        pids = door.pool.pids()
        if victim not in pids and len(pids) == 2 and answered >= 3 and door.pool.applied(door.pool.generation, 1):
            break
        time.sleep(0.2)
    assert victim not in door.pool.pids() and len(door.pool.pids()) == 2
    assert all(_chat(_openai(door), door.state.base_name).choices for _ in range(4))


def test_first_request_through_a_worker_loads_and_an_eviction_reaches_every_worker(door, vllm_server,
                                                                                   make_adapter) -> None:
    base = vllm_server.state.base
    shapes = base.weight_shapes()
    for name, seed in (("wlazy", 33), ("wlazy2", 34)):
        door.registry.register(name, make_adapter(seed=seed), base, shapes)
    assert _chat(_openai(door), "wlazy").model == "wlazy"  # not loaded: the worker hands it to the control
    assert "wlazy" in door.pool.state["direct"]  # loaded and published: the workers relay it themselves now
    residency = door.front_door.residency
    for other in residency.resident - {"wlazy"}:
        residency.touch(other)  # wlazy is the least recently used (the shared vLLM holds other tests' adapters)
    residency.capacity = len(residency.resident)  # full: the next load evicts the least recently used unpinned
    try:
        assert _chat(_openai(door), "wlazy2").model == "wlazy2"
        assert "wlazy" not in door.pool.state["direct"]
        assert "wlazy" not in door.front_door.vllm.served_adapters()
        assert _chat(_openai(door), "wlazy").model == "wlazy"  # evicted: its next request loads it again
    finally:
        residency.capacity = None


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        ("POST", "/v1/chat/completions", b'{"model": "x", "messages": [', 400),  # cut-off JSON: the worker refuses
        ("POST", "/v1/chat/completions", b'{"model": NaN, "messages": []}', 400),
        ("POST", "/v1/completions", b"[1, 2, 3]", 400),
        ("POST", "/admin/promote", b'{"ref": 5}', 400),  # forwarded: the control refuses, as with one process
        ("GET", "/v1/load_lora_adapter", b"", 404),
        ("DELETE", "/admin/aliases", b"", 404),
        ("POST", "/_lorastack/sync", b'{"worker": 0, "generation": 99}', 404),
    ],
)
def test_hostile_requests_through_a_worker_get_the_same_4xx_as_one_process(door, method, path, content,
                                                                         status) -> None:  # fmt: skip
    answer = httpx.request(method, f"{door.state.url}{path}", content=content, timeout=30,
                           headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"]


def test_a_body_over_the_limit_is_refused_by_the_worker(door) -> None:
    answer = httpx.post(f"{door.state.url}/v1/chat/completions", content=b"x" * (33 * 2**20), timeout=60,
                        headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code == 413
