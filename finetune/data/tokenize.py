"""Render a conversation with a chat template and mark the tokens the loss is computed on.

Only the assistant's tokens are learned: its content, its tool calls and its end-of-turn token; every other
label is -100. Two ways to find them, chosen by the template:

- generation markers: a template that wraps assistant turns in ``{% generation %}...{% endgeneration %}``
  (lorastack's ChatML tools template does) is rendered with ``return_assistant_tokens_mask=True``.
- prefix rendering, for templates without markers (most hub templates): for each assistant message i,
  ``render(messages[:i], add_generation_prompt=True)`` must be a prefix of ``render(messages[:i+1])``, which
  must be a prefix of the whole rendering; the difference is the assistant's text, cut after the template's
  end-of-turn token (the tokenizer's eos, e.g. ``<|im_end|>``; what follows it is the next turn's layout).
  The prefixes are compared as text and the whole conversation is tokenized once, so a token that merges
  across a boundary does not break the comparison. A template that rewrites earlier turns (e.g. drops past
  reasoning) fails the check and is refused with the advice to use one with markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lorastack.finetune.data.errors import DataError
from lorastack.finetune.data.formats import Conversation

IGNORE = -100
"""Label of a token the loss skips (transformers' and PyTorch's ignore_index)."""

GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")

_TOOLS_HINT = (
    "Set data.chat_template to a tool-aware template (lorastack/templates/chatml_tools.jinja for ChatML models)."
)
_TEMPLATE_HINT = (
    "Set data.chat_template to a template with {% generation %} markers (lorastack/templates/chatml_tools.jinja)."
)

# A tiny conversation that tells whether a template renders tool calls and the tools list at all.
_PROBE_MESSAGES = [
    {"role": "user", "content": "probe"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "lorastack_probe_call", "arguments": {"q": 1}}}]},
    {"role": "tool", "content": "probe result"},
    {"role": "assistant", "content": "done"},
]  # fmt: skip
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": "lorastack_probe_tool", "description": "probe", "parameters": {"type": "object"}}}]  # fmt: skip


@dataclass(frozen=True)
class Encoded:
    """One tokenized example, already cut to ``max_length``."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def label_tokens(self) -> int:
        """Tokens the loss is computed on (the first label never is: nothing precedes it)."""
        return sum(label != IGNORE for label in self.labels[1:])


class ChatEncoder:
    """Tokenizes conversations with one chat template, labels on assistant tokens only."""

    def __init__(self, tokenizer: Any, chat_template: str, max_length: int) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(
                f"The tokenizer ({type(tokenizer).__name__}) is not a fast tokenizer; the loss mask needs offsets.",
                "Load the model's fast tokenizer (tokenizers backend).",
            )
        self.tokenizer = tokenizer
        self.template = chat_template
        self.max_length = max_length
        self.uses_markers = bool(GENERATION_MARKER.search(chat_template))
        self.method = "{% generation %} markers" if self.uses_markers else "prefix rendering"
        self.renders_tool_calls, self.renders_tools = self._probe()

    def check(self, conversation: Conversation) -> None:
        """Refuse a conversation whose tool calls or tools the template would silently drop."""
        if conversation.tool_calls and not self.renders_tool_calls:
            raise DataError(
                f"{conversation.where}: the row has tool calls, but the chat template does not render them, so the "
                "model would learn empty answers.",
                _TOOLS_HINT,
            )
        if conversation.tools and not self.renders_tools:
            raise DataError(
                f"{conversation.where}: the row lists tools, but the chat template does not show them to the model.",
                _TOOLS_HINT,
            )

    def encode(self, conversation: Conversation) -> Encoded:
        """Token ids and labels of one conversation, cut on the right to ``max_length``."""
        self.check(conversation)
        ids, mask = self._with_markers(conversation) if self.uses_markers else self._by_prefixes(conversation)
        if not any(mask):
            raise DataError(
                f"{conversation.where}: the chat template marked no assistant token.",
                "Its {% generation %} markers must enclose the assistant turns. " + _TEMPLATE_HINT,
            )
        labels = [token if keep else IGNORE for token, keep in zip(ids, mask)]
        cut = len(ids) > self.max_length
        return Encoded(ids[: self.max_length], labels[: self.max_length], cut)

    # --- the two ways -----------------------------------------------------------------------------------------

    def _with_markers(self, conversation: Conversation) -> tuple[list[int], list[int]]:
        out = self._apply(conversation, conversation.messages, tokenize=True, return_dict=True,
                          return_assistant_tokens_mask=True)  # fmt: skip
        return list(out["input_ids"]), list(out["assistant_masks"])

    def _by_prefixes(self, conversation: Conversation) -> tuple[list[int], list[int]]:
        messages = conversation.messages
        full = self._apply(conversation, messages, tokenize=False)
        eos = self.tokenizer.eos_token
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self._apply(conversation, messages[:i], tokenize=False, add_generation_prompt=True)
            turn = self._apply(conversation, messages[: i + 1], tokenize=False)
            if not (turn.startswith(prompt) and full.startswith(turn)):
                raise DataError(
                    f"{conversation.where}: the chat template renders earlier turns differently once later ones "
                    f"follow (assistant message {i + 1}), so the assistant's tokens cannot be found by prefixes.",
                    _TEMPLATE_HINT,
                )
            start, end = len(prompt), len(turn)
            if eos and (at := turn.rfind(eos, start, end)) >= 0:
                end = at + len(eos)
            spans.append((start, end))
        encoding = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        mask = [
            int(any(tok_start < end and tok_end > start for start, end in spans))
            for tok_start, tok_end in encoding["offset_mapping"]
        ]
        return list(encoding["input_ids"]), mask

    def _apply(self, conversation: Conversation, messages: list[dict], **kwargs: Any) -> Any:
        try:
            return self.tokenizer.apply_chat_template(
                messages, tools=conversation.tools, chat_template=self.template, **kwargs
            )
        except Exception as exc:  # jinja raises its own errors (raise_exception in templates, undefined keys)
            raise DataError(
                f"{conversation.where}: the chat template failed on this row: {type(exc).__name__}: {exc}",
                "Fix the row or use another data.chat_template.",
            ) from exc

    def _probe(self) -> tuple[bool, bool]:
        def render(tools: list | None) -> str:
            return self.tokenizer.apply_chat_template(_PROBE_MESSAGES, tools=tools, chat_template=self.template,
                                                      tokenize=False)  # fmt: skip

        try:
            text = render(_PROBE_TOOLS)
        except Exception:  # the template refuses tools or tool roles: then it cannot train them
            try:
                text = render(None)
            except Exception:
                return False, False
        return "lorastack_probe_call" in text, "lorastack_probe_tool" in text


def template_text(tokenizer: Any, chat_template: str | None) -> str:
    """The template to render with: ``chat_template`` if given, else the tokenizer's own."""
    if chat_template is not None:
        return chat_template
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one
        own = own.get("default")
    if not own:
        raise DataError(
            "The tokenizer has no chat template, so conversations cannot be rendered.",
            "Set data.chat_template to a Jinja template file (e.g. lorastack/templates/chatml_tools.jinja).",
        )
    return own
