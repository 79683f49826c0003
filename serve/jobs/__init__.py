"""Fine-tuning jobs over the OpenAI API: uploaded files, jobs run as ``lorastack train`` subprocesses, their events
and checkpoints, and the result served under the job's ``ft:BASE:SUFFIX:JOB_ID`` name.

Modules: store (the database tables), files (uploads and their check), protocol (request and response shapes),
progress (reading the trainer's output), runner (the worker), service (create, cancel), api_router (the routes),
cli (``lorastack jobs``).
"""

from lorastack.serve.jobs.files import DataCheck, FileStore
from lorastack.serve.jobs.runner import JobSettings
from lorastack.serve.jobs.service import FineTuning

__all__ = ["DataCheck", "FileStore", "FineTuning", "JobSettings"]
