"""Errors a user can act on.

Library code raises these; the CLI prints ``message`` and ``hint`` as one line and exits non-zero,
never a traceback (see ``lorastack.cli.main``).

Each class has a stable ``code`` and an HTTP ``status``: the front door puts the code in its OpenAI-style error
body (``{"error": {"message", "type", "param", "code"}}``) and the client maps it back with :func:`error_for`, so
an ``AdapterRejected`` raised in the server is an ``AdapterRejected`` in the CLI. Nothing decides by message text.
"""

from __future__ import annotations

from typing import ClassVar


class LorastackError(Exception):
    """A problem the user can fix. ``hint`` says what to do next."""

    exit_code = 1
    code: ClassVar[str] = "lorastack_error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class NotFound(LorastackError):
    """A named thing (adapter, model, file) does not exist."""

    code = "not_found"
    status = 404


class AlreadyExists(LorastackError):
    """A name is taken."""

    code = "already_exists"
    status = 409


class AdapterRejected(LorastackError):
    """The compatibility check or the promotion's eval refused an adapter."""

    code = "adapter_rejected"
    status = 409


class ServerError(LorastackError):
    """The serving engine could not be started or reached, or refused a request."""

    code = "server_error"
    status = 502


class SlotsFull(ServerError):
    """Every adapter slot is taken by a pinned adapter or one with requests in flight."""

    code = "adapter_slots_full"
    status = 503


class Unauthorized(LorastackError):
    """The front door wants a key (or a key with another role) for this route."""

    code = "invalid_api_key"
    status = 401


def error_classes() -> dict[str, type[LorastackError]]:
    """Every error class by its code (subclasses in other modules included, once imported)."""
    found: dict[str, type[LorastackError]] = {}
    pending: list[type[LorastackError]] = [LorastackError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending += cls.__subclasses__()
    return found


def error_for(code: object, message: str, hint: str | None = None) -> LorastackError:
    """The typed error a server sent as ``code`` (a plain :class:`ServerError` for a code lorastack does not own)."""
    cls = error_classes().get(code) if isinstance(code, str) else None
    return (cls or ServerError)(message, hint)


def validation_message(error: dict) -> str:
    """One pydantic error's message as the user should read it: a validator's own words, without "Value error, "."""
    return str(error["msg"]).removeprefix("Value error, ")
