"""The contract between promotion (``lorastack.serve``) and the agent's evaluation (``lorastack.agent``).

The front door owns a promotion from load to unload; when the promotion asks for an eval, it calls an
:data:`Evaluator` it was given at start (the composition root, ``lorastack.cli``, passes the agent's), so the
serving room never imports the agent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROMOTION_MIN_ACCURACY = 0.8
"""The accuracy an adapter needs on the eval set before a gated promotion gives it the alias."""


@dataclass(frozen=True)
class EvalRequirement:
    """Promote only if the adapter answers ``eval_file`` at ``min_accuracy`` or better and beats what the alias
    serves now (the base model when the alias is new)."""

    eval_file: Path
    min_accuracy: float = PROMOTION_MIN_ACCURACY
    corpus: Path | None = None
    """Documents for the search tool during the eval (indexed for the run)."""
    limit: int | None = None
    """Only the first N items of ``eval_file``."""


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint to evaluate a model at."""

    base_url: str
    api_key: str
    tool_calling: bool | None = None


Evaluator = Callable[[EvalRequirement, Endpoint, str], float]
"""``evaluator(requirement, endpoint, model)`` -> the model's accuracy on the requirement's eval set (0..1).
Raises :class:`~lorastack.errors.LorastackError` for an eval set it cannot run."""
