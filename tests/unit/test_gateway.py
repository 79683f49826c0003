"""The front door's routing and access rules that need no model server (the rest runs against real vLLM in
tests/integration/test_front_door.py)."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from lorastack.serve.gateway import Gateway, Routes
from lorastack.serve.keys import KeyStore, Role
from lorastack.serve.registry import Registry


def _gateway() -> Gateway:
    return Gateway("http://127.0.0.1:9", Registry(), "base-model")  # nothing listens upstream


def test_without_keys_admin_routes_refuse_other_machines() -> None:
    remote = TestClient(_gateway().app, client=("203.0.113.7", 5000))
    local = TestClient(_gateway().app, client=("127.0.0.1", 5000))

    refused = remote.get("/metrics")
    assert refused.status_code == 401 and "admin key" in refused.json()["error"]["message"]
    assert remote.post("/admin/promote", json={}).status_code == 401
    assert local.get("/metrics").status_code == 200


def test_with_keys_every_route_wants_one_and_errors_are_openai_shaped() -> None:
    gateway = _gateway()
    _, admin = KeyStore().create(Role.admin)
    _, inference = KeyStore().create(Role.inference)
    local = TestClient(gateway.app, client=("127.0.0.1", 5000))

    missing = local.get("/v1/models")
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert local.get("/metrics", headers={"Authorization": f"Bearer {inference}"}).status_code == 401
    assert local.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 200


def test_upstream_down_is_a_503_with_retry_after() -> None:
    local = TestClient(_gateway().app, client=("127.0.0.1", 5000))
    response = local.post("/v1/chat/completions", json={"model": "base-model", "messages": []})
    assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
    assert local.get("/health").status_code == 503


def test_routes_count_in_flight_per_version_and_drain_waits_for_them() -> None:
    routes = Routes()
    routes.switch("support", "support@v1")
    target = routes.acquire("support")
    routes.switch("support", "support@v2")
    assert target.upstream == "support@v1" and routes.acquire("support").upstream == "support@v2"

    done = threading.Event()
    waiter = threading.Thread(target=lambda: done.set() if routes.drain("support@v1", 10) else None)
    waiter.start()
    assert not done.wait(0.2)  # still one request in flight on v1
    routes.release(target)
    waiter.join(5)
    assert done.is_set()
    assert routes.drain("support@v2", 0.1) is False  # the alias still points there


def test_only_inference_routes_take_an_inference_key() -> None:
    gateway = _gateway()
    _, inference = KeyStore().create(Role.inference)
    local = TestClient(gateway.app, client=("127.0.0.1", 5000))
    bearer = {"Authorization": f"Bearer {inference}"}
    # vLLM's other routes that change the server (SageMaker's /adapters, profiling...) are admin routes.
    assert local.delete("/adapters/support@v1", headers=bearer).status_code == 401
    assert local.post("/adapters", json={}, headers=bearer).status_code == 401
    assert local.post("/start_profile", headers=bearer).status_code == 401
    assert local.post("/v1/chat/completions", json={"model": "m"}, headers=bearer).status_code == 503  # let in


def test_malformed_requests_are_400_and_leave_nothing_in_flight() -> None:
    gateway = _gateway()
    local = TestClient(gateway.app, client=("127.0.0.1", 5000))
    for body in ('{"stream": true, "stream_options": "x"}', "[1, 2]", "not json"):
        response = local.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, body
    local.post("/v1/chat/completions", json={"model": "made-up-name"})  # upstream down: 503
    assert not gateway.routes.inflight
