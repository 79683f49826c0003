"""What the fine-tuning API reads (a job's create body, strictly typed) and what it answers (OpenAI's objects).

The answers have the shape of OpenAI's ``file``, ``fine_tuning.job``, ``fine_tuning.job.event`` and
``fine_tuning.job.checkpoint`` objects, so the official ``openai`` client reads them unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lorastack.serve.jobs.errors import InvalidRequest

SUFFIX_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
ID_MAX = 256
METADATA_KEYS = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Auto = Literal["auto"]


class Hyperparameters(_Strict):
    """OpenAI's supervised hyperparameters; ``"auto"`` leaves the server's training recipe to decide."""

    n_epochs: Annotated[int, Field(ge=1, le=50)] | Auto = "auto"
    """Passes over the training file (training.epochs)."""
    batch_size: Annotated[int, Field(ge=1, le=256)] | Auto = "auto"
    """Examples per step (training.batch_size)."""
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=100, strict=False)] | Auto = "auto"
    """Times the recipe's learning rate (training.learning_rate)."""


class Supervised(_Strict):
    hyperparameters: Hyperparameters = Hyperparameters()


class Method(_Strict):
    type: str
    supervised: Supervised | None = None
    dpo: dict[str, Any] | None = None
    reinforcement: dict[str, Any] | None = None


class JobCreate(_Strict):
    """The body of ``POST /v1/fine_tuning/jobs``."""

    model: str = Field(min_length=1, max_length=ID_MAX)
    training_file: str = Field(min_length=1, max_length=ID_MAX)
    validation_file: str | None = Field(None, max_length=ID_MAX)
    suffix: str | None = Field(None, pattern=SUFFIX_PATTERN)
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = None
    method: Method | None = None
    hyperparameters: Hyperparameters | None = None
    """Deprecated by OpenAI in favour of method.supervised.hyperparameters; taken when method does not say."""
    integrations: list[Any] | None = None

    @model_validator(mode="after")
    def _metadata_size(self) -> JobCreate:
        if self.metadata is not None and len(self.metadata) > METADATA_KEYS:
            raise ValueError(f"metadata holds at most {METADATA_KEYS} keys")
        return self

    def supervised(self) -> Hyperparameters:
        """The hyperparameters of the supervised run this body asks for; refuses what lorastack does not train."""
        if self.integrations:
            raise InvalidRequest("integrations (Weights & Biases...) are not supported here.",
                                 "Leave integrations out.", "integrations")  # fmt: skip
        method = self.method
        if method is not None and method.type != "supervised":
            known = method.type in ("dpo", "reinforcement")
            raise InvalidRequest(
                f"Fine-tuning method {method.type!r} is {'not supported yet' if known else 'unknown'}: "
                "lorastack trains supervised (SFT) LoRA adapters.",
                "Use method={'type': 'supervised'}.", "method.type",
            )  # fmt: skip
        given = method.supervised.hyperparameters if method and method.supervised else None
        if given is not None and self.hyperparameters is not None and given != self.hyperparameters:
            raise InvalidRequest("hyperparameters and method.supervised.hyperparameters disagree.",
                                 "Give them once, in method.", "hyperparameters")  # fmt: skip
        return given or self.hyperparameters or Hyperparameters()


def page(data: list[dict], has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page: the next page is ``?after=<id of the last item>``."""
    return {
        "object": "list", "data": data, "has_more": has_more,
        "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None,
    }  # fmt: skip


def file_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": row["created_at"], "expires_at": None,
        "filename": row["filename"], "purpose": row["purpose"], "status": row["status"],
        "status_details": row["status_details"], "sha256": row["sha256"],
    }  # fmt: skip


def job_object(row: dict[str, Any]) -> dict[str, Any]:
    hyper = row["hyperparameters"]
    return {
        "id": row["id"], "object": "fine_tuning.job", "created_at": row["created_at"], "model": row["model"],
        "training_file": row["training_file"], "validation_file": row["validation_file"], "status": row["status"],
        "error": row["error"], "fine_tuned_model": row["fine_tuned_model"], "finished_at": row["finished_at"],
        "hyperparameters": hyper, "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
        "organization_id": "lorastack", "result_files": row["result_files"], "seed": row["seed"],
        "trained_tokens": row["trained_tokens"], "metadata": row["metadata"], "user_provided_suffix": row["suffix"],
        "estimated_finish": None, "integrations": [],
    }  # fmt: skip


def event_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "object": "fine_tuning.job.event", "created_at": row["created_at"], "level": row["level"],
        "message": row["message"], "type": row["type"], "data": row["data"] or {},
    }  # fmt: skip


def checkpoint_object(row: dict[str, Any], fine_tuned_model: str) -> dict[str, Any]:
    return {
        "id": row["id"], "object": "fine_tuning.job.checkpoint", "created_at": row["created_at"],
        "fine_tuning_job_id": row["job_id"], "step_number": row["step"], "metrics": row["metrics"],
        "fine_tuned_model_checkpoint": f"{fine_tuned_model}:ckpt-step-{row['step']}",
    }  # fmt: skip


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    """``ft:BASE:SUFFIX:JOB_ID``: the alias the result is served under (OpenAI's shape; an empty suffix stays)."""
    return f"ft:{base}:{suffix or ''}:{job_id}"
