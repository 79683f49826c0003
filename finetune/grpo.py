"""``method: grpo``: reinforcement learning on the data's tool decisions, with TRL's GRPOTrainer.

Each conversation gives one prompt: its turns before the first assistant reply that follows the last user turn,
rendered with the run's chat template and tools as the model sees them when served. That reply is the reference:
sampled replies are rewarded by :func:`decision_reward` — 1 when they do what it does, else 0. No tool runs during
sampling: the reward is on the decision (which tool, which arguments), the part a small model gets wrong; the
answer after the tool's result is left to supervised training.

The reward compares what a call does, not its text: the calculator by the value of its expression (``19 * 19 *
24.5`` and ``24.5 * 19 * 19`` are both right), search by the tool alone (a query's wording varies), any other
function by its name and arguments.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

from lorastack.errors import LorastackError
from lorastack.finetune.config import TrainConfig
from lorastack.finetune.data.errors import DataError
from lorastack.finetune.data.formats import Conversation
from lorastack.finetune.data.sources import conversations

logger = logging.getLogger(__name__)

_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_RELATIVE = 1e-6


@dataclass(frozen=True)
class Decision:
    """What a reply does: the tool calls it makes (name, arguments), none for a plain answer; None if a call in it
    does not parse."""

    calls: tuple[tuple[str, dict[str, Any]], ...] | None


def parse_decision(text: str) -> Decision:
    """The calls in a reply written in the Hermes format of lorastack's template (``<tool_call>{json}</tool_call>``),
    read as the server's parser (vLLM's hermes) reads them: a call opened and never closed, a call without its
    ``arguments`` object, or arguments that are not an object make the whole reply no call (None)."""
    bodies = _CALL.findall(text)
    if text.count("<tool_call>") != len(bodies):  # a call opened and never closed (cut off at the token limit)
        return Decision(None)
    calls = []
    for body in bodies:
        try:
            call = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, nested too deep, or a number too long for int()
            return Decision(None)
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return Decision(None)
        if not isinstance(call.get("arguments"), dict):  # missing, or a string the server would pass on as text
            return Decision(None)
        calls.append((call["name"], call["arguments"]))
    return Decision(tuple(calls))


def _reference(message: dict[str, Any]) -> list[list[Any]]:
    """The data's reply as [name, arguments] pairs (JSON-friendly, for a dataset column)."""
    out = []
    for call in message.get("tool_calls") or ():
        function = call["function"]
        arguments = function.get("arguments", {})
        out.append([function["name"], json.loads(arguments) if isinstance(arguments, str) else arguments])
    return out


def _value(expression: Any) -> Any:
    from lorastack.tools.calculator import CalculatorError, evaluate  # the served calculator, exactly

    if not isinstance(expression, str):
        return None
    try:
        return evaluate(expression)
    except (CalculatorError, ArithmeticError, ValueError, TypeError, OverflowError, RecursionError):
        return None


def _same_number(mine: Any, theirs: Any) -> bool:
    """Two calculator results alike: exactly, or within a relative 1e-6 (floats, and values too big for one)."""
    if mine is None or theirs is None:
        return False
    try:
        if mine == theirs:
            return True
        return math.isclose(float(mine), float(theirs), rel_tol=_RELATIVE, abs_tol=1e-9)
    except (OverflowError, TypeError, ValueError):
        return False


def _same_json(mine: Any, theirs: Any) -> bool:
    """JSON values alike as a client would read them: true is not 1, 1 is 1.0."""
    if isinstance(mine, bool) or isinstance(theirs, bool):
        return type(mine) is type(theirs) and mine == theirs
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return mine.keys() == theirs.keys() and all(_same_json(mine[k], theirs[k]) for k in mine)
    if isinstance(mine, list) and isinstance(theirs, list):
        return len(mine) == len(theirs) and all(map(_same_json, mine, theirs))
    if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)):
        return mine == theirs
    return type(mine) is type(theirs) and mine == theirs


def _same_call(got: tuple[str, dict[str, Any]], want: list[Any]) -> bool:
    name, arguments = got
    if name != want[0]:
        return False
    if name == "calculator":
        return _same_number(_value(arguments.get("expression")), _value(want[1].get("expression")))
    if name == "search":
        return isinstance(arguments.get("query"), str) and bool(arguments["query"].strip())
    return _same_json(arguments, want[1])


def decision_reward(completions: list[Any], reference: list[list[list[Any]]]) -> list[float]:
    """TRL reward function: 1.0 for each completion that does what its reference reply does, else 0.0."""
    rewards = []
    for completion, want in zip(completions, reference, strict=True):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        got = parse_decision(text).calls
        right = got is not None and len(got) == len(want) and all(map(_same_call, got, want))
        rewards.append(1.0 if right else 0.0)
    return rewards


