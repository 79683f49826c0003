"""Serving benchmark: server start time, hot-load latency, base vs multi-adapter throughput.

Run as: .venv/bin/python benchmarks/serve_bench.py [--tokens 64] [--rounds 2]   (or: make bench)

Prints a table and writes .bench/serve.json. Throughput is compared as a ratio within the same run
(all-base vs mixed over 4 adapters, alternating rounds), since absolute speed on a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from openai import AsyncOpenAI

from lorastack.models import resolve_base_model
from lorastack.testing import make_random_adapter
from lorastack.serve.config import ServeConfig
from lorastack.serve.loading import load_adapter, unload_adapter
from lorastack.serve.registry import Registry
from lorastack.serve.server import start_server

ROOT = Path(__file__).resolve().parent.parent


async def _burst(url: str, models: list[str], tokens: int) -> tuple[float, int]:
    """Send one request per entry of ``models`` at once; return wall seconds and completion tokens."""
    async def one(i: int, model: str) -> int:
        response = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"Write a short story about robot number {i}."}],
            max_tokens=tokens,
            temperature=0,
            extra_body={"ignore_eos": True},  # every request produces exactly `tokens` tokens
        )
        return response.usage.completion_tokens

    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600) as client:
        start = time.perf_counter()
        counts = await asyncio.gather(*(one(i, m) for i, m in enumerate(models)))
        return time.perf_counter() - start, sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per request")
    parser.add_argument("--rounds", type=int, default=2, help="alternating base/mixed rounds")
    parser.add_argument("--loads", type=int, default=5, help="hot-load repetitions")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lorastack-bench-"))
    base = resolve_base_model(None)
    registry = Registry(work / "home")
    names = [f"bench{i}" for i in range(4)]
    all_linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    for i, name in enumerate(names):
        folder = make_random_adapter(base.path, work / name, rank=16, targets=all_linear, seed=i)
        registry.register(name, folder, base, base.weight_shapes())

    t0 = time.perf_counter()
    server = start_server(ServeConfig(port=8765, max_loras=4), registry)
    start_s = time.perf_counter() - t0
    try:
        state = server.state
        # Hot load of a rank-16 all-linear adapter: the full `lorastack adapters load` path (sha256 check,
        # compatibility check, through the front door) and the raw vLLM endpoint alone, same adapter, alternating.
        full, raw = [], []
        for _ in range(args.loads):
            t = time.perf_counter()
            load_adapter(registry, names[0], state)
            full.append(time.perf_counter() - t)
            unload_adapter(registry, names[0], state)
            t = time.perf_counter()
            server.front_door.vllm.load_adapter(names[0], str(registry.get(names[0]).path))
            raw.append(time.perf_counter() - t)
            server.front_door.vllm.unload_adapter(names[0])
        for name in names:
            load_adapter(registry, name, state)

        base_models = [state.base_name] * 8
        mixed_models = [names[i % 4] for i in range(8)]
        asyncio.run(_burst(state.url, base_models[:2], 8))  # warm-up
        results: dict[str, list[float]] = {"base": [], "mixed": []}
        for _ in range(args.rounds):
            for label, models in (("base", base_models), ("mixed", mixed_models)):
                seconds, tokens = asyncio.run(_burst(state.url, models, args.tokens))
                results[label].append(tokens / seconds)
    finally:
        server.stop()

    base_tps, mixed_tps = statistics.median(results["base"]), statistics.median(results["mixed"])
    report = {
        "server_start_s": round(start_s, 1),
        "hot_load_rank16_full_ms": round(1000 * statistics.median(full), 1),
        "hot_load_rank16_vllm_ms": round(1000 * statistics.median(raw), 1),
        "concurrent_requests": 8,
        "tokens_per_request": args.tokens,
        "throughput_all_base_tok_s": round(base_tps, 1),
        "throughput_mixed_4_adapters_tok_s": round(mixed_tps, 1),
        "mixed_over_base": round(mixed_tps / base_tps, 3),
        "rounds": results,
    }
    out = ROOT / ".bench" / "serve.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        if key != "rounds":
            print(f"{key:36} {value}")
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
