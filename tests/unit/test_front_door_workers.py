"""The parts of ``--workers`` that need no process: merged metrics, the replica's routing, the control's trust in
its workers, and the sync's long poll."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from lorastack.serve.front_door.metrics import Metrics
from lorastack.serve.front_door.routing import Routes
from lorastack.serve.front_door.worker import CLIENT_HEADER, TOKEN_HEADER
from lorastack.serve.front_door.workers import TrustedWorkers, WorkerPool


def _value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_metrics_of_several_processes_are_summed_into_one_exposition() -> None:
    control, worker_a, worker_b = Metrics(), Metrics(), Metrics()
    control.account(("prod", "v1"), 200, 0.2, 0.1, {"prompt_tokens": 5, "completion_tokens": 7})
    worker_a.account(("prod", "v1"), 200, 0.3, 0.1, {"prompt_tokens": 1, "completion_tokens": 2})
    worker_a.account(("prod", "v1"), 503, 0, 0, None)
    worker_b.account(("other", "v2"), 200, 3.0, 1.0, {"prompt_tokens": 1, "completion_tokens": 1})
    text = control.render([worker_a.samples(), worker_b.samples()]).decode()

    assert _value(text, 'lorastack_requests_total{alias="prod",status="200",version="v1"}') == 2
    assert _value(text, 'lorastack_requests_total{alias="prod",status="503",version="v1"}') == 1
    assert _value(text, 'lorastack_requests_total{alias="other",status="200",version="v2"}') == 1
    assert _value(text, 'lorastack_completion_tokens_total{alias="prod",version="v1"}') == 9
    assert _value(text, 'lorastack_request_seconds_bucket{alias="prod",le="0.25",version="v1"}') == 1
    assert _value(text, 'lorastack_request_seconds_bucket{alias="prod",le="0.5",version="v1"}') == 2
    assert _value(text, 'lorastack_request_seconds_count{alias="other",version="v2"}') == 1
    assert text.count("# TYPE lorastack_requests_total counter") == 1
    # Without workers the exposition is the registry's own.
    assert control.render([]) == control.render()


def test_a_replica_routes_only_what_vllm_serves_and_the_control_every_name() -> None:
    control = Routes()
    assert control.routable("anything")
    replica = Routes()
    replica.replace({"prod": "support@v2"}, {"base", "support@v2"})
    assert replica.routable("prod") and replica.routable("base") and replica.routable("support@v2")
    assert not replica.routable("support@v1") and not replica.routable("not-loaded")
    replica.replace({"prod": "support@v2", "old": "support@v1"}, {"base", "support@v2"})
    assert not replica.routable("old")  # an alias whose version vLLM does not hold: the control loads it
    target = replica.acquire("prod")
    replica.replace({"prod": "support@v3"}, {"base", "support@v3"})
    assert replica.inflight["support@v2"] == 1  # a switch keeps counting what is under way
    replica.release(target)
    assert "support@v2" not in replica.inflight


def _scope_seen(headers: list[tuple[bytes, bytes]]) -> dict:
    seen: dict = {}

    async def app(scope, receive, send) -> None:
        seen.update(scope)

    scope = {"type": "http", "headers": headers, "client": ("10.0.0.9", 5555)}
    asyncio.run(TrustedWorkers(app, token="s3cret")(scope, None, None))
    return seen


def test_the_control_trusts_the_workers_secret_and_nothing_else() -> None:
    token, client = TOKEN_HEADER.encode(), CLIENT_HEADER.encode()
    forwarded = _scope_seen([(token, b"s3cret"), (client, b"127.0.0.1")])
    assert forwarded["client"][0] == "127.0.0.1" and "lorastack_worker" not in forwarded
    own = _scope_seen([(token, b"s3cret")])
    assert own["lorastack_worker"] and own["client"][0] == "10.0.0.9"
    forged = _scope_seen([(token, b"guess"), (client, b"127.0.0.1")])
    assert forged["client"][0] == "10.0.0.9" and "lorastack_worker" not in forged
    assert _scope_seen([(client, b"127.0.0.1")])["client"][0] == "10.0.0.9"


def test_a_sync_answers_at_once_when_routes_changed_and_waits_otherwise(tmp_path: Path) -> None:
    pool = WorkerPool(1, "127.0.0.1", 1, "http://127.0.0.1:2", "http://127.0.0.1:3", None, "base", tmp_path)
    pool.publish({"prod": "a@v1"}, {"base", "a@v1"}, True, wait=False)

    async def scenario() -> tuple[dict, float, dict, float]:
        started = time.perf_counter()
        first = await pool.sync({"worker": 0, "generation": -1, "inflight": {"a@v1": 2}})
        at_once = time.perf_counter() - started
        started = time.perf_counter()
        waiting = asyncio.ensure_future(pool.sync({"worker": 0, "generation": first["generation"]}))
        await asyncio.sleep(0.1)
        pool.publish({"prod": "a@v2"}, {"base", "a@v2"}, True, wait=False)
        second = await waiting
        return first, at_once, second, time.perf_counter() - started

    first, at_once, second, waited = asyncio.run(scenario())
    assert first["aliases"] == {"prod": "a@v1"} and at_once < 0.5
    assert second["aliases"] == {"prod": "a@v2"} and second["generation"] == first["generation"] + 1
    assert 0.1 <= waited < 0.9  # answered on the change, not at the end of the long poll
    assert pool.reports[0].generation == first["generation"]


def test_a_replica_reports_the_use_of_each_adapter_once(tmp_path: Path) -> None:
    from lorastack.serve.front_door.worker import Replica, WorkerConfig

    replica = Replica(WorkerConfig(0, "127.0.0.1", 1, "http://127.0.0.1:2", "t", "http://127.0.0.1:3", None, "base",
                                   tmp_path))  # fmt: skip
    assert replica.touch("a@v1") and replica.touch("a@v1") and replica.touch("b")
    assert replica.report()["used"] == {"a@v1": 2, "b": 1}
    assert replica.report()["used"] == {}  # counted since the last report
