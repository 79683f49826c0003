"""vLLM direct vs through the lorastack front door, on a GPU, in one run; hot-load; promotion under load.

Run as: python benchmarks/gpu/serve_bench.py --base DIR --adapters DIR --out results.jsonl [--quick]

(``make_serving_models.py`` beside this makes DIR: a random-init Llama shape and r16 all-linear adapters.)

It starts ``lorastack serve`` on the base model (vLLM with the LoRA settings lorastack chooses), registers and loads
8 adapters, then measures the same requests three ways, back to back for each case: straight to vLLM, through the
front door as ``lorastack serve`` runs it (on CUDA: several worker processes, ``--workers``), and through a second
front door (``--vllm-url`` on the same vLLM) run as one process (``--workers 1``, the baseline before workers).
Cases: concurrency 64 and 256 x base model only / 8 adapters round-robin / base and adapters mixed 1:1.

The load generator is several processes (asyncio + aiohttp, streaming /v1/completions, 64 random prompt tokens,
128 output tokens with ignore_eos); each reports the CPU it used, so its ceiling can be read off (a process near
100% of one core would be the limit). Per case: output tokens/s, TTFT and inter-token latency p50/p99, and the CPU
of the front door's processes (summed) and of vLLM's API server.

Then: hot-load of an r16 all-linear adapter (through the front door, and vLLM's route directly, 3 times each, and
the first request after); a promotion while 64 streams run on the alias (failed requests, promote time, time from
the promote call to the first token of a request answered by the new version); a sampled profile of the front
door at concurrency 256. Before all that, the added latency at low concurrency (1 and 8 streams): each stream
sends the same request straight to vLLM and through the front door in turn, and the median of the paired
differences is the front door's added TTFT and end-to-end time. In the throughput cases, vLLM's own TTFT (from
its /metrics, counted from a request's arrival in the engine) is set beside the client's, so that time spent
outside the engine can be told from queueing inside it. Every result is one JSON line, printed and appended to
--out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
PROMPT_TOKENS, OUTPUT_TOKENS = 64, 128
_MODEL = re.compile(rb'"model":\s*"([^"]+)"')
_TOKEN = re.compile(rb'"choices":\s*\[\s*\{')
_USAGE = re.compile(rb'"usage":\s*\{.*"completion_tokens":\s*(\d+)')


# -- the load generator (one process of several) ----------------------------------------------------------------


def vllm_key(pid: int) -> str | None:
    """The per-start API key lorastack gives the vLLM it starts (VLLM_API_KEY in its environment, known only to the
    front door); the benchmark reads it from /proc, as the same user can, to measure vLLM directly."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"VLLM_API_KEY=")]
    return found[0] if found else None


