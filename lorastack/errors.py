"""Errors a user can act on.

Library code raises these; the CLI prints ``message`` and ``hint`` as one line and exits non-zero,
never a traceback (see ``lorastack.cli.main``).
"""

from __future__ import annotations


class LorastackError(Exception):
    """A problem the user can fix. ``hint`` says what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class NotFound(LorastackError):
    """A named thing (adapter, model, file) does not exist."""


class AlreadyExists(LorastackError):
    """A name is taken."""


class AdapterRejected(LorastackError):
    """The compatibility gate refused an adapter."""


class ServerError(LorastackError):
    """The serving engine could not be started or reached, or refused a request."""
