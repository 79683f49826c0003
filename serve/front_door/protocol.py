"""What the front door reads of a request: bodies parsed strictly, and pydantic models of the fields it interprets.

vLLM validates the rest of an inference body itself; the front door types only what it acts on (``model``,
``stream``, ``stream_options``) and rejects, never coerces, a wrong type there (``"stream": "false"`` is a 400, not
a stream). Every body is JSON without NaN or Infinity, without lone surrogates, nested at most
:data:`MAX_DEPTH` deep and at most :data:`MAX_BODY_BYTES` long: whatever breaks those rules is a 4xx here instead
of a 500 further on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lorastack.access import DEFAULT_ALIAS
from lorastack.evaluation import EvalRequirement

MAX_BODY_BYTES = 32 * 2**20
"""Largest request body, in bytes (a 413 beyond): room for long prompts and a few images."""
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects in a body: OpenAI requests need a handful of levels."""
NAME_MAX = 256


class BadRequest(Exception):
    """A request the front door refuses before anything else happens: ``status`` 400 or 413."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def parse_body(raw: bytes) -> Any:
    """The JSON value of ``raw``, held to the rules above."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"The request body is larger than {MAX_BODY_BYTES // 2**20} MiB.", 413, "body_too_large")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest(f"The request body is nested deeper than {MAX_DEPTH} levels.") from None
    except UnicodeDecodeError:
        raise BadRequest("The request body is not UTF-8.") from None
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}).") from None
    _check(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check(value: Any) -> None:
    """Depth and text of a parsed body, walked without recursion."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _text(item)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadRequest(f"The request body is nested deeper than {MAX_DEPTH} levels.")
            if isinstance(item, dict):
                for key, child in item.items():
                    _text(key)
                    pending.append((child, depth + 1))
            else:
                pending.extend((child, depth + 1) for child in item)


def _text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("The request body holds a lone surrogate (\\ud800-\\udfff): not valid Unicode text.") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    """The fields the front door acts on, typed strictly; the rest goes to vLLM as it came."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, min_length=1, max_length=NAME_MAX)
    stream: bool = False
    stream_options: dict[str, bool] | None = None


class ChatCompletionRequest(_Open):
    messages: list[dict[str, Any]] = Field(min_length=1)


class CompletionRequest(_Open):
    prompt: str | list[str] | list[int] | list[list[int]]


class EmbeddingRequest(_Open):
    input: str | list[str] | list[int] | list[list[int]]


class TokenizeRequest(_Open):
    """vLLM's /tokenize: a prompt or chat messages."""


class DetokenizeRequest(_Open):
    tokens: list[int]


class EvalBody(_Strict):
    """The promotion's eval, as ``lorastack adapters promote --eval`` sends it (paths on the server's machine):
    ``eval_files`` (one or more, run as one set) or, as earlier clients send it, ``eval_file``."""

    eval_files: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(None, min_length=1,
                                                                                           max_length=64)  # fmt: skip
    eval_file: str | None = Field(None, min_length=1, max_length=4096)
    min_accuracy: float = Field(ge=0, le=1)
    corpus: str | None = Field(None, min_length=1, max_length=4096)
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_way_to_name_the_files(self) -> EvalBody:
        if (self.eval_files is None) == (self.eval_file is None):
            raise ValueError("give the eval set as eval_files (a list of paths) or eval_file, not both or neither")
        return self

    def requirement(self) -> EvalRequirement:
        files = tuple(Path(f) for f in self.eval_files or [self.eval_file])
        return EvalRequirement(files, self.min_accuracy, Path(self.corpus) if self.corpus else None, self.limit)


class PromoteBody(_Strict):
    ref: str = Field(min_length=1, max_length=NAME_MAX)
    alias: str = Field(DEFAULT_ALIAS, min_length=1, max_length=NAME_MAX)
    eval: EvalBody | None = None


class RollbackBody(_Strict):
    alias: str = Field(DEFAULT_ALIAS, min_length=1, max_length=NAME_MAX)


class LoadBody(_Strict):
    ref: str = Field(min_length=1, max_length=NAME_MAX)


class UnloadBody(_Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)


class PinBody(_Strict):
    ref: str = Field(min_length=1, max_length=NAME_MAX)
    pinned: bool = True


INFERENCE: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}
"""The inference routes: relayed to vLLM with the model name resolved (streamed where asked)."""
UTILITY: dict[str, type[BaseModel]] = {"/tokenize": TokenizeRequest, "/detokenize": DetokenizeRequest}
"""vLLM's own routes an inference key may also reach (forwarded whole, not streamed)."""