def _decision_turn(conversation: Conversation) -> int | None:
    """Index of the assistant reply that follows the last user turn (None if the conversation ends without one)."""
    messages = conversation.messages
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        return None
    return next((i for i in range(last_user + 1, len(messages)) if messages[i]["role"] == "assistant"), None)


def grpo_dataset(config: TrainConfig, tokenizer: Any, template: str | None) -> tuple[Any, str]:
    """Prompts (rendered text), reference replies and the rows they come from, and a one-line report."""
    from datasets import Dataset

    prompts, references, indices, skipped = [], [], [], 0
    for index, conversation in enumerate(conversations(config.data)):
        conversation = conversation.with_system(config.data.system_prompt)
        turn = _decision_turn(conversation)
        if turn is None:
            skipped += 1
            continue
        prompt = tokenizer.apply_chat_template(
            conversation.messages[:turn], tools=conversation.tools, chat_template=template,
            add_generation_prompt=True, tokenize=False,
        )  # fmt: skip
        prompts.append(prompt)
        references.append(_reference(conversation.messages[turn]))
        indices.append(index)
    if not prompts:
        raise DataError(
            f"{config.data.source_name}: no conversation has an assistant reply after its last user turn.",
            "method grpo learns from the data's replies: give it conversations in the training format.",
        )
    calls = sum(bool(r) for r in references)
    report = f"{len(prompts)} prompts ({calls} with a tool call, {len(prompts) - calls} without)"
    if skipped:
        report += f"; {skipped} conversations without a reply after the last user turn left out"
    # "row": the conversation's place in the data (benchmarks/decision_rate.py keeps the rows worth a GRPO run)
    columns = {"prompt": prompts, "reference": [json.dumps(r) for r in references], "row": indices}
    return Dataset.from_dict(columns), report


def tool_decision(completions: list[Any], reference: list[str], **_: Any) -> list[float]:
    """:func:`decision_reward` on the dataset's JSON column (TRL passes the dataset's columns by name and logs the
    mean as rewards/tool_decision/mean)."""
    return decision_reward(completions, [json.loads(r) for r in reference])


def import_trl() -> Any:
    """TRL, imported without its notes about the vLLM it finds installed (it does not sample with vLLM here)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # this process never serves: vLLM's import notes only
    logging.getLogger("vllm").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
        try:
            import trl
            import trl.trainer.grpo_trainer  # noqa: F401 (where the notes are given)
        except ImportError as exc:
            raise LorastackError(f"method grpo needs TRL ({exc}).", "pip install 'lorastack[train]'.") from None
    return trl


def grpo_arguments(config: TrainConfig, base: dict[str, Any]) -> Any:
    """GRPOConfig: the run's Trainer arguments (``base``) plus the grpo.* settings."""
    GRPOConfig = import_trl().GRPOConfig

    g = config.grpo
    arguments = {key: value for key, value in base.items() if key not in ("eval_strategy", "eval_steps")}
    return GRPOConfig(
        **arguments,
        eval_strategy="no",
        num_generations=g.generations,
        max_completion_length=g.max_completion_tokens,
        temperature=g.temperature,
        beta=g.beta,
        log_completions=False,
    )


class TorchLogProbs:
    """TRL's chunked log-probability function (``trl.kernels.ChunkedLogProbFunction``: a Triton kernel, CUDA only)
    in plain torch, for GRPO on the CPU: the same outputs, computed from the logits of the labelled tokens."""

    @staticmethod
    def apply(
        hidden: Any,
        weight: Any,
        bias: Any,
        targets: Any,
        temperature: float,
        chunk_size: int,
        softcap: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = (),
    ) -> tuple:
        import torch

        z = hidden.float() @ weight.float().t()
        if bias is not None:
            z = z + bias.float()
        z = z * logit_scale
        if softcap is not None:
            z = softcap * torch.tanh(z / softcap)
        z = z / temperature
        log_z = torch.logsumexp(z, dim=-1)
        log_probs = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
        probs = torch.softmax(z, dim=-1)
        entropy = log_z - (probs * z).sum(-1) if "entropy" in outputs else None
        with torch.no_grad():
            sq = torch.logsumexp(2 * z, dim=-1) - 2 * log_z if "log_sum_sq_probs" in outputs else None
            mean = z.mean(-1) if "mean_logits" in outputs else None
            top1 = z.argmax(-1) == targets if "is_top1" in outputs else None
        return log_probs, entropy, sq, mean, top1


def use_torch_log_probs() -> None:
    """Without CUDA, TRL's GRPO computes log-probabilities with :class:`TorchLogProbs` (its Triton kernel needs a
    GPU driver and fails on the CPU)."""
    from trl.trainer import utils

    utils._ChunkedLogProbFunction = TorchLogProbs
