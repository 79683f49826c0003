"""The front door's routing, access rules and promotion checks that need no model server (the rest runs against
real vLLM in tests/integration/test_front_door.py).

The front door here serves the real embedded base model's description (so every adapter check runs against its
weights and a max rank of 16), with nothing listening upstream: whatever reaches vLLM gets a 503.
"""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from lorastack.errors import AdapterRejected, NotFound, Unauthorized
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
    chat = {"model": front_door.base_name, "messages": [{"role": "user", "content": "hi"}]}
    response = local.post("/v1/chat/completions", json=chat)
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
    _, admin = KeyStore().create(Role.admin)
    local = _local(front_door)
    bearer = {"Authorization": f"Bearer {inference}"}
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert local.post("/admin/adapters/load", json={"ref": "x"}, headers=bearer).status_code == 401
    assert local.post("/admin/promote", json={"ref": "x"}, headers=bearer).status_code == 401
    assert local.post("/v1/chat/completions", json=chat, headers=bearer).status_code == 503  # let in
    # vLLM's own LoRA routes, SageMaker's /adapters, profiling...: not forwarded, whatever the key.
    for method, path in (("POST", "/v1/load_lora_adapter"), ("POST", "/v1/unload_lora_adapter"),
                         ("DELETE", "/adapters/support@v1"), ("POST", "/adapters"), ("POST", "/start_profile")):
        for key in (inference, admin):
            response = local.request(method, path, json={"lora_name": "default", "lora_path": "/tmp"},
                                     headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 404 and response.json()["error"]["code"] == "route_not_found"


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
     {"ref": "a", "eval": {"eval_file": "e.jsonl", "min_accuracy": "0.5"}}, [1], "not json",
     {"ref": "a", "eval": {"min_accuracy": 0.5}}, {"ref": "a", "eval": {"eval_files": [], "min_accuracy": 0.5}},
     {"ref": "a", "eval": {"eval_file": "e.jsonl", "eval_files": ["f.jsonl"], "min_accuracy": 0.5}},
     {"ref": "a", "eval": {"eval_files": "e.jsonl", "min_accuracy": 0.5}}],
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
    for files in ({"eval_file": "/nonexistent.jsonl"}, {"eval_files": ["/a.jsonl", "/b.jsonl"]}):
        body = {"ref": "tools", "alias": "support", "eval": {**files, "min_accuracy": 0.5}}
        response = _local(front_door).post("/admin/promote", json=body)
        assert response.status_code == 502 and "without an evaluator" in response.json()["error"]["message"]
        assert front_door.registry.aliases() == {}


_CHAT = '{"model": "m", "messages": [{"role": "user", "content": "hi"}]%s}'
HOSTILE_BODIES = {
    "NaN": _CHAT % ', "temperature": NaN',
    "Infinity": _CHAT % ', "temperature": Infinity',
    "-Infinity": _CHAT % ', "top_p": -Infinity',
    "lone surrogate in content": '{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "lone surrogate in model": '{"model": "\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
    "lone surrogate in a key": _CHAT % ', "\\ud800": 1',
    "nested 10,000 deep": _CHAT % (', "x": ' + "[" * 10_000 + "]" * 10_000),
    "nested 65 deep": _CHAT % (', "x": ' + "[" * 65 + "]" * 65),
    "model an object": '{"model": {}, "messages": [{"role": "user", "content": "hi"}]}',
    "model a number": '{"model": 5, "messages": [{"role": "user", "content": "hi"}]}',
    "stream a string": _CHAT % ', "stream": "false"',
    "stream_options a string": _CHAT % ', "stream_options": "x"',
    "an array": "[1, 2]",
    "not JSON": "not json",
    "empty": "",
}  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_BODIES)
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize"])
def test_hostile_bodies_are_4xx_with_the_openai_body(front_door: FrontDoor, route: str, name: str) -> None:
    """Regression: NaN, Infinity, lone surrogates and deep nesting were plain-text 500s (httpx could not re-encode
    them); "model": {} was answered by the base model and "stream": "false" taken as true."""
    response = _local(front_door).post(route, content=HOSTILE_BODIES[name].encode("utf-8", "surrogatepass"),
                                       headers={"content-type": "application/json"})  # fmt: skip
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:200])
    assert response.status_code != 404 or route == "/tokenize"
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error" and error["code"]
    assert not front_door.routes.inflight


def test_invalid_utf8_and_oversized_bodies(front_door: FrontDoor) -> None:
    local = _local(front_door)
    response = local.post("/v1/chat/completions", content=b'{"model": "\xff"}', headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    huge = {"content-type": "application/json", "content-length": str(64 * 2**20)}
    response = local.post("/v1/chat/completions", content=b"{}", headers=huge)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("path", ["/%19eRb", "/%0D", "/%00", "/v1/%0Dchat", "/..%2F..%2Fetc", "/v1/models%00"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_bad_paths_are_404_not_500(front_door: FrontDoor, path: str, method: str) -> None:
    """Regression: control characters in the path were a 500 (httpx.InvalidURL) with a traceback in the log."""
    response = _local(front_door).request(method, path)
    assert response.status_code in (404, 405), response.text
    if response.status_code == 404:
        assert response.json()["error"]["code"] == "route_not_found"


def test_every_response_is_counted_and_503s_per_alias(front_door: FrontDoor) -> None:
    local = _local(front_door)
    chat = {"model": front_door.base_name, "messages": [{"role": "user", "content": "hi"}]}
    front_door.available.clear()  # vLLM restarting
    assert local.post("/v1/chat/completions", json=chat).status_code == 503
    front_door.available.set()
    local.get("/nowhere")
    text = local.get("/metrics").text
    assert f'lorastack_requests_total{{alias="{front_door.base_name}",status="503",version=""}} 1.0' in text
    assert 'lorastack_http_responses_total{route="/v1/chat/completions",status="503"} 1.0' in text
    assert 'lorastack_http_responses_total{route="/{path:path}",status="404"} 1.0' in text


def test_openapi_document_needs_a_key_once_keys_exist(front_door: FrontDoor) -> None:
    local = _local(front_door)
    document = local.get("/openapi.json").json()
    assert "/v1/chat/completions" in document["paths"] and "/admin/promote" in document["paths"]
    assert "/v1/load_lora_adapter" not in document["paths"]
    _, inference = KeyStore().create(Role.inference)
    assert local.get("/openapi.json").status_code == 401
    assert local.get("/openapi.json", headers={"Authorization": f"Bearer {inference}"}).status_code == 200


def test_a_missing_key_is_a_typed_401_that_names_the_variables(front_door: FrontDoor) -> None:
    """Regression: after `lorastack keys create`, a command without the key died in a traceback ending in 401."""
    KeyStore().create(Role.admin)
    response = _local(front_door).post("/admin/adapters/load", json={"ref": "tools"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(Unauthorized) as refused:
        _raise_for(response, "load tools")
    assert "LORASTACK_ADMIN_KEY" in str(refused.value) and "lorastack keys create" in str(refused.value)
