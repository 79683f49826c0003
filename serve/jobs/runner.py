"""The job worker: one thread that runs each fine-tuning job as a ``lorastack train`` subprocess, one at a time.

Serving never imports the fine-tuning room: a job is the same ``lorastack train`` a user runs (the server's jobs
recipe plus the job's data, hyperparameters and run folder as ``KEY=VALUE`` settings), in its own process group.
Its progress lines become ``metrics`` events, its checkpoints become checkpoint objects, and a run that ends well is
handed to ``publish`` (the front door: register, load, alias). A job left running by a server that stopped (or was
killed) is continued from its last whole checkpoint at the next start (``--resume``).

Run folder of a job: ``LORASTACK_HOME/jobs/<job id>/`` with ``train.log`` and ``run/`` (the trainer's
``output_dir``: ``checkpoints/``, ``adapter/``, ``loss_curve.png``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastack.errors import LorastackError, NotFound
from lorastack.models import EMBEDDED_NAME, BaseModel
from lorastack.sources import is_remote
from lorastack.serve.jobs.files import FileStore
from lorastack.serve.jobs.progress import checkpoints, cut_off, error_line, parse_step
from lorastack.serve.jobs.protocol import fine_tuned_name
from lorastack.serve.jobs.store import JobStore
from lorastack.serve.registry import TRAINING_CARD, AdapterVersion, Registry

logger = logging.getLogger(__name__)

Publish = Callable[[str, str], None]
"""``publish(ref, alias)``: serve registered version ``ref`` under ``alias`` (the front door's promotion)."""

DEFAULT_LEARNING_RATE = 2e-4
"""lorastack train's default peak learning rate (training.learning_rate), which learning_rate_multiplier scales
when the jobs recipe sets none; a unit test keeps it equal to the trainer's own default."""
STOP_GRACE_S = 15.0
"""Seconds a trainer gets to end after SIGTERM before it is killed."""


@dataclass(frozen=True)
class JobSettings:
    recipe: Path | None = None
    """The recipe every job's training starts from (lora, data.max_length, save_steps...); None: train's defaults."""
    max_file_bytes: int = 512 * 2**20

    def base_learning_rate(self) -> float:
        """The recipe's training.learning_rate, which learning_rate_multiplier multiplies."""
        if self.recipe is None:
            return DEFAULT_LEARNING_RATE
        import yaml  # only jobs that set a multiplier read the recipe here

        try:
            raw = yaml.safe_load(self.recipe.read_text()) or {}
            return float(raw.get("training", {}).get("learning_rate", DEFAULT_LEARNING_RATE))
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
            return DEFAULT_LEARNING_RATE  # the trainer itself then says what is wrong with the recipe


def train_arguments(job: dict[str, Any], settings: JobSettings, base: BaseModel, data: Path, run: Path,
                    resume: bool, validation: Path | None = None) -> list[str]:  # fmt: skip
    """``lorastack train``'s arguments for ``job``: the jobs recipe, then the job's own settings over it.

    ``validation`` (the job's validation_file) becomes the eval split (``data.eval_path``); without it the recipe's
    data.eval_fraction holds out a share of the training file."""
    # An hf:// or s3:// base is named by its URL (already fetched: the trainer finds it in the cache), so that the
    # adapter's card names where the base came from, as the server's does.
    spec = base.name if base.name == EMBEDDED_NAME else (base.source if is_remote(base.source) else base.path)
    settings_given = {
        "base_model": spec, "data.path": str(data), "output_dir": str(run),
        "training.max_steps": -1, "training.logging_steps": 1, "training.seed": job["seed"],
    }  # fmt: skip
    if validation is not None:
        settings_given["data.eval_path"] = str(validation)
    hyper = job["hyperparameters"]
    if hyper["n_epochs"] != "auto":
        settings_given["training.epochs"] = hyper["n_epochs"]
    if hyper["batch_size"] != "auto":
        settings_given["training.batch_size"] = hyper["batch_size"]
    if hyper["learning_rate_multiplier"] != "auto":
        settings_given["training.learning_rate"] = settings.base_learning_rate() * hyper["learning_rate_multiplier"]
    # Values are read as YAML: JSON quoting keeps a path or a name a string whatever it holds.
    argv = [*([str(settings.recipe)] if settings.recipe else []),
            *(f"{k}={json.dumps(v)}" for k, v in settings_given.items())]  # fmt: skip
    return [*argv, "--resume"] if resume else argv


class JobRunner:
    """The worker thread. ``lock`` orders a job's last step (publish or failure) against a cancel."""

    def __init__(self, home: Path, store: JobStore, files: FileStore, registry: Registry, base: BaseModel,
                 settings: JobSettings, publish: Publish) -> None:  # fmt: skip
        self.folder = home / "jobs"
        self.store, self.files, self.registry, self.base = store, files, registry, base
        self.settings, self.publish = settings, publish
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: tuple[str, subprocess.Popen] | None = None
        self.command = [sys.executable, "-m", "lorastack.cli", "train"]
        """The trainer: ``lorastack train`` of this installation (the job's arguments follow)."""

    # -- the thread --------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="lorastack-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and the trainer it runs; that job stays ``running`` and resumes at the next start."""
        self._stopping.set()
        self.wake.set()
        self._terminate()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE_S + 10)

    def cancel(self, job_id: str) -> None:
        """Stop ``job_id``'s trainer if it is the one running."""
        current = self._current
        if current is not None and current[0] == job_id:
            self._terminate()

    def _terminate(self) -> None:
        current = self._current
        if current is None:
            return
        process = current[1]
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _loop(self) -> None:
        while not self._stopping.is_set():
            job = self.store.next_job()
            if job is None:
                self.wake.wait(2.0)
                self.wake.clear()
                continue
            try:
                self._run(job)
            except Exception as exc:  # one job's failure must not stop the worker
                logger.exception("Fine-tuning job %s failed in the worker", job["id"])
                self.fail(job["id"], "internal_error", f"The job worker failed: {exc!r}")

    # -- one job -----------------------------------------------------------------------------------------------

    def _run(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        folder = self.folder / job_id
        run = folder / "run"
        interrupted = job["status"] == "running"
        with self.lock:  # not while a job's creation is being answered (JobService.create)
            started = self.store.update_job(job_id, ("queued", "running"), status="running",
                                            started_at=job["started_at"] or int(time.time()))  # fmt: skip
        if not started:
            return  # cancelled meanwhile
        for partial in cut_off(run / "checkpoints"):
            shutil.rmtree(partial, ignore_errors=True)
        saved = checkpoints(run / "checkpoints")
        if interrupted and saved:
            self.store.add_event(job_id, f"Resuming from the checkpoint of step {max(saved)} after a restart.")
        else:
            shutil.rmtree(run, ignore_errors=True)  # whatever a run without a checkpoint left
            self.store.add_event(job_id, "Restarting from the beginning after a restart (no checkpoint was saved)."
                                 if interrupted else "Fine-tuning job started.")  # fmt: skip
        data = self.files.path(self.store.file(job["training_file"]))
        validation = self.files.path(self.store.file(job["validation_file"])) if job["validation_file"] else None
        argv = train_arguments(job, self.settings, self.base, data, run, resume=bool(interrupted and saved),
                               validation=validation)  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        rc, message = self._train(job_id, argv, folder, run)
        self._finish(job_id, rc, message, run)

    def _train(self, job_id: str, argv: list[str], folder: Path, run: Path) -> tuple[int, str | None]:
        """Run the trainer to its end; (exit status, its error line or the log's last lines)."""
        command = [*self.command, *argv]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        logger.info("Job %s: %s", job_id, " ".join(command[1:]))
        with (folder / "train.log").open("a") as log:
            process = subprocess.Popen(
                command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - it only calls prctl, nothing that takes a lock
            )  # fmt: skip
            self._current = (job_id, process)
            if self.store.job(job_id)["cancel_requested"] or self._stopping.is_set():
                self._terminate()  # a cancel (or a stop) that came while it started
            error, tail, metrics = None, deque(maxlen=5), {}
            try:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    error = error_line(line) or error
                    if line.strip():
                        tail.append(line.strip())
                    step = parse_step(line)
                    if step is not None:
                        metrics[step.step] = {**metrics.get(step.step, {}), **step.data()}
                        self.store.add_event(job_id, step.message(), "metrics", metrics[step.step])
                    self._record_checkpoints(job_id, run, metrics)
            finally:
                rc = process.wait()
                self._current = None
        self._record_checkpoints(job_id, run, metrics)
        return rc, error or " / ".join(tail)

    def _record_checkpoints(self, job_id: str, run: Path, metrics: dict[int, dict]) -> None:
        for step in sorted(checkpoints(run / "checkpoints")):
            known = [s for s in metrics if s <= step]
            at = metrics[max(known)] if known else {"step": step}
            if self.store.add_checkpoint(job_id, step, {**at, "step": step}):
                self.store.add_event(job_id, f"Checkpoint saved at step {step}.", data={"step": step})

    def _finish(self, job_id: str, rc: int, message: str | None, run: Path) -> None:
        with self.lock:
            job = self.store.job(job_id)
            if job["status"] == "cancelled" or job["cancel_requested"]:
                shutil.rmtree(run, ignore_errors=True)  # a cancelled job leaves no adapter and no run
                self.store.update_job(job_id, ("running",), status="cancelled", finished_at=int(time.time()))
                return
            if self._stopping.is_set():
                self.store.add_event(job_id, "The server stopped; the job continues from its last checkpoint at the "
                                     "next start.")  # fmt: skip
                return
            if rc != 0:
                why = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
                self.fail(job_id, "training_failed", f"Training failed ({why}): {message or 'no output'}")
                return
            self._succeed(job, run)

    def _succeed(self, job: dict[str, Any], run: Path) -> None:
        job_id = job["id"]
        ended = time.perf_counter()
        adapter_dir = run / "adapter"
        card = _read_json(adapter_dir / TRAINING_CARD)
        training_file = self.store.file(job["training_file"])
        card["fine_tuning_job"] = {
            "id": job_id, "training_file": job["training_file"], "training_file_sha256": training_file["sha256"],
            "training_file_name": training_file["filename"], "validation_file": job["validation_file"],
            "hyperparameters": job["hyperparameters"],
            "seed": job["seed"], "suffix": job["suffix"],
        }  # fmt: skip
        (adapter_dir / TRAINING_CARD).write_text(json.dumps(card, indent=2) + "\n")
        name = fine_tuned_name(self.base.name, job["suffix"], job_id)
        try:
            adapter = self._registered(job_id)  # by a server that stopped before serving it
            if adapter is None:
                adapter = self.registry.register(job_id, adapter_dir, self.base, self.base.weight_shapes())
                self.store.add_event(job_id, f"Registered the adapter as {adapter.ref}.")
            self.publish(adapter.ref, name)
        except LorastackError as exc:
            self.fail(job_id, "publish_failed", f"Trained, but could not be served: {exc}")
            return
        served = time.perf_counter() - ended
        results = self.files.add_results(job_id, _results_csv(self.store.all_events(job_id)))
        tokens = card.get("metrics", {}).get("non_padding_tokens")
        self.store.update_job(job_id, ("running",), status="succeeded", fine_tuned_model=name, adapter=adapter.ref,
                              trained_tokens=tokens, result_files=[results["id"]], finished_at=int(time.time()))  # fmt: skip
        self.store.add_event(job_id, f"New fine-tuned model created: {name} (served {served:.2f} s after training "
                             "ended).", data={"fine_tuned_model": name, "serve_seconds": round(served, 3)})  # fmt: skip
        self.store.add_event(job_id, "The job has successfully completed.")
        logger.info("Job %s succeeded: %s serves %s", job_id, name, adapter.ref)

    def _registered(self, job_id: str) -> AdapterVersion | None:
        try:
            return self.registry.get(job_id)
        except NotFound:
            return None

    def fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        error = {"code": code, "message": message[:2000], "param": param}
        if self.store.update_job(job_id, ("validating_files", "queued", "running"), status="failed", error=error,
                                 finished_at=int(time.time())):  # fmt: skip
            self.store.add_event(job_id, message[:2000], level="error")
            logger.warning("Job %s failed: %s", job_id, message)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _results_csv(events: list[dict[str, Any]]) -> bytes:
    """OpenAI's results file: one row per step (step, train_loss, valid_loss)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", "train_loss", "valid_loss"])
    for event in events:
        data = event["data"] or {}
        if event["type"] == "metrics":
            writer.writerow([data.get("step"), data.get("train_loss", ""), data.get("valid_loss", "")])
    return out.getvalue().encode()


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the server's process dies, even by kill -9 (Linux; elsewhere a
    restarted server's trainer is stopped by the server, not the kernel)."""
    if sys.platform.startswith("linux"):
        import ctypes  # only here, in the forked child

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
