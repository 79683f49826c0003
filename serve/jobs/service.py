"""Fine-tuning jobs, as the front door's routes use them: create (files checked, then queued), cancel, read.

Statuses: ``validating_files -> queued -> running -> succeeded | failed | cancelled``. The worker
(:mod:`lorastack.serve.jobs.runner`) moves a job from ``queued`` on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from lorastack.errors import NotFound
from lorastack.models import BaseModel
from lorastack.serve.jobs.errors import Conflict, InvalidRequest
from lorastack.serve.jobs.files import PURPOSES, DataCheck, FileStore
from lorastack.serve.jobs.protocol import JobCreate
from lorastack.serve.jobs.runner import JobRunner, JobSettings, Publish
from lorastack.serve.jobs.store import FINAL, JobStore, new_id
from lorastack.serve.registry import Registry

logger = logging.getLogger(__name__)

DEFAULT_SEED = 42
"""The seed of a job that gives none (reported in the job, so a run can be repeated)."""


class FineTuning:
    """Files, jobs and the worker of one server."""

    def __init__(self, registry: Registry, base: BaseModel, publish: Publish, settings: JobSettings | None = None,
                 check: DataCheck | None = None) -> None:  # fmt: skip
        self.settings = settings or JobSettings()
        if self.settings.recipe is not None:
            recipe = self.settings.recipe.expanduser().resolve()  # the trainer runs in the job's folder
            if not recipe.is_file():
                raise NotFound(f"The jobs recipe {recipe} does not exist.", "Give --jobs-recipe a YAML recipe file.")
            self.settings = replace(self.settings, recipe=recipe)
        self.base = base
        self.store = JobStore(registry.db_path)
        self.files = FileStore(registry.home, self.store, self.settings.max_file_bytes, check)
        self.runner = JobRunner(registry.home, self.store, self.files, registry, base, self.settings, publish)

    def start(self) -> None:
        """Start the worker: jobs a stopped server left running resume first, then the queued ones in order."""
        for job_id in self.store.job_ids("validating_files"):  # a server stopped while creating it: check again
            data = self.store.file(self.store.job(job_id)["training_file"])
            self._validated(job_id, data)
        self.runner.start()  # it looks for queued jobs as it starts

    def stop(self) -> None:
        self.runner.stop()

    def create(self, body: JobCreate) -> dict[str, Any]:
        hyper = body.supervised()
        if body.model != self.base.name:
            raise InvalidRequest(
                f"Model {body.model!r} cannot be fine-tuned here: this server trains adapters for {self.base.name}.",
                f"Use model={self.base.name!r}.", "model",
            )  # fmt: skip
        data = self._data_file(body.training_file, "training_file")
        validation = None
        if body.validation_file is not None:
            validation = self._data_file(body.validation_file, "validation_file")
            if validation["status"] == "error":  # checked on upload: refused now rather than failing the job later
                raise InvalidRequest(
                    f"Invalid validation file {validation['id']} ({validation['filename']}): "
                    f"{validation['status_details']}", "Fix the file and upload it again.", "validation_file",
                )  # fmt: skip
        job_id = new_id("ftjob")
        row = {
            "id": job_id, "created_at": int(time.time()), "model": body.model, "training_file": data["id"],
            "validation_file": validation["id"] if validation else None, "suffix": body.suffix, "seed": DEFAULT_SEED if body.seed is None else body.seed,
            "metadata": body.metadata, "hyperparameters": hyper.model_dump(), "status": "validating_files",
        }  # fmt: skip
        self.store.add_job(row)
        also = f" and validation file: {validation['id']}" if validation else ""
        self.store.add_event(job_id, f"Validating training file: {data['id']}{also}")
        with self.runner.lock:  # the worker starts a queued job under this lock: the answer shows it as created
            queued = self._validated(job_id, data)
            job = self.store.job(job_id)
        if queued:
            self.runner.wake.set()
        return job

    def _data_file(self, file_id: str, param: str) -> dict[str, Any]:
        """An uploaded training data file (``param`` names the field that gave it); NotFound (a 404) if unknown."""
        data = self.store.file(file_id)
        if data["purpose"] not in PURPOSES:
            raise InvalidRequest(f"File {data['id']} has purpose {data['purpose']!r}, not 'fine-tune'.",
                                 "Upload training data with purpose='fine-tune'.", param)  # fmt: skip
        return data

    def _validated(self, job_id: str, data: dict[str, Any]) -> bool:
        """Queue the job (True: the worker is to be woken), or fail it with the file's own check (the file:line of
        its first bad row)."""
        if data["status"] == "error":
            message = f"Invalid training file {data['id']} ({data['filename']}): {data['status_details']}"
            self.runner.fail(job_id, "invalid_training_file", message, "training_file")
            return False
        self.store.update_job(job_id, ("validating_files",), status="queued")
        self.store.add_event(job_id, "Files validated, moving job to queued state.")
        return True

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self.runner.lock:
            job = self.store.job(job_id)
            if job["status"] in FINAL:
                raise Conflict(f"Job {job_id} has already {job['status']}; only an unfinished job can be cancelled.")
            self.store.update_job(job_id, cancel_requested=1)
            self.store.update_job(job_id, ("validating_files", "queued", "running"), status="cancelled",
                                  finished_at=int(time.time()))  # fmt: skip
            self.store.add_event(job_id, "Job cancelled.")
        self.runner.cancel(job_id)  # outside the lock: the worker takes it to finish the job
        return self.store.job(job_id)

    def job_folder(self, job_id: str) -> Path:
        return self.runner.folder / job_id
