"""Fine-tuning jobs benchmark: the time from a job's success to the first completion served by its adapter, and the
jobs path's overhead over ``lorastack train`` on the same data, recipe and machine, in the same run.

Run as: .venv/bin/python benchmarks/jobs_bench.py [--epochs 1] [--batch-size 4] [--rounds 1] [--out FILE]

A temporary server (embedded model, its own LORASTACK_HOME) trains tests/data/tool_chat.jsonl with
tests/data/jobs_tiny.yaml. Each round runs ``lorastack train`` directly and then the same training as a job
(upload, create, poll every 50 ms until succeeded); the direct run's wall time is its process's, the job's is from
create to succeeded as the client sees it. "served" is from the moment the client sees ``succeeded`` to the
answer of a chat completion on ``fine_tuned_model``; the job's own event says how long register, load and the
promotion's check took after the trainer exited. Prints a table and writes JSON (default .bench/jobs.json).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openai import OpenAI

from lorastack.cli import _data_check
from lorastack.serve.config import ServeConfig
from lorastack.serve.registry import Registry
from lorastack.serve.server import start_server

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "tool_chat.jsonl"
RECIPE = ROOT / "tests" / "data" / "jobs_tiny.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def direct_train(work: Path, epochs: int, batch_size: int, round_: int) -> float:
    """Wall seconds of ``lorastack train`` with the settings a job of these hyperparameters gets."""
    argv = [sys.executable, "-m", "lorastack.cli", "train", str(RECIPE), f"data.path={DATA}",
            f"output_dir={work / f'direct-{round_}'}", "training.max_steps=-1", "training.logging_steps=1",
            "training.seed=42", f"training.epochs={epochs}", f"training.batch_size={batch_size}"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    return time.perf_counter() - started


def job_train(client: OpenAI, base: str, epochs: int, batch_size: int) -> dict:
    uploaded = client.files.create(file=("train.jsonl", io.BytesIO(DATA.read_bytes())), purpose="fine-tune")
    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(model=base, training_file=uploaded.id,
                                         hyperparameters={"n_epochs": epochs, "batch_size": batch_size})  # fmt: skip
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
    seen = time.perf_counter()
    if job.status != "succeeded":
        raise SystemExit(f"job {job.id} {job.status}: {job.error}")
    answer = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=1, temperature=0,
                                            messages=[{"role": "user", "content": "Hi"}])  # fmt: skip
    answered = time.perf_counter()
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    serve = next(e.data["serve_seconds"] for e in events if e.data and "serve_seconds" in e.data)
    return {"job_seconds": seen - started, "served_after_success_s": answered - seen, "answered_by": answer.model,
            "register_load_promote_s": serve, "steps": max(e.data["step"] for e in events if e.type == "metrics")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="direct run + job, this many times")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "jobs.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lorastack-jobs-bench-"))
    os.environ["LORASTACK_HOME"] = str(work / "home")
    config = ServeConfig(port=_free_port(), demo_adapter=False, jobs_recipe=RECIPE)
    rows = []
    with start_server(config, Registry(work / "home"), data_check=_data_check) as server:
        client = OpenAI(base_url=f"{server.state.url}/v1", api_key="unused", max_retries=0, timeout=600)
        for round_ in range(args.rounds):
            direct = direct_train(work, args.epochs, args.batch_size, round_)
            job = job_train(client, server.state.base_name, args.epochs, args.batch_size)
            rows.append({"round": round_, "direct_train_s": direct, **job,
                         "overhead_s": job["job_seconds"] - direct})  # fmt: skip
            print(f"round {round_}: lorastack train {direct:.1f} s | job {job['job_seconds']:.1f} s "
                  f"(overhead {job['job_seconds'] - direct:+.1f} s, {job['steps']} steps) | success -> first "
                  f"completion {job['served_after_success_s']:.2f} s (by {job['answered_by']}) | trainer exit -> "
                  f"served {job['register_load_promote_s']:.2f} s")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"epochs": args.epochs, "batch_size": args.batch_size, "rows": rows}, indent=2))
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
