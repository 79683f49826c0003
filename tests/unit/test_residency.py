"""The front door's residency: LRU eviction of unpinned, idle adapters within --max-loaded, pins, loads once.

A real registry with real adapters; below the residency, a stand-in for vLLM's load/unload routes that records
what it holds (the real vLLM server runs the same paths in tests/integration/test_on_demand.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lorastack.errors import AdapterRejected, NotFound, SlotsFull
from lorastack.serve.config import ServeConfig, lora_slots
from lorastack.serve.front_door.metrics import Metrics
from lorastack.serve.front_door.residency import Residency
from lorastack.serve.front_door.routing import Routes
from lorastack.serve.registry import Registry
from lorastack.serve.state import ServerState


class HeldAdapters:
    """vLLM's LoRA routes as the residency sees them: load (slowly, to let threads race) and unload."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}
        self.loads: list[str] = []
        self.lock = threading.Lock()

    def served_adapters(self) -> dict[str, str]:
        return dict(self.held)

    def load_adapter(self, name: str, path: str, replace: bool = False) -> None:
        time.sleep(0.05)
        with self.lock:
            self.held[name] = path
            self.loads.append(name)

    def unload_adapter(self, name: str) -> None:
        if self.held.pop(name, None) is None:
            raise NotFound(f"{name} is not loaded")


@pytest.fixture
def setup(tmp_path: Path, make_adapter: Callable[..., Path], base_model, base_shapes):
    registry = Registry(tmp_path / "home")
    for name in ("a", "b", "c", "d", "e"):
        registry.register(name, make_adapter(), base_model, base_shapes)
    state = ServerState(url="http://127.0.0.1:1", pid=0, base_name=base_model.name, base_path=base_model.path,
                        base_source=base_model.source, device="cpu", max_lora_rank=16, max_loras=4)  # fmt: skip
    vllm, routes = HeldAdapters(), Routes()
    residency = Residency(vllm, registry, state, routes, Metrics(), capacity=3)  # type: ignore[arg-type]
    return residency, vllm, routes, registry


def test_least_recently_used_unpinned_adapter_makes_room(setup) -> None:
    residency, vllm, routes, _ = setup
    for name in ("a", "b", "c"):
        residency.ensure(name)
    residency.touch("a")  # b is now the least recently used

    residency.ensure("d")

    assert set(vllm.held) == residency.resident == {"a", "c", "d"}


def test_pinned_alias_versions_and_busy_adapters_stay(setup) -> None:
    residency, vllm, routes, registry = setup
    residency.ensure("a@v1")
    routes.switch("prod", "a@v1")  # behind an alias: pinned by default
    residency.ensure("b")
    residency.pin("b", True)
    residency.pin("c", True)
    residency.ensure("c")
    residency.busy_wait_s = 0.2

    with pytest.raises(SlotsFull, match="pinned") as full:
        residency.ensure("d")
    assert full.value.status == 503 and "unpin" in str(full.value)
    residency.pin("c", False)
    target = routes.acquire("c")  # a request in flight on c
    with pytest.raises(SlotsFull, match="in flight"):
        residency.ensure("d")
    routes.release(target)
    residency.ensure("d")
    assert set(vllm.held) == {"a@v1", "b", "d"}
    residency.pin("a@v1", False)  # an alias's version can be unpinned explicitly
    assert registry.pins() == {"b": True, "c": False, "a@v1": False}
    residency.ensure("e")
    residency.ensure("c")
    assert set(vllm.held) == {"b", "e", "c"}


def test_concurrent_first_requests_load_once(setup) -> None:
    residency, vllm, _, _ = setup
    threads = [threading.Thread(target=residency.ensure, args=("b",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert vllm.loads == ["b"]


def test_names_resolve_to_their_registered_version(setup) -> None:
    residency, vllm, _, registry = setup
    residency.ensure("a")
    assert vllm.held["a"] == str(registry.get("a@v1").path)
    with pytest.raises(NotFound):
        residency.ensure("nobody")
    with pytest.raises(NotFound):
        residency.ensure("a@v9")
    (registry.get("e").path / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(AdapterRejected, match="sha256"):
        residency.ensure("e")
    assert "e" not in vllm.held and "e" not in residency.resident


def test_held_candidate_is_not_evicted(setup) -> None:
    residency, vllm, _, _ = setup
    residency.busy_wait_s = 0
    with residency.hold("a"):
        residency.ensure("a")
        residency.ensure("b")
        residency.ensure("c")
        residency.ensure("d")
        assert "a" in vllm.held
    residency.ensure("e")
    assert "a" not in vllm.held


def test_max_loaded_sizes_vllms_slots() -> None:
    assert lora_slots(ServeConfig(max_loaded=8), "cpu") == (4, 8)
    assert lora_slots(ServeConfig(max_loaded=8), "cuda") == (8, 8)
    assert lora_slots(ServeConfig(max_loaded=2), "cuda") == (2, 2)
    assert lora_slots(ServeConfig(), "cuda") == (8, 32)
    with pytest.raises(ValueError, match="max_loaded"):
        ServeConfig(max_loaded=8, max_cpu_loras=4)


def test_a_request_whose_load_fails_gets_an_openai_error(base_model, make_adapter: Callable[..., Path],
                                                         base_shapes) -> None:  # fmt: skip
    """Through the front door's app, with nothing listening where vLLM would be."""
    from fastapi.testclient import TestClient

    from lorastack.serve.front_door import FrontDoor

    registry = Registry()
    registry.register("fine", make_adapter(), base_model, base_shapes)
    damaged = registry.register("damaged", make_adapter(), base_model, base_shapes)
    (damaged.path / "adapter_config.json").write_text("{}")
    state = ServerState("http://127.0.0.1:9", 0, base_model.name, base_model.path, base_model.source, "cpu", 16, 4,
                        upstream_url="http://127.0.0.1:9")  # fmt: skip
    door = FrontDoor(state, registry, max_loaded=2)
    client = TestClient(door.app, client=("127.0.0.1", 5000))

    def chat(model: str):  # noqa: ANN202
        return client.post(
            "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]}
        )

    rejected = chat("damaged")
    assert rejected.status_code == 409 and rejected.json()["error"]["code"] == "adapter_rejected"
    unreachable = chat("fine")  # checked, then vLLM cannot take it
    assert unreachable.status_code == 502 and unreachable.json()["error"]["code"] == "server_error"
    assert chat("never-registered").status_code == 503  # not the registry's: on to vLLM, which is down
    assert door.residency.resident == set()
    listed = dict(door.residency.available())
    assert listed == {"damaged": "damaged@v1", "fine": "fine@v1"}
