"""The front door on the real vLLM CPU server: aliases with promotion under load and rollback, API keys,
per-version metrics, and recovery when vLLM dies."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import threading
import time

import httpx
import openai
import pytest

from lorastack.errors import LorastackError
from lorastack.serve.keys import KeyStore, Role

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def support(vllm_server, make_adapter):
    """support@v1 and support@v2: two different random adapters, registered."""
    registry, base = vllm_server.registry, vllm_server.state.base
    shapes = base.weight_shapes()
    return [registry.register("support", make_adapter(seed=s), base, shapes) for s in (21, 22)]


def _stream(client, model: str, out: list, errors: list, started: threading.Semaphore) -> None:
    """One stream's models into ``out``; ``started`` is released once its first chunk came (or it failed)."""
    models: set[str] = set()
    try:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Count slowly from one to fifty."}],
            max_tokens=48, temperature=0, stream=True,
        )  # fmt: skip
        for chunk in stream:
            if not models:
                started.release()
            models.add(chunk.model)
        out.append(models)
    except Exception as exc:  # noqa: BLE001 - any failure is what the test counts
        errors.append(exc)
        if not models:
            started.release()


def _served(vllm_server) -> set[str]:
    """What vLLM itself serves, behind the front door."""
    return {m["id"] for m in vllm_server.vllm.models()}


