"""Front door benchmark: the latency it adds (direct vLLM vs through the front door, interleaved in one run)
and the time from ``promote`` to the first request served by the new version.

Run as: .venv/bin/python benchmarks/front_door_bench.py [--requests 40] [--tokens 8]

Prints a table and writes .bench/front_door.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from lorastack.models import resolve_base_model
from lorastack.testing import make_random_adapter
from lorastack.serve.config import ServeConfig
from lorastack.serve.registry import Registry
from lorastack.serve.server import start_server

ROOT = Path(__file__).resolve().parent.parent


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per path (interleaved)")
    parser.add_argument("--tokens", type=int, default=8, help="completion tokens per request")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lorastack-bench-"))
    base = resolve_base_model(None)
    registry = Registry(work / "home")
    shapes = base.weight_shapes()
    versions = [
        registry.register("bench", make_random_adapter(base.path, work / f"a{i}", 8, ("q_proj", "v_proj"), i), base,
                          shapes)
        for i in range(2)
    ]  # fmt: skip
    with start_server(ServeConfig(port=8950, demo_adapter=False), registry) as server:
        front, direct = server.state.url, server.state.upstream_url
        server.state.client.promote(versions[0].ref, "bench")
        body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": args.tokens, "temperature": 0}
        times: dict[str, list[float]] = {"direct": [], "front door": []}
        # vLLM answers only the front door's private key; the front door needs none before the first key exists.
        auth = {direct: {"Authorization": f"Bearer {server.front_door.upstream_key}"}, front: {}}
        with httpx.Client(timeout=120) as http:
            for url, model in ((direct, "bench@v1"), (front, "bench")):  # warm both paths
                http.post(f"{url}/v1/chat/completions", json={**body, "model": model}, headers=auth[url]).raise_for_status()
            for _ in range(args.requests):
                for label, url, model in (("direct", direct, "bench@v1"), ("front door", front, "bench")):
                    started = time.perf_counter()
                    http.post(f"{url}/v1/chat/completions", json={**body, "model": model},
                              headers=auth[url]).raise_for_status()
                    times[label].append(time.perf_counter() - started)
            started = time.perf_counter()
            server.state.client.promote(versions[1].ref, "bench")
            promoted = time.perf_counter() - started
            reply = http.post(f"{front}/v1/chat/completions", json={**body, "model": "bench"}).json()
            first_served = time.perf_counter() - started
            assert reply["model"] == "bench@v2", reply["model"]

    result = {
        label: {"p50_ms": round(1000 * statistics.median(v), 1), "p99_ms": round(1000 * _percentile(v, 0.99), 1)}
        for label, v in times.items()
    }
    added = [f - d for f, d in zip(times["front door"], times["direct"], strict=True)]
    result["added_ms"] = {"p50": round(1000 * statistics.median(added), 1), "p99": round(1000 * _percentile(added, 0.99), 1)}
    result["promote_s"] = round(promoted, 3)
    result["promote_to_first_request_s"] = round(first_served, 3)
    result["requests"], result["tokens"] = args.requests, args.tokens
    print(json.dumps(result, indent=2))
    out = ROOT / ".bench" / "front_door.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
