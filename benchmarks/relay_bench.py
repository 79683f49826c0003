"""The front door's own cost per streamed request, without a model: what it adds to latency and the CPU it uses.

Run as: .venv/bin/python benchmarks/relay_bench.py [--pairs 400] [--chunks 32] [--workers 1] [--concurrency 64]

A stand-in for vLLM's HTTP surface (``/health``, ``/v1/models`` and streaming ``/v1/completions`` that answers at
once with --chunks SSE events, no model; uvicorn with uvloop and httptools, as vLLM runs) is started, then
``lorastack serve --vllm-url`` in front of it, as users attach lorastack to a running vLLM. With the engine's time
taken out, what is left is the front door's: parsing and checking the request, routing, relaying every chunk.

- Added latency: the same request straight to the stand-in and through the front door in turn (``--pairs``
  pairs, the order alternating), one at a time; the medians of the paired differences of TTFT and end-to-end time.
- CPU per request: ``--concurrency`` streams through the front door, the CPU time of its processes over the
  requests served (and the stand-in's, for scale).

On a GPU machine the same figures come from benchmarks/gpu/serve_bench.py against a real vLLM.
Prints the figures and writes benchmarks/results/relay_cpu_<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

STAND_IN = r'''
import json, sys, uvicorn
CHUNKS = int(sys.argv[2])
EVENT = (b'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"%s","choices":[{"index":0,'
         b'"text":" hi","logprobs":null,"finish_reason":null}]}\n\n')
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path not in ("/v1/completions", "/v1/chat/completions"):
        models = {"object": "list", "data": [{"id": sys.argv[3], "object": "model", "root": sys.argv[3]}]}
        answer = json.dumps(models).encode() if path == "/v1/models" else b"{}"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})
        return
    model = json.loads(body).get("model", "").encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for _ in range(CHUNKS):
        await send({"type": "http.response.body", "body": EVENT % model, "more_body": True})
    usage = b'data: {"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":%d}}\n\n' % CHUNKS
    await send({"type": "http.response.body", "body": usage + b"data: [DONE]\n\n", "more_body": False})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", loop="uvloop", http="httptools")
'''


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _family(pid: int) -> list[int]:
    """``pid`` and its children (the front door's worker processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


async def _one(session, url: str, body: dict) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                first = time.perf_counter()
    return (first or time.perf_counter()) - started, time.perf_counter() - started


async def _paired(urls: dict[str, str], body: dict, pairs: int) -> dict:
    import aiohttp

    added: dict[str, list[float]] = {"ttft": [], "e2e": []}
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # warm both paths (connections, first-call imports)
            for url in urls.values():
                await _one(session, url, body)
        for i in range(pairs):
            order = ["direct", "front_door"] if i % 2 == 0 else ["front_door", "direct"]
            times = {label: await _one(session, urls[label], body) for label in order}
            added["ttft"].append((times["front_door"][0] - times["direct"][0]) * 1000)
            added["e2e"].append((times["front_door"][1] - times["direct"][1]) * 1000)
    return {f"added_{k}_p50_ms": round(statistics.median(v), 3) for k, v in added.items()} | {
        f"added_{k}_mean_ms": round(statistics.fmean(v), 3) for k, v in added.items()
    }


async def _load(url: str, body: dict, concurrency: int, per_stream: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def stream() -> None:
            for _ in range(per_stream):
                await _one(session, url, body)

        started = time.perf_counter()
        await asyncio.gather(*(stream() for _ in range(concurrency)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--chunks", type=int, default=32, help="SSE events per answer (tokens)")
    parser.add_argument("--workers", type=int, default=1, help="lorastack serve --workers")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=1280, help="requests of the CPU measurement")
    parser.add_argument("--port", type=int, default=8960)
    args = parser.parse_args()

    from lorastack.models import EMBEDDED_NAME

    work = Path(tempfile.mkdtemp(prefix="lorastack-relay-bench-"))
    stand_in_port, front_port = args.port, args.port + 1
    (work / "stand_in.py").write_text(STAND_IN)
    stand_in = subprocess.Popen([sys.executable, str(work / "stand_in.py"), str(stand_in_port), str(args.chunks),
                                 EMBEDDED_NAME])  # fmt: skip
    env = dict(os.environ, LORASTACK_HOME=str(work / "home"))
    serve = subprocess.Popen(
        [sys.executable, "-m", "lorastack.cli", "serve", "--vllm-url", f"http://127.0.0.1:{stand_in_port}",
         "--no-demo-adapter", "--port", str(front_port), "--workers", str(args.workers)],
        env=env, stdout=(work / "serve.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{front_port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or serve.poll() is not None:
                raise SystemExit(f"lorastack serve did not start: {(work / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
        body = {"model": EMBEDDED_NAME, "prompt": "hi", "max_tokens": args.chunks, "stream": True}
        urls = {"direct": f"http://127.0.0.1:{stand_in_port}/v1/completions",
                "front_door": f"http://127.0.0.1:{front_port}/v1/completions"}  # fmt: skip
        latency = asyncio.run(_paired(urls, body, args.pairs))
        per_stream = max(1, args.requests // args.concurrency)
        front, stand_in_pids = _family(serve.pid), [stand_in.pid]
        before = {p: _cpu_seconds(p) for p in front + stand_in_pids}
        wall = asyncio.run(_load(urls["front_door"], body, args.concurrency, per_stream))
        used = {p: _cpu_seconds(p) - before[p] for p in before}
        served = per_stream * args.concurrency
        result = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "nproc": os.cpu_count(), "chunks": args.chunks,
            "workers": args.workers, "pairs": args.pairs, **latency,
            "concurrency": args.concurrency, "requests": served, "req_s": round(served / wall, 1),
            "front_door_cpu_ms_per_request": round(sum(used[p] for p in front) / served * 1000, 3),
            "stand_in_cpu_ms_per_request": round(sum(used[p] for p in stand_in_pids) / served * 1000, 3),
        }  # fmt: skip
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
        stand_in.terminate()
        stand_in.wait(10)
    print(json.dumps(result, indent=1))
    out = ROOT / "benchmarks" / "results" / f"relay_cpu_{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
