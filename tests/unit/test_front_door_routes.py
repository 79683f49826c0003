"""The front door's routing, access rules and promotion checks that need no model server (the rest runs against
real vLLM in tests/integration/test_front_door.py).

The front door here serves the real embedded base model's description (so every adapter check runs against its
weights and a max rank of 16), with nothing listening upstream: whatever reaches vLLM gets a 503.
"""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from lorastack.errors import AdapterRejected, NotFound
from lorastack.serve.client import _raise_for
from lorastack.serve.front_door import FrontDoor, Routes
from lorastack.serve.keys import KeyStore, Role
from lorastack.serve.registry import Registry
from lorastack.serve.state import ServerState


@pytest.fixture
def front_door(base_model) -> FrontDoor:
    state = ServerState(
        "http://127.0.0.1:9", 0, base_model.name, base_model.path, base_model.source, "cpu", 16, 4,
        upstream_url="http://127.0.0.1:9",  # nothing listens there
    )  # fmt: skip
    return FrontDoor(state, Registry())


def _local(front_door: FrontDoor) -> TestClient:
    return TestClient(front_door.app, client=("127.0.0.1", 5000))


def test_without_keys_admin_routes_refuse_other_machines(front_door: FrontDoor) -> None:
    remote = TestClient(front_door.app, client=("203.0.113.7", 5000))
    local = _local(front_door)

    refused = remote.get("/metrics")
    assert refused.status_code == 401 and "admin key" in refused.json()["error"]["message"]
    assert remote.post("/admin/promote", json={}).status_code == 401
    assert local.get("/metrics").status_code == 200


def test_with_keys_every_route_wants_one_and_errors_are_openai_shaped(front_door: FrontDoor) -> None:
    _, admin = KeyStore().create(Role.admin)
    _, inference = KeyStore().create(Role.inference)
    local = TestClient(front_door.app, client=("127.0.0.1", 5000))

    missing = local.get("/v1/models")
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert local.get("/metrics", headers={"Authorization": f"Bearer {inference}"}).status_code == 401
    assert local.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 200


def test_upstream_down_is_a_503_with_retry_after(front_door: FrontDoor) -> None:
    local = _local(front_door)
    response = local.post("/v1/chat/completions", json={"model": front_door.base_name, "messages": []})
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


def test_only_inference_routes_take_an_inference_key(front_door: FrontDoor) -> None:
    _, inference = KeyStore().create(Role.inference)
    local = TestClient(front_door.app, client=("127.0.0.1", 5000))
    bearer = {"Authorization": f"Bearer {inference}"}
    # vLLM's other routes that change the server (SageMaker's /adapters, profiling...) are admin routes.
    assert local.delete("/adapters/support@v1", headers=bearer).status_code == 401
    assert local.post("/adapters", json={}, headers=bearer).status_code == 401
    assert local.post("/start_profile", headers=bearer).status_code == 401
    assert local.post("/v1/chat/completions", json={"model": "m"}, headers=bearer).status_code == 503  # let in


def test_malformed_requests_are_400_and_leave_nothing_in_flight(front_door: FrontDoor) -> None:
    local = TestClient(front_door.app, client=("127.0.0.1", 5000))
    for body in ('{"stream": true, "stream_options": "x"}', "[1, 2]", "not json"):
        response = local.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, body
    local.post("/v1/chat/completions", json={"model": "made-up-name"})  # upstream down: 503
    assert not front_door.routes.inflight


@pytest.mark.parametrize(
    "body",
    [{"ref": ["x"], "alias": "default"}, {"ref": "a@v1", "alias": 5}, {"alias": "default"}, {"ref": "a", "x": 1},
     {"ref": "a", "eval": {"eval_file": "e.jsonl", "min_accuracy": "0.5"}}, [1], "not json"],
)  # fmt: skip
def test_admin_bodies_of_the_wrong_shape_are_400(front_door: FrontDoor, body) -> None:
    """Regression: a list or a number where the front door wanted a string was a 500 (TypeError)."""
    content = body if isinstance(body, str) else __import__("json").dumps(body)
    response = _local(front_door).post("/admin/promote", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_promotion_checks_the_adapter_against_the_served_base_and_rank(front_door: FrontDoor, make_adapter) -> None:
    """The front door refuses, before vLLM hears of it, an adapter above its rank; the refusal keeps its type
    across the wire, and nothing switches."""
    registry = front_door.registry
    base = front_door.state.base
    registry.register("wide", make_adapter(rank=32), base, base.weight_shapes())

    response = _local(front_door).post("/admin/promote", json={"ref": "wide", "alias": "support"})

    assert response.status_code == 409 and response.json()["error"]["code"] == "adapter_rejected"
    with pytest.raises(AdapterRejected, match="max-lora-rank 16"):
        _raise_for(response, "promote wide")
    assert registry.aliases() == {} and front_door.routes.aliases == {}


def test_unknown_adapter_is_a_typed_404(front_door: FrontDoor) -> None:
    response = _local(front_door).post("/admin/promote", json={"ref": "nothing@v1"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    with pytest.raises(NotFound):
        _raise_for(response, "promote nothing")


def test_gated_promotion_without_an_evaluator_is_refused_before_loading(front_door: FrontDoor, make_adapter) -> None:
    base = front_door.state.base
    front_door.registry.register("tools", make_adapter(), base, base.weight_shapes())
    body = {"ref": "tools", "alias": "support", "eval": {"eval_file": "/nonexistent.jsonl", "min_accuracy": 0.5}}
    response = _local(front_door).post("/admin/promote", json=body)
    assert response.status_code == 502 and "without an evaluator" in response.json()["error"]["message"]
    assert front_door.registry.aliases() == {}
