"""The job worker's control of its trainer process, in seconds: a stand-in trainer (below the worker) prints
``lorastack train``'s progress lines and writes checkpoints and a real adapter; the worker, the registry, the
database and the files are real. ``publish`` records what the front door would be asked to serve.

The real ``lorastack train`` and vLLM run in tests/integration/test_jobs.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lorastack.errors import NotFound
from lorastack.serve.jobs import FineTuning, JobSettings
from lorastack.serve.jobs.protocol import JobCreate
from lorastack.serve.registry import Registry

DATA = Path(__file__).resolve().parents[1] / "data" / "tool_chat.jsonl"

TRAINER = textwrap.dedent("""
    import json, os, shutil, sys, time
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    out = json.loads(args["output_dir"])
    checkpoints = os.path.join(out, "checkpoints")
    total = int(os.environ.get("FAKE_STEPS", "4"))
    start = 0
    if "--resume" in sys.argv:
        start = max(int(n.split("-")[1]) for n in os.listdir(checkpoints))
        print(f"Resuming from checkpoint-{start}.", flush=True)
    if os.environ.get("FAKE_FAIL"):
        print("error: train.jsonl:3: this row has no assistant turn. Fix the file.", flush=True)
        sys.exit(1)
    for step in range(start + 1, total + 1):
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0.05")))
        print(f"step {step}/{total}  loss {2.0 / step:.4f}  lr 3.0e-03  100 tok/s", flush=True)
        folder = os.path.join(checkpoints, f"checkpoint-{step}")
        os.makedirs(folder)
        for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
            open(os.path.join(folder, name), "w").write("{}")
    shutil.copytree(os.environ["FAKE_ADAPTER"], os.path.join(out, "adapter"))
    card = {"metrics": {"non_padding_tokens": 1234, "steps": total}, "config": {}}
    open(os.path.join(out, "adapter", "training_card.json"), "w").write(json.dumps(card))
    print("Adapter saved.", flush=True)
