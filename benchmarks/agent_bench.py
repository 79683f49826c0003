"""Agent benchmark: end-to-end latency of `lorastack ask` on calculator questions, and where the time goes.

Run as: .venv/bin/python benchmarks/agent_bench.py [--adapter NAME] [--repeats 3]

Starts a lorastack server on the embedded default (in a temporary LORASTACK_HOME unless --home is given),
then runs `lorastack ask --json` as a user would (a new process per question, so CLI start-up is counted)
and reports the median wall time, the agent's own time, and the share of it spent in the model vs the tools.
Also times one `ask` with no server running (the temporary-server path). Writes .bench/agent.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lorastack.serve.config import ServeConfig
from lorastack.serve.registry import Registry
from lorastack.serve.server import start_server

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What is 17 * 23?",
    "What is 15% of 80?",
    "A shop sells pens at 3.75 each. How much do 12 pens cost?",
    "What is the square root of 1764?",
]


def _ask(question: str, env: dict, adapter: str | None) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "lorastack.cli", "ask", question, "--json"]
    if adapter:
        cmd += ["--adapter", adapter]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=True).stdout
    return time.perf_counter() - start, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", help="ask with this registered adapter (needs --home with it registered)")
    parser.add_argument("--home", type=Path, help="LORASTACK_HOME to use (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="lorastack-agent-bench-"))
    env = dict(os.environ, LORASTACK_HOME=str(home))

    cold_s, _ = _ask(QUESTIONS[0], env, None)  # no server yet: ask starts (and stops) a temporary one

    server = start_server(ServeConfig(port=8766), Registry(home))
    rows = []
    try:
        _ask("What is 1 + 1?", env, args.adapter)  # warm-up
        for _ in range(args.repeats):
            for question in QUESTIONS:
                wall, report = _ask(question, env, args.adapter)
                rows.append({"wall_s": wall, **report})
    finally:
        server.stop()

    model_s = sum(r["model_seconds"] for r in rows)
    tool_s = sum(r["tool_seconds"] for r in rows)
    agent_s = sum(r["seconds"] for r in rows)
    result = {
        "model": rows[0]["model"],
        "questions": len(rows),
        "cold_ask_with_temporary_server_s": round(cold_s, 1),
        "ask_wall_median_s": round(statistics.median(r["wall_s"] for r in rows), 2),
        "agent_median_s": round(statistics.median(r["seconds"] for r in rows), 2),
        "model_share_of_agent_time": round(model_s / agent_s, 3),
        "tool_share_of_agent_time": round(tool_s / agent_s, 4),
        "model_calls_mean": round(statistics.mean(r["model_calls"] for r in rows), 2),
        "tool_calls_total": sum(1 for r in rows for s in r["steps"] if s["kind"] == "tool_call"),
        "answers": {r["question"]: r["answer"] for r in rows},
    }
    out = ROOT / ".bench" / "agent.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        if key != "answers":
            print(f"{key:36} {value}")
    for question, answer in result["answers"].items():
        print(f"  {question} -> {answer}")
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
