"""Fine-tuning jobs end to end with the official ``openai`` client against the real vLLM CPU server: upload, train
(real ``lorastack train`` subprocesses on the embedded model, with tests/data/jobs_tiny.yaml), serve the result under
its ``ft:`` name; cancel mid-run; a worker restart mid-run resumes from the checkpoint.

Each job is a few steps at 384 tokens (seconds a step on 2 cores) plus the trainer's start (model load).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from lorastack.cli import app
from lorastack.errors import NotFound

pytestmark = pytest.mark.vllm

DATA = Path(__file__).resolve().parents[1] / "data" / "tool_chat.jsonl"
FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def training_file(vllm_server):
    client = vllm_server.openai()
    uploaded = client.files.create(file=("tool_chat.jsonl", io.BytesIO(DATA.read_bytes())), purpose="fine-tune")
    assert uploaded.status == "processed"
    return uploaded.id


def _wait(client: openai.OpenAI, job_id: str, done, timeout: float = 900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if done(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")


def _events(client: openai.OpenAI, job_id: str) -> list:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))  # oldest first


def test_job_trains_and_its_adapter_answers(vllm_server, training_file, monkeypatch) -> None:
    client, base = vllm_server.openai(), vllm_server.state.base_name
    job = client.fine_tuning.jobs.create(
        model=base, training_file=training_file, suffix="tiny", seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
    )  # fmt: skip
    assert job.status == "queued"
    done = _wait(client, job.id, lambda j: j.status in FINAL)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:{base}:tiny:{job.id}" and done.trained_tokens > 0

    answer = client.chat.completions.create(
        model=done.fine_tuned_model, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=4, temperature=0,
    )  # fmt: skip
    assert answer.model == f"{job.id}@v1"  # the new adapter answered, under the alias
    assert done.fine_tuned_model in {m.id for m in client.models.list()}

    events = _events(client, job.id)
    steps = [e.data for e in events if e.type == "metrics"]
    assert [s["step"] for s in steps] == [1, 2] and all(s["train_loss"] > 0 for s in steps)
    assert events[-1].message == "The job has successfully completed."
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [2, 1]
    assert checkpoints[0].metrics.train_loss == steps[1]["train_loss"]
    results = client.files.content(done.result_files[0]).text.splitlines()
    assert results[0] == "step,train_loss,valid_loss" and len(results) == 3

    monkeypatch.setenv("LORASTACK_HOME", str(vllm_server.registry.home))  # where the server said where it is
    runner = CliRunner()
    listed = runner.invoke(app, ["jobs", "list"])
    assert listed.exit_code == 0 and job.id in listed.output and "succeeded" in listed.output
    shown = runner.invoke(app, ["jobs", "show", job.id])
    assert shown.exit_code == 0 and done.fine_tuned_model in shown.output
    logged = runner.invoke(app, ["jobs", "events", job.id])
    assert logged.exit_code == 0 and "Step 2/2: training loss=" in logged.output
    missing = runner.invoke(app, ["jobs", "cancel", "ftjob-nope"])
    assert missing.exit_code == 1 and isinstance(missing.exception, NotFound)

    card = vllm_server.registry.get(f"{job.id}@v1").card
    assert card["training"]["fine_tuning_job"]["id"] == job.id
    assert card["training"]["fine_tuning_job"]["training_file"] == training_file
    assert card["training"]["config"]["training"]["seed"] == 3


def test_cancel_mid_run_leaves_no_adapter(vllm_server, training_file) -> None:
    client, door = vllm_server.openai(), vllm_server.server.front_door
    job = client.fine_tuning.jobs.create(model=vllm_server.state.base_name, training_file=training_file,
                                         hyperparameters={"n_epochs": 10, "batch_size": 2})  # fmt: skip
    _wait(client, job.id, lambda j: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(j.id)))
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    run = door.jobs.job_folder(job.id) / "run"
    deadline = time.monotonic() + 60
    while run.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not run.exists()
    with pytest.raises(NotFound):
        vllm_server.registry.get(job.id)
    assert not any(m.id.endswith(job.id) for m in client.models.list())
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(job.id)


def test_worker_restart_mid_run_resumes_from_the_checkpoint(vllm_server, training_file) -> None:
    """What a server restart does to a running job (the worker stops with the server, a new one starts from the
    database): the trainer is stopped, the job stays running, and it continues from its last whole checkpoint."""
    client, door = vllm_server.openai(), vllm_server.server.front_door
    job = client.fine_tuning.jobs.create(model=vllm_server.state.base_name, training_file=training_file,
                                         hyperparameters={"n_epochs": 2, "batch_size": 2})  # 8 steps  # fmt: skip
    _wait(client, job.id, lambda j: len(client.fine_tuning.jobs.checkpoints.list(j.id).data) >= 2)
    door.jobs.stop()
    stopped = client.fine_tuning.jobs.retrieve(job.id)
    assert stopped.status == "running"
    saved = max(c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id).data)
    door.jobs.start()
    done = _wait(client, job.id, lambda j: j.status in FINAL)
    assert done.status == "succeeded", done.error

    events = _events(client, job.id)
    resumed = [i for i, e in enumerate(events) if e.message.startswith("Resuming from the checkpoint of step")]
    assert len(resumed) == 1
    resumed_from = int(events[resumed[0]].message.split("step ")[1].split()[0])
    assert resumed_from >= saved
    after = [e.data["step"] for e in events[resumed[0] :] if e.type == "metrics"]
    assert after and after[0] == resumed_from + 1 and after[-1] == 8  # no step trained twice
    assert "Resuming from checkpoint" in (door.jobs.job_folder(job.id) / "train.log").read_text()
