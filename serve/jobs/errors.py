"""The refusals of the files and fine-tuning jobs API, typed: each keeps its HTTP status and stable ``code`` (and the
request field it is about, OpenAI's ``param``) from where it is raised to the client."""

from __future__ import annotations

from lorastack.errors import LorastackError


class InvalidRequest(LorastackError):
    """A body, a field or a query the API refuses (``param`` names the field)."""

    code = "invalid_request"
    status = 400

    def __init__(self, message: str, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message, hint)
        self.param = param


class Conflict(LorastackError):
    """The request does not fit the state of what it names (cancel a finished job, delete a file in use)."""

    code = "conflict"
    status = 409


class TooLarge(LorastackError):
    """An upload over the server's size limit."""

    code = "file_too_large"
    status = 413