def test_promotion_under_streaming_load_then_rollback(vllm_server, support) -> None:
    v1, v2 = support
    client, admin = vllm_server.openai(), vllm_server.state.client
    admin.promote(v1.ref, "support")
    assert client.chat.completions.create(model="support", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2).model == "support@v1"  # fmt: skip

    results: list[set] = []
    errors: list[Exception] = []
    started = threading.Semaphore(0)
    threads = [threading.Thread(target=_stream, args=(client, "support", results, errors, started)) for _ in range(4)]
    for t in threads:
        t.start()
    assert all(started.acquire(timeout=120) for _ in threads)  # every stream under way (not a guessed sleep)
    admin.promote(v2.ref, "support")
    after = client.chat.completions.create(model="support", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    for t in threads:
        t.join(timeout=300)

    assert errors == [] and len(results) == 4
    assert all(len(models) == 1 for models in results), results  # each response from one version
    assert {"support@v1"} in results  # streams under way at the switch finished on the old version
    assert after.model == "support@v2"
    deadline = time.monotonic() + 60  # v1 is unloaded once its streams have drained
    while "support@v1" in _served(vllm_server) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "support@v1" not in _served(vllm_server)
    listed = {m.id: m for m in client.models.list().data}
    assert listed["support"].root == "support@v2"

    admin.rollback("support")
    assert vllm_server.registry.alias("support").ref == v1.ref
    assert client.chat.completions.create(model="support", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2).model == "support@v1"  # fmt: skip


def test_failed_promotion_changes_nothing(vllm_server, support, make_adapter) -> None:
    registry, admin = vllm_server.registry, vllm_server.state.client
    base = vllm_server.state.base
    broken = registry.register("support", make_adapter(seed=23), base, base.weight_shapes())
    (broken.path / "adapter_model.safetensors").write_bytes(b"garbage")
    before_alias = registry.alias("support")
    # A version an earlier promotion or rollback left is unloaded in the background once it drains: wait for that,
    # so that what is served before the failed promotion is what the server means to keep.
    retiring = {v.ref for v in support} - {before_alias.ref if before_alias else None}
    deadline = time.monotonic() + 60
    while retiring & _served(vllm_server) and time.monotonic() < deadline:
        time.sleep(0.5)
    before_served = _served(vllm_server)
    assert not retiring & before_served, before_served

    with pytest.raises(LorastackError, match="sha256"):
        admin.promote(broken.ref, "support")

    assert registry.alias("support") == before_alias
    assert _served(vllm_server) == before_served


def test_api_keys_guard_inference_and_admin_routes(vllm_server) -> None:
    store = KeyStore(vllm_server.registry.home)
    inference_info, inference = store.create(Role.inference, "test")
    admin_info, admin = store.create(Role.admin, "test")
    url = vllm_server.state.url
    chat = {"model": vllm_server.state.base_name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    routes = [
        ("GET", "/v1/models", None, Role.inference),
        ("POST", "/v1/chat/completions", chat, Role.inference),
        ("POST", "/admin/adapters/load", {"ref": "x"}, Role.admin),
        ("POST", "/admin/promote", {}, Role.admin),
        ("GET", "/metrics", None, Role.admin),
    ]
    try:
        time.sleep(1.1)  # the key cache re-reads at least once a second
        for method, path, body, needed in routes:
            for key, role in ((None, None), ("lsk-wrong", None), (inference, Role.inference), (admin, Role.admin)):
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                status = httpx.request(method, url + path, json=body, headers=headers, timeout=120).status_code
                allowed = role is Role.admin or role == needed
                assert (status != 401) == allowed, (method, path, role, status)
    finally:
        store.revoke(inference_info.id)
        store.revoke(admin_info.id)
    time.sleep(1.1)
    assert httpx.get(f"{url}/v1/models").status_code == 200


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_metrics_count_requests_and_tokens_per_version(vllm_server, support) -> None:
    client, url = vllm_server.openai(), vllm_server.state.url
    vllm_server.state.client.promote(support[1].ref, "metered")
    before = httpx.get(f"{url}/metrics").text
    usages = [client.chat.completions.create(model="metered", messages=[{"role": "user", "content": f"hi {i}"}],
                                             max_tokens=5).usage for i in range(3)]  # fmt: skip
    streamed = list(client.chat.completions.create(
        model="metered", messages=[{"role": "user", "content": "hello"}], max_tokens=5, stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model-7", messages=[{"role": "user", "content": "hi"}])
    after = httpx.get(f"{url}/metrics").text

    labels = {"alias": "metered", "version": "v2"}

    def delta(name: str, **extra: str) -> float:
        return _metric(after, name, **labels, **extra) - _metric(before, name, **labels, **extra)

    assert delta("lorastack_requests_total", status="200") == 4
    assert delta("lorastack_completion_tokens_total") >= sum(u.completion_tokens for u in usages) + 1
    assert delta("lorastack_request_seconds_count") == 4
    assert delta("lorastack_time_to_first_token_seconds_count") == 4
    assert all(c.usage is None for c in streamed)
    # Unknown model names share one label (clients cannot grow the label set without bound).
    assert "no-such-model-7" not in after
    assert _metric(after, "lorastack_requests_total", alias="unknown", status="404") >= 1  # the usage chunk the front door asked for is not passed on


def test_vllm_dying_gives_503_then_recovers_with_aliases(vllm_server, support) -> None:
    client = vllm_server.openai()
    vllm_server.state.client.promote(support[0].ref, "survivor")
    stream = client.chat.completions.create(
        model="survivor", messages=[{"role": "user", "content": "Tell a long story."}], max_tokens=400,
        temperature=0, stream=True, extra_body={"ignore_eos": True},
    )  # fmt: skip
    next(iter(stream))  # under way
    os.killpg(vllm_server.server.state.engine_pid, signal.SIGKILL)
    # The stream ends with an SSE error event the client reads as an error, not a silently cut-off answer.
    with pytest.raises(openai.APIError) as ended:
        for _ in stream:
            pass
    assert not isinstance(ended.value, openai.APIConnectionError)
    assert "stopped while answering" in str(ended.value)

    deadline, saw_503 = time.monotonic() + 30, None
    while time.monotonic() < deadline and saw_503 is None:
        response = httpx.post(f"{vllm_server.state.url}/v1/chat/completions", timeout=30, json={
            "model": "survivor", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        if response.status_code == 503:
            saw_503 = response
    assert saw_503 is not None and saw_503.headers["retry-after"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not (
        vllm_server.server.restarts >= 1 and httpx.get(f"{vllm_server.state.url}/health").status_code == 200
    ):
        time.sleep(1)
    reply = client.chat.completions.create(model="survivor", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert reply.model == "support@v1"
    assert vllm_server.server.restarts >= 1


def _running(vllm_server, state: str = "running") -> float:
    """vLLM's own gauge of requests it is generating for (or, ``state="waiting"``, has queued)."""
    text = httpx.get(f"{vllm_server.state.upstream_url}/metrics", timeout=10).text
    return _metric(text, f"vllm:num_requests_{state}")


def test_a_client_that_gives_up_stops_its_generation(vllm_server) -> None:
    """Regression: a non-streaming client that timed out left vLLM generating (34 s later, still running)."""
    body = json.dumps({"model": vllm_server.state.base_name, "max_tokens": 1500, "ignore_eos": True,
                       "messages": [{"role": "user", "content": "Tell a long story."}]}).encode()  # minutes on a CPU
    url = httpx.URL(vllm_server.state.url)
    # A raw connection, so that the client gives up exactly when vLLM is generating for it: a timeout-based
    # client had to guess how long a loaded 2-core CI machine takes to schedule the request (and guessed wrong).
    with socket.create_connection((url.host, url.port), timeout=10) as client:  # closed on leaving: it gives up
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (url.host.encode(), url.port, len(body), body))  # fmt: skip
        sent, seen, early = time.monotonic(), 0.0, b""
        while seen < 1 and not early and time.monotonic() - sent < 120:
            seen = _running(vllm_server)
            if select.select([client], [], [], 0.05)[0]:
                early = client.recv(4096) or b"(connection closed)"
        waited, queued = time.monotonic() - sent, _running(vllm_server, "waiting")
    assert not early, f"the front door answered before generating ({waited:.1f} s): {early[:600]!r}"
    assert seen >= 1, f"vLLM did not run the request in {waited:.0f} s ({queued} waiting)"
    deadline = time.monotonic() + 10
    while _running(vllm_server) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _running(vllm_server) == 0, f"vLLM still generating 10 s after the client left (it started in {waited:.1f} s)"


def test_raw_lora_routes_never_reach_vllm(vllm_server, support, make_adapter) -> None:
    """Regression: POST /v1/load_lora_adapter with load_inplace swapped the weights behind an alias while the
    registry still showed the old version and its sha256."""
    client, url = vllm_server.openai(), vllm_server.state.url
    vllm_server.state.client.promote(support[0].ref, "guarded")
    ask = {"model": "guarded", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 12,
           "temperature": 0}
    before = client.chat.completions.create(**ask).choices[0].message.content
    substitute = make_adapter(seed=99)
    for path, body in (("/v1/load_lora_adapter", {"lora_name": support[0].ref, "lora_path": str(substitute),
                                                   "load_inplace": True}),
                       ("/v1/load_lora_adapter", {"lora_name": "../../x", "lora_path": str(substitute)}),
                       ("/v1/unload_lora_adapter", {"lora_name": support[0].ref})):  # fmt: skip
        response = httpx.post(url + path, json=body, timeout=30)
        assert response.status_code == 404 and response.json()["error"]["code"] == "route_not_found"
    # Nor can a local process go round the front door: vLLM answers its private key alone.
    direct = httpx.post(f"{vllm_server.state.upstream_url}/v1/load_lora_adapter", timeout=30,
                        json={"lora_name": "sneaky", "lora_path": str(substitute)})  # fmt: skip
    assert direct.status_code == 401
    assert client.chat.completions.create(**ask).choices[0].message.content == before
    assert "sneaky" not in {m["id"] for m in vllm_server.vllm.models()}
