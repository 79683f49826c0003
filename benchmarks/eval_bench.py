"""`lorastack eval --concurrency`: wall time of the same eval items asked one at a time and N at once, same run.

Run as: .venv/bin/python benchmarks/eval_bench.py [--items 12] [--concurrency 4] [--rounds 2]

Starts a lorastack server on the embedded default (its default alias, the bundled tools-demo adapter) in a temporary
LORASTACK_HOME, then runs the eval on the first --items items of agent/evalsets/calculator.jsonl and no_tool.jsonl
(half each), alternating one at a time and --concurrency at once, --rounds times each. Prints the wall times and
the accuracy of each run (batched arithmetic can change a few answers) and writes
benchmarks/results/eval_concurrency_<device>_<date>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from lorastack.agent.config import AgentConfig
from lorastack.agent.eval_run import run_eval
from lorastack.agent.evaluate import load_items
from lorastack.serve.config import ServeConfig
from lorastack.serve.registry import Registry
from lorastack.serve.server import start_server

ROOT = Path(__file__).resolve().parent.parent
SETS = ROOT / "agent" / "evalsets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    half = args.items // 2
    items = [*load_items(SETS / "calculator.jsonl", half), *load_items(SETS / "no_tool.jsonl", args.items - half)]
    home = Path(tempfile.mkdtemp(prefix="lorastack-eval-bench-"))
    runs: dict[int, list[dict]] = {1: [], args.concurrency: []}
    server = start_server(ServeConfig(port=args.port), Registry(home))
    try:
        config = AgentConfig(base_url=f"{server.state.url}/v1")
        run_eval(items[:2], config)  # warm-up: the agent's imports, the adapter in its slot
        for _ in range(args.rounds):
            for concurrency in runs:
                started = time.perf_counter()
                (report,) = run_eval(items, config, concurrency=concurrency)
                runs[concurrency].append({"seconds": round(time.perf_counter() - started, 1),
                                          "accuracy": round(report.accuracy, 3)})  # fmt: skip
        device = server.state.device
    finally:
        server.stop()
    one, many = (statistics.median(r["seconds"] for r in runs[c]) for c in runs)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "device": device, "items": len(items),
        "model": "the server's default alias",
        "runs": {f"concurrency {c}": r for c, r in runs.items()},
        "median_seconds": {"one at a time": one, f"{args.concurrency} at once": many},
        "speedup": round(one / many, 2),
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    out = ROOT / "benchmarks" / "results" / f"eval_concurrency_{device}_{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