""")


@pytest.fixture
def jobs(tmp_path: Path, base_model, make_adapter, monkeypatch: pytest.MonkeyPatch):
    published: list[tuple[str, str]] = []
    service = FineTuning(Registry(tmp_path / "home"), base_model, lambda ref, alias: published.append((ref, alias)),
                         JobSettings())  # fmt: skip
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    service.runner.command = [sys.executable, str(script)]
    monkeypatch.setenv("FAKE_ADAPTER", str(make_adapter()))
    service.published = published
    yield service
    service.stop()


def _job(jobs: FineTuning, **hyper) -> str:
    with DATA.open("rb") as source:
        data = jobs.files.add(io.BytesIO(source.read()), "train.jsonl", "fine-tune")
    body = JobCreate(model=jobs.base.name, training_file=data["id"], suffix="t", hyperparameters=hyper or None)
    return jobs.create(body)["id"]


def _wait(jobs: FineTuning, job_id: str, done, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.store.job(job_id)
        if done(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} still {jobs.store.job(job_id)['status']}")


def _messages(jobs: FineTuning, job_id: str) -> list[str]:
    return [e["message"] for e in jobs.store.all_events(job_id)]


def test_success_registers_publishes_and_reports(jobs: FineTuning) -> None:
    job_id = _job(jobs, n_epochs=2)
    jobs.start()
    job = _wait(jobs, job_id, lambda j: j["status"] in ("succeeded", "failed"))
    assert job["status"] == "succeeded", job["error"]
    name = f"ft:{jobs.base.name}:t:{job_id}"
    assert jobs.published == [(f"{job_id}@v1", name)] and job["fine_tuned_model"] == name
    assert job["trained_tokens"] == 1234 and job["adapter"] == f"{job_id}@v1"
    metrics = [e["data"] for e in jobs.store.all_events(job_id) if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and metrics[-1]["train_loss"] == 0.5
    steps = [c["step"] for c in jobs.store.checkpoints(job_id, None, 10)[0]]
    assert steps == [4, 3, 2, 1]
    card = Registry(jobs.runner.folder.parent).get(job_id).card["training"]["fine_tuning_job"]
    assert card["training_file"] == job["training_file"] and card["hyperparameters"]["n_epochs"] == 2
    results = jobs.files.path(jobs.store.file(job["result_files"][0])).read_text().splitlines()
    assert results[0] == "step,train_loss,valid_loss" and results[-1] == "4,0.5,"
    argv = (jobs.job_folder(job_id) / "train.log").read_text()
    assert "Adapter saved." in argv


def test_trainer_error_fails_the_job_with_its_line(jobs: FineTuning, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    job_id = _job(jobs)
    jobs.start()
    job = _wait(jobs, job_id, lambda j: j["status"] == "failed")
    assert job["error"]["code"] == "training_failed" and "train.jsonl:3" in job["error"]["message"]
    assert jobs.published == []
    with pytest.raises(NotFound):
        Registry(jobs.runner.folder.parent).get(job_id)


def test_cancel_mid_run_stops_the_trainer_and_leaves_nothing(jobs: FineTuning, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "0.5")
    monkeypatch.setenv("FAKE_STEPS", "40")
    job_id = _job(jobs)
    jobs.start()
    _wait(jobs, job_id, lambda j: jobs.store.checkpoints(job_id, None, 1)[0])
    assert jobs.cancel(job_id)["status"] == "cancelled"
    _wait(jobs, job_id, lambda j: not (jobs.job_folder(job_id) / "run").exists())
    assert jobs.runner._current is None and jobs.published == []
    with pytest.raises(NotFound):
        Registry(jobs.runner.folder.parent).get(job_id)
    assert _messages(jobs, job_id)[-1] == "Job cancelled."


def test_a_stop_mid_run_resumes_from_the_last_checkpoint(jobs: FineTuning, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "0.3")
    monkeypatch.setenv("FAKE_STEPS", "8")
    job_id = _job(jobs)
    jobs.start()
    _wait(jobs, job_id, lambda j: len(jobs.store.checkpoints(job_id, None, 10)[0]) >= 2)
    jobs.stop()
    assert jobs.store.job(job_id)["status"] == "running"
    saved = max(c["step"] for c in jobs.store.checkpoints(job_id, None, 10)[0])
    jobs.start()
    job = _wait(jobs, job_id, lambda j: j["status"] == "succeeded")
    events = jobs.store.all_events(job_id)
    resumed = next(i for i, e in enumerate(events) if e["message"].startswith("Resuming"))
    assert events[resumed]["message"] == f"Resuming from the checkpoint of step {saved} after a restart."
    after = [e["data"]["step"] for e in events[resumed:] if e["type"] == "metrics"]
    assert after == list(range(saved + 1, 9))
    assert job["fine_tuned_model"] and len(jobs.published) == 1


def test_a_trainer_killed_outright_fails_the_job(jobs: FineTuning, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "0.5")
    monkeypatch.setenv("FAKE_STEPS", "40")
    job_id = _job(jobs)
    jobs.start()
    _wait(jobs, job_id, lambda j: jobs.store.checkpoints(job_id, None, 1)[0])
    os.kill(jobs.runner._current[1].pid, signal.SIGKILL)
    job = _wait(jobs, job_id, lambda j: j["status"] == "failed")
    assert "killed by signal 9" in job["error"]["message"] and jobs.published == []


def test_queued_jobs_run_in_order_one_at_a_time(jobs: FineTuning) -> None:
    first, second = _job(jobs), _job(jobs)
    jobs.start()
    _wait(jobs, second, lambda j: j["status"] == "succeeded")
    a, b = jobs.store.job(first), jobs.store.job(second)
    assert a["status"] == "succeeded" and a["finished_at"] <= b["started_at"]
    assert [ref for ref, _ in jobs.published] == [f"{first}@v1", f"{second}@v1"]


def test_cut_off_checkpoint_is_dropped_before_resuming(jobs: FineTuning, tmp_path: Path) -> None:
    from lorastack.serve.jobs.progress import checkpoints, cut_off

    folder = tmp_path / "checkpoints"
    for step, files in ((1, 3), (2, 1)):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt")[:files]:
            (folder / f"checkpoint-{step}" / name).write_text(json.dumps({}))
    assert list(checkpoints(folder)) == [1] and [p.name for p in cut_off(folder)] == ["checkpoint-2"]