async def _worker(session, url: str, models: list[str], offset: int, step: int, count: int, seed: int, out: list,
                  stop_at: float | None, headers: dict | None = None,
                  prompt: list[int] | None = None) -> None:  # fmt: skip
    import aiohttp

    rng = random.Random(seed)
    for i in range(count):
        if stop_at is not None and time.time() > stop_at:
            return
        model = models[(offset + i * step) % len(models)]
        body = {"model": model, "prompt": prompt or [rng.randrange(1000, 40000) for _ in range(PROMPT_TOKENS)],
                "max_tokens": OUTPUT_TOKENS, "ignore_eos": True, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        start = time.perf_counter()
        record = {"model": model, "start": time.time(), "ok": False, "tokens": 0, "ttft": None, "itl": [],
                  "served": None}  # fmt: skip
        try:
            async with session.post(url, json=body, headers=headers) as response:
                if response.status != 200:
                    record["error"] = f"http {response.status}"
                    await response.read()
                else:
                    last = None
                    async for line in response.content:
                        if not line.startswith(b"data: "):
                            continue
                        now = time.perf_counter()
                        if _TOKEN.search(line):
                            if last is None:
                                record["ttft"] = now - start
                                found = _MODEL.search(line)
                                record["served"] = found.group(1).decode() if found else None
                                record["first_token_at"] = time.time()
                            else:
                                record["itl"].append(now - last)
                            last = now
                        if b'"usage"' in line and (found := _USAGE.search(line)):
                            record["tokens"] = int(found.group(1))
                    record["ok"] = record["tokens"] > 0
        except (aiohttp.ClientError, TimeoutError) as exc:
            record["error"] = repr(exc)
        record["e2e"] = time.perf_counter() - start
        record["end"] = time.time()
        out.append(record)


async def _paired_worker(session, targets: list[tuple[str, str, dict]], models: list[str], pairs: int, seed: int,
                        out: list) -> None:  # fmt: skip
    """``pairs`` times: the same request to each target in turn (the order alternating from pair to pair), so that
    each pair's two answers saw the same moment of the engine; records carry ``path`` and ``pair``."""
    rng = random.Random(seed)
    for pair in range(pairs):
        model = models[pair % len(models)]
        prompt = [rng.randrange(1000, 40000) for _ in range(PROMPT_TOKENS)]
        order = targets if pair % 2 == 0 else targets[::-1]
        for label, url, headers in order:
            sink: list = []
            await _worker(session, url, [model], 0, 1, 1, 0, sink, None, headers=headers, prompt=prompt)
            record = sink[0]
            record.update(path=label, pair=(seed, pair))
            out.append(record)


def _timed(run) -> tuple[list, float, float]:
    """``run()``'s records on uvloop (where installed), with the process's CPU seconds and the wall seconds."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    wall, cpu = time.perf_counter(), time.process_time()
    records = asyncio.run(run())
    return records, time.process_time() - cpu, time.perf_counter() - wall


def _client_process(args: tuple) -> tuple[list, float, float]:
    url, models, first, workers_total, concurrency, per_worker, seed, stop_at, headers = args

    async def run() -> list:
        import aiohttp

        out: list = []
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
            await asyncio.gather(*(
                _worker(session, url, models, first + w, workers_total, per_worker, seed * 1000 + first + w, out,
                        stop_at)
                for w in range(concurrency)
            ))  # fmt: skip
        return out

    return _timed(run)


def load(url: str, models: list[str], concurrency: int, per_worker: int, processes: int, seed: int = 0,
         stop_at: float | None = None, headers: dict | None = None) -> tuple[list, list[float], float]:  # fmt: skip
    """Run ``concurrency`` streams (split over ``processes``), each sending ``per_worker`` requests in turn; the
    models go round-robin over all requests. Returns the records, each process's CPU share, and the wall time."""
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    jobs, first = [], 0
    for share in shares:
        jobs.append((url, models, first, concurrency, share, per_worker, seed, stop_at, headers or {}))
        first += share
    started = time.perf_counter()
    with mp.get_context("fork").Pool(processes) as pool:
        results = pool.map(_client_process, jobs)
    wall = time.perf_counter() - started
    records = [r for recs, _, _ in results for r in recs]
    return records, [round(cpu / max(w, 1e-9), 3) for _, cpu, w in results], wall


def _paired_process(args: tuple) -> tuple[list, float, float]:
    targets, models, streams, first, pairs = args

    async def run() -> list:
        import aiohttp

        out: list = []
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
            await asyncio.gather(*(_paired_worker(session, targets, models, pairs, first + w, out)
                                   for w in range(streams)))  # fmt: skip
        return out

    return _timed(run)


def paired(out: Path, targets: dict[str, tuple[str, int | None, dict]], models: list[str], mix: str,
           concurrency: int, pairs: int, processes: int, meta: dict) -> None:  # fmt: skip
    """Added latency, low concurrency: ``concurrency`` streams, each sending the same request to vLLM directly and
    through the front door in turn (``pairs`` pairs a stream); per path TTFT and end-to-end percentiles, and the
    median of the paired differences (front door minus direct), which the engine's own variation mostly cancels."""
    labels = ["direct", "front_door"]
    plan = [(label, f"{targets[label][0]}/v1/completions", targets[label][2]) for label in labels]
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    jobs, first = [], 0
    for share in shares:
        jobs.append((plan, models, share, first, pairs))
        first += share
    with mp.get_context("fork").Pool(processes) as pool:
        results = pool.map(_paired_process, jobs)
    records = [r for recs, _, _ in results for r in recs]
    by_pair: dict = {}
    for r in records:
        by_pair.setdefault(r["pair"], {})[r["path"]] = r
    complete = [p for p in by_pair.values() if all(p.get(k, {}).get("ok") for k in labels)]
    line = {"kind": "added_latency", "concurrency": concurrency, "mix": mix, "pairs": len(complete),
            "failed": sum(not r["ok"] for r in records)}  # fmt: skip
    for label in labels:
        ttft = np.array([p[label]["ttft"] for p in complete]) * 1000
        e2e = np.array([p[label]["e2e"] for p in complete]) * 1000
        line[label] = {"ttft_p50_ms": round(float(np.percentile(ttft, 50)), 2),
                       "ttft_p99_ms": round(float(np.percentile(ttft, 99)), 2),
                       "e2e_p50_ms": round(float(np.percentile(e2e, 50)), 2)}  # fmt: skip
    for key in ("ttft", "e2e"):
        diff = np.array([p["front_door"][key] - p["direct"][key] for p in complete]) * 1000
        line[f"added_{key}_p50_ms"] = round(float(np.percentile(diff, 50)), 2)
        line[f"added_{key}_p90_ms"] = round(float(np.percentile(diff, 90)), 2)
        line[f"added_{key}_mean_ms"] = round(float(diff.mean()), 2)
    emit(out, {**line, **meta["tags"]})


def vllm_counters(url: str, headers: dict) -> dict[str, float]:
    """vLLM's own histograms' sums and counts (all label sets together): what the engine measured, from its
    arrival of a request on, for the decomposition of a client's TTFT into engine time and time before it."""
    wanted = ("vllm:time_to_first_token_seconds", "vllm:request_queue_time_seconds", "vllm:e2e_request_latency_seconds",
              "vllm:inter_token_latency_seconds")  # fmt: skip
    totals: dict[str, float] = {}
    try:
        text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    except httpx.HTTPError:
        return totals
    for line in text.splitlines():
        for name in wanted:
            for part in ("_sum", "_count"):
                if line.startswith(name + part + "{") or line.startswith(name + part + " "):
                    key = name.split(":", 1)[1] + part
                    totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def engine_means(before: dict, after: dict) -> dict:
    """Mean engine-side times (ms) of the requests between two :func:`vllm_counters` readings."""
    means = {}
    for name in ("time_to_first_token_seconds", "request_queue_time_seconds", "e2e_request_latency_seconds",
                 "inter_token_latency_seconds"):  # fmt: skip
        count = after.get(name + "_count", 0) - before.get(name + "_count", 0)
        if count > 0:
            total = after.get(name + "_sum", 0) - before.get(name + "_sum", 0)
            means["vllm_" + name.replace("_seconds", "_mean_ms")] = round(total / count * 1000, 2)
    return means


def summarize(records: list, wall: float) -> dict:
    ok = [r for r in records if r["ok"]]
    if not ok:
        return {"requests": len(records), "failed": len(records), "errors": sorted({str(r.get("error")) for r in records})[:5]}
    tokens = sum(r["tokens"] for r in ok)
    begin = min(r["start"] for r in records)
    end = max(r["end"] for r in records)
    ttft = np.array([r["ttft"] for r in ok if r["ttft"] is not None]) * 1000
    itl = np.concatenate([np.array(r["itl"]) for r in ok if r["itl"]] or [np.zeros(1)]) * 1000
    return {
        "requests": len(records), "failed": len(records) - len(ok), "output_tokens": tokens,
        "seconds": round(end - begin, 3), "tok_s": round(tokens / (end - begin), 1),
        "req_s": round(len(ok) / (end - begin), 2),
        "ttft_p50_ms": round(float(np.percentile(ttft, 50)), 2), "ttft_p99_ms": round(float(np.percentile(ttft, 99)), 2),
        "ttft_mean_ms": round(float(ttft.mean()), 2),
        "itl_p50_ms": round(float(np.percentile(itl, 50)), 3), "itl_p99_ms": round(float(np.percentile(itl, 99)), 3),
        "e2e_p50_ms": round(float(np.percentile([r["e2e"] * 1000 for r in ok], 50)), 1),
    }  # fmt: skip


# -- the servers ----------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def front_door_pids(pid: int, vllm_pid: int | None) -> list[int]:
    """The front door's processes: ``lorastack serve`` itself and its workers (its children other than vLLM)."""
    return [pid, *(c for c in children(pid) if c != vllm_pid)]


class Server:
    """``run_server.py`` (``lorastack serve``) in its own home, as a subprocess."""

    def __init__(self, home: Path, port: int, serve_args: list[str], runner_args: list[str] = ()) -> None:
        self.home, self.port = home, port
        home.mkdir(parents=True, exist_ok=True)
        self.log = (home / "serve.log").open("w")
        env = dict(os.environ, LORASTACK_HOME=str(home), PYTHONUNBUFFERED="1")
        argv = [sys.executable, str(HERE / "run_server.py"), *runner_args, "--", "--port", str(port), *serve_args]
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        state_file = self.home / "server.json"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lorastack serve exited: {(self.home / 'serve.log').read_text()[-3000:]}")
            if state_file.is_file():
                state = json.loads(state_file.read_text())
                try:
                    if httpx.get(f"{state['url']}/health", timeout=2).status_code == 200:
                        self.ready_s = time.monotonic() - self.started
                        self.state = state
                        return state
                except httpx.TransportError:
                    pass
            time.sleep(0.5)
        raise RuntimeError("lorastack serve did not start in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()


def emit(out: Path, record: dict) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with out.open("a") as fh:
        fh.write(line + "\n")


# -- the measurements -------------------------------------------------------------------------------------------


def compare(out: Path, targets: dict[str, tuple[str, int | None, dict]], base: str, adapters: list[str], processes: int,
            quick: bool, meta: dict, concurrencies: tuple[int, ...] = (64, 256)) -> None:  # fmt: skip
    """Each case against each target, back to back. ``targets``: label -> (URL, pid whose CPU is reported, headers)."""
    mixes = {
        "base": [base],
        "adapters8": adapters,
        "mixed": [m for pair in zip([base] * len(adapters), adapters) for m in pair],
    }
    for concurrency in concurrencies:
        per_worker = (2 if quick else 8) if concurrency == 64 else (1 if quick else 4)
        for mix, models in mixes.items():
            for label, (url, pid, headers) in targets.items():
                front = front_door_pids(pid, meta["vllm_pid"]) if pid else []
                pids = [*front, *([meta["vllm_pid"]] if meta["vllm_pid"] else [])]  # vLLM's API server as well
                before = {p: cpu_seconds(p) for p in pids}
                engine_before = vllm_counters(meta["upstream"], meta["auth"])
                records, client_cpu, wall = load(f"{url}/v1/completions", models, concurrency, per_worker, processes,
                                                 headers=headers)  # fmt: skip
                used = {p: round((cpu_seconds(p) - before[p]) / wall, 3) for p in pids}
                summary = summarize(records, wall)
                engine = engine_means(engine_before, vllm_counters(meta["upstream"], meta["auth"]))
                if "ttft_mean_ms" in summary and "vllm_time_to_first_token_mean_ms" in engine:
                    # The client's first token less the engine's (from its arrival in vLLM): time spent before vLLM
                    # had the request and after it sent the token (network, HTTP, the front door).
                    engine["ttft_outside_engine_mean_ms"] = round(
                        summary["ttft_mean_ms"] - engine["vllm_time_to_first_token_mean_ms"], 2)
                emit(out, {"kind": "throughput", "path": label, "concurrency": concurrency, "mix": mix,
                           **summary, **engine, "client_cpu": client_cpu,
                           "front_door_cpu": round(sum(used[p] for p in front), 3) if pid else None,
                           "front_door_processes": len(front) or None,
                           "vllm_api_cpu": used.get(meta["vllm_pid"]), **meta["tags"]})  # fmt: skip


def hot_load(out: Path, front: dict, registry_home: Path, adapter: Path, meta: dict) -> None:
    from lorastack.serve.loading import load_adapter, unload_adapter
    from lorastack.serve.registry import Registry
    from lorastack.serve.state import ServerState

    registry = Registry(registry_home)
    state = ServerState(**front)
    registry.register("hot", adapter, state.base, state.base.weight_shapes())
    direct = front["upstream_url"]
    key = vllm_key(front["engine_pid"])
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    for attempt in range(3):
        started = time.perf_counter()
        load_adapter(registry, "hot", state)  # what `lorastack adapters load hot` does: checked, then loaded
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        reply = httpx.post(f"{front['url']}/v1/completions", json={"model": "hot", "prompt": [1000, 1001],
                           "max_tokens": 1}, timeout=60)  # fmt: skip
        first = time.perf_counter() - started
        unload_adapter(registry, "hot", state)
        started = time.perf_counter()
        response = httpx.post(f"{direct}/v1/load_lora_adapter", json={"lora_name": f"raw{attempt}",
                              "lora_path": str(adapter)}, headers=auth, timeout=60)  # fmt: skip
        raw = time.perf_counter() - started
        httpx.post(f"{direct}/v1/unload_lora_adapter", json={"lora_name": f"raw{attempt}"}, headers=auth, timeout=60)
        emit(out, {"kind": "hot_load", "attempt": attempt, "front_door_load_ms": round(loaded * 1000, 1),
                   "first_request_ms": round(first * 1000, 1), "first_status": reply.status_code,
                   "vllm_direct_load_ms": round(raw * 1000, 1), "vllm_direct_status": response.status_code,
                   **meta["tags"]})  # fmt: skip


def promotion(out: Path, front: dict, registry_home: Path, v1: Path, v2: Path, processes: int, meta: dict) -> None:
    from lorastack.serve.registry import Registry
    from lorastack.serve.state import ServerState

    registry = Registry(registry_home)
    state = ServerState(**front)
    shapes = state.base.weight_shapes()
    first = registry.register("prod", v1, state.base, shapes)
    second = registry.register("prod", v2, state.base, shapes)
    client = state.client
    client.promote(first.ref, "prod")
    result: dict = {}

    def promote_later() -> None:
        time.sleep(4)
        result["promote_at"] = time.time()
        started = time.perf_counter()
        client.promote(second.ref, "prod")
        result["promote_s"] = time.perf_counter() - started

    import threading

    thread = threading.Thread(target=promote_later)
    thread.start()
    records, _, wall = load(f"{front['url']}/v1/completions", ["prod"], 64, 1000, processes,
                                     stop_at=time.time() + 10)  # fmt: skip
    thread.join()
    after = [r for r in records if r.get("served") == f"prod@v{second.version}" and r.get("first_token_at")]
    first_new = min((r["first_token_at"] for r in after), default=None)
    served = sorted({str(r.get("served")) for r in records})
    emit(out, {"kind": "promotion_under_load", "concurrency": 64, "requests": len(records),
               "failed": sum(not r["ok"] for r in records), "served_by": served,
               "promote_s": round(result["promote_s"], 3),
               "promote_to_first_new_token_s": round(first_new - result["promote_at"], 3) if first_new else None,
               "old_version_answers_after_promote": sum(1 for r in records if r.get("served") == first.ref
                                                         and r["start"] > result["promote_at"] + result["promote_s"]),
               **summarize(records, wall), **meta["tags"]})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="base model folder")
    parser.add_argument("--adapters", type=Path, required=True, help="folder of adapter folders a0, a1, ...")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile-out", type=Path, help="where the front door's sampled profile goes")
    parser.add_argument("--processes", type=int, default=8, help="load generator processes")
    parser.add_argument("--quick", action="store_true", help="fewer requests per case")
    parser.add_argument("--tag", action="append", default=[], help="KEY=VALUE added to every line")
    parser.add_argument("--only", default="latency,compare,hot_load,promotion,profile")
    parser.add_argument("--latency-concurrency", default="1,8", help="concurrencies of the paired latency runs")
    parser.add_argument("--pairs", type=int, default=100, help="paired requests per stream in the latency runs")
    parser.add_argument("--paths", default="direct,front_door,front_door_one_process", help="what to measure")
    parser.add_argument("--concurrency", default="64,256")
    parser.add_argument("--vllm-arg", action="append", default=[], help="a vLLM argument (--vllm-arg=--flag)")
    parser.add_argument("--attach", help="measure a vLLM that is already running at this URL instead of starting one")
    parser.add_argument("serve_args", nargs="*", help="further `lorastack serve` arguments (after --)")
    args = parser.parse_args()
    steps = args.only.split(",")
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    adapters = sorted(p for p in args.adapters.iterdir() if (p / "adapter_config.json").is_file())
    adapters.sort(key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else 0)
    attach = ["--vllm-url", args.attach] if args.attach else []
    vllm_args = ["--", *args.vllm_arg] if args.vllm_arg else []
    main_server = Server(work / "home", 9100, ["--base-model", str(args.base), "--no-demo-adapter", *attach,
                                               *args.serve_args, *vllm_args])  # fmt: skip
    servers = [main_server]
    try:
        front = main_server.wait()
        vllm_pid = front["engine_pid"]
        argv = Path(f"/proc/{vllm_pid}/cmdline").read_bytes().split(b"\0") if vllm_pid else []
        tags = dict(t.split("=", 1) for t in args.tag)
        meta = {"vllm_pid": vllm_pid, "tags": tags}
        emit(args.out, {"kind": "server", "ready_s": round(main_server.ready_s, 1), "device": front["device"],
                        "max_lora_rank": front["max_lora_rank"], "max_loras": front["max_loras"],
                        "vllm_argv": [a.decode() for a in argv if a][1:], "nproc": os.cpu_count(), **tags})  # fmt: skip

        from lorastack.serve.loading import load_adapter
        from lorastack.serve.registry import Registry
        from lorastack.serve.state import ServerState

        registry = Registry(main_server.home)
        state = ServerState(**front)
        base = state.base
        shapes = base.weight_shapes()
        names = []
        for path in adapters[:8]:
            registry.register(path.name, path, base, shapes)
            load_adapter(registry, path.name, state)
            names.append(path.name)
        # The second front door: the same vLLM, the front door as one process (as before --workers); its own home.
        key = vllm_key(vllm_pid) if vllm_pid else None
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        meta.update(upstream=front["upstream_url"], auth=auth)
        attach_args = ["--base-model", str(args.base), "--vllm-url", front["upstream_url"], "--no-demo-adapter",
                       *(["--vllm-api-key", key] if key else [])]  # fmt: skip
        targets = {
            "direct": (front["upstream_url"], None, auth),
            "front_door": (front["url"], front["pid"], {}),
        }
        if "front_door_one_process" in args.paths.split(","):
            single = Server(work / "home-single", 9101, [*attach_args, "--workers", "1"])
            servers.append(single)
            single_state = single.wait(300)
            targets["front_door_one_process"] = (single_state["url"], single_state["pid"], {})
        targets = {k: v for k, v in targets.items() if k in args.paths.split(",")}
        # Warm-up: every path, every model, a few requests (CUDA graphs, adapters in their slots, connections).
        for url, _, headers in targets.values():
            load(f"{url}/v1/completions", [base.name, *names], 64, 1, args.processes, headers=headers)
        if "latency" in steps:
            for concurrency in (int(c) for c in args.latency_concurrency.split(",")):
                for mix, models in (("base", [base.name]), ("adapters8", names)):
                    paired(args.out, targets, models, mix, concurrency, args.pairs, args.processes, meta)
        if "compare" in steps:
            compare(args.out, targets, base.name, names, args.processes, args.quick, meta,
                    tuple(int(c) for c in args.concurrency.split(",")))
        if "hot_load" in steps and len(adapters) > 8:
            hot_load(args.out, front, main_server.home, adapters[8], meta)
        if "promotion" in steps and len(adapters) > 10:
            promotion(args.out, front, main_server.home, adapters[9], adapters[10], args.processes, meta)
        if "profile" in steps and args.profile_out:
            profiled = Server(work / "home-profiled", 9102, [*attach_args, "--workers", "1"],
                              ["--sample-profile", str(args.profile_out)])
            servers.append(profiled)
            state = profiled.wait(300)

            records, client_cpu, wall = load(f"{state['url']}/v1/completions", names, 256, 2, args.processes)
            emit(args.out, {"kind": "throughput", "path": "front_door_one_process_profiled", "concurrency": 256,
                            "mix": "adapters8", **summarize(records, wall), "client_cpu": client_cpu, **tags})
            profiled.stop()
        metrics = httpx.get(f"{front['url']}/metrics", timeout=10).text
        counted = [line for line in metrics.splitlines() if line.startswith("lorastack_requests_total")]
        emit(args.out, {"kind": "metrics", "series": len(counted), "sample": counted[:6], **tags})
    finally:
        for server in reversed(servers):
            server.stop()
        for server in servers:
            log = server.home / "serve.log"
            if log.is_file():
                print(f"--- {log} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        vllm_logs = sorted((work / "home" / "logs").glob("vllm-*.log"))
        for log in vllm_logs:
            shutil.copy(log, args.out.with_name(args.out.stem + "_vllm.log"))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
