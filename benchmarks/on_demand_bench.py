"""On-demand adapters: the extra latency of a first request to an unloaded r16 adapter, and the throughput of a
stream over many adapters in few slots against the same stream over adapters that all stay loaded (same run).

Run as: .venv/bin/python benchmarks/on_demand_bench.py [--adapters 100] [--slots 8] [--requests 160]

On a GPU machine (CUDA vLLM installed, e.g. pip install 'lorastack[cuda]'), the same script with the device and a
base model whose adapters it makes (r16 on every linear layer, random weights):

    python benchmarks/on_demand_bench.py --device cuda --base-model /path/to/model-or-hub-id --concurrency 64

Prints the figures and writes benchmarks/results/on_demand_<device>_<date>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from lorastack.models import resolve_base_model
from lorastack.serve.config import ServeConfig
from lorastack.serve.registry import Registry
from lorastack.serve.server import start_server
from lorastack.testing import make_random_adapter, vary_adapter

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=100, help="adapters the stream spreads over")
    parser.add_argument("--slots", type=int, default=8, help="--max-loaded, and the resident set of the baseline")
    parser.add_argument("--requests", type=int, default=160, help="requests per stream")
    parser.add_argument("--tokens", type=int, default=8, help="completion tokens per request (ignore_eos)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--first", type=int, default=12, help="first-request samples")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--base-model", default=None, help="unset: the embedded SmolLM2-135M")
    parser.add_argument("--port", type=int, default=8951)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lorastack-bench-"))
    base = resolve_base_model(args.base_model)
    registry = Registry(work / "home")
    seed = make_random_adapter(base.path, work / "seed", 16, TARGETS, 0)
    shapes = base.weight_shapes()
    names = [f"a{i:03d}" for i in range(args.adapters)]
    started = time.perf_counter()
    for i, name in enumerate(names):
        registry.register(name, vary_adapter(seed, work / name, i), base, shapes)
    print(f"registered {len(names)} r16 adapters in {time.perf_counter() - started:.1f} s")
    config = ServeConfig(port=args.port, demo_adapter=False, device=args.device, base_model=args.base_model,
                         max_loaded=args.slots, max_loras=args.slots)  # fmt: skip
    results: dict = {"device": args.device, "base_model": base.name, "adapters": args.adapters, "slots": args.slots,
                     "requests": args.requests, "tokens": args.tokens, "concurrency": args.concurrency}  # fmt: skip
    with start_server(config, registry) as server, httpx.Client(timeout=600) as http:
        url = f"{server.state.url}/v1/completions"
        residency = server.front_door.residency

        def ask(model: str, tokens: int = args.tokens) -> float:
            body = {"model": model, "prompt": "The colour of the sky is", "max_tokens": tokens, "temperature": 0,
                    "ignore_eos": True}  # fmt: skip
            begun = time.perf_counter()
            http.post(url, json=body).raise_for_status()
            return time.perf_counter() - begun

        ask(base.name)
        # 1. First request to an unloaded adapter against the next request to it (1 token each), back to back.
        extra = []
        for name in names[-args.first :]:
            assert name not in residency.resident
            first, warm = ask(name, 1), ask(name, 1)
            extra.append(first - warm)
        results["first_request_extra_s"] = {
            "median": statistics.median(extra), "p90": _percentile(extra, 0.9), "max": max(extra), "samples": extra,
        }  # fmt: skip
        print(f"first request, extra latency: median {statistics.median(extra) * 1000:.0f} ms, "
              f"p90 {_percentile(extra, 0.9) * 1000:.0f} ms over {len(extra)} adapters")  # fmt: skip

        # 2. The same kind of stream over 8 adapters that stay loaded, and over all of them in 8 slots; twice each,
        # alternating, so that a machine's drift hits both alike.
        def stream(pool: list[str], label: str) -> dict:
            rng = random.Random(len(pool))
            models = rng.choices(pool, k=args.requests)
            evictions = _evictions(server)
            begun = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as threads:
                latencies = list(threads.map(ask, models))
            elapsed = time.perf_counter() - begun
            figures = {"seconds": elapsed, "requests_per_s": len(models) / elapsed,
                       "tokens_per_s": len(models) * args.tokens / elapsed, "p50_s": statistics.median(latencies),
                       "p90_s": _percentile(latencies, 0.9), "evictions": _evictions(server) - evictions}  # fmt: skip
            print(
                f"{label:>32}: {figures['tokens_per_s']:8.1f} tok/s  {figures['requests_per_s']:6.2f} req/s  "
                f"p50 {figures['p50_s']:.2f} s  p90 {figures['p90_s']:.2f} s  evictions {figures['evictions']:.0f}"
            )
            return figures

        resident = names[: args.slots]
        for name in resident:
            ask(name, 1)
        runs: dict[str, list[dict]] = {"resident": [], "on_demand": []}
        for _ in range(2):
            runs["resident"].append(stream(resident, f"{args.slots} adapters, all resident"))
            runs["on_demand"].append(stream(names, f"{args.adapters} adapters in {args.slots} slots"))
        results["streams"] = runs
        ratio = statistics.mean(r["tokens_per_s"] for r in runs["on_demand"]) / statistics.mean(
            r["tokens_per_s"] for r in runs["resident"]
        )
        results["on_demand_vs_resident"] = ratio
        print(f"{args.adapters} adapters in {args.slots} slots: {ratio:.2f}x the throughput of {args.slots} resident")
    out = ROOT / "benchmarks" / "results" / f"on_demand_{args.device}_{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


def _evictions(server) -> float:  # noqa: ANN001
    text = server.front_door.metrics.render().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lorastack_adapter_evictions_total{"))  # fmt: skip


if __name__ == "__main__":
    main()
