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
    """Promote only if the adapter answers the eval set at ``min_accuracy`` or better and beats what the alias
    serves now (the base model when the alias is new)."""

    eval_files: tuple[Path, ...] | Path
    """One JSONL eval set, or several run as one (as ``lorastack eval`` runs several files)."""
    min_accuracy: float = PROMOTION_MIN_ACCURACY
    corpus: Path | None = None
    """Documents for the search tool during the eval (indexed for the run)."""
    limit: int | None = None
    """Only the first N items of each eval file."""

    def __post_init__(self) -> None:
        files = (self.eval_files,) if isinstance(self.eval_files, Path) else tuple(self.eval_files)
        if not files:
            raise ValueError("an eval requirement needs at least one eval file")
        object.__setattr__(self, "eval_files", files)

    @property
    def name(self) -> str:
        """The eval set for messages: ``eval.jsonl``, or ``calculator.jsonl + 4 more``."""
        first, *rest = self.eval_files
        return first.name + (f" + {len(rest)} more" if rest else "")


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint to evaluate a model at."""

    base_url: str
    api_key: str
    tool_calling: bool | None = None


Evaluator = Callable[[EvalRequirement, Endpoint, str], float]
"""``evaluator(requirement, endpoint, model)`` -> the model's accuracy on the requirement's eval set (0..1).
Raises :class:`~lorastack.errors.LorastackError` for an eval set it cannot run."""
