"""The front door's answers when something is wrong: OpenAI's error body, with a stable ``code``."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from lorastack.errors import LorastackError

RETRY_AFTER_S = 10
"""What a 503 tells clients to wait while vLLM restarts."""


def error_response(status: int, message: str, kind: str, code: str, headers: dict | None = None) -> JSONResponse:
    """OpenAI's error body; ``code`` is stable (lorastack's errors carry theirs, see lorastack.errors)."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def typed(exc: LorastackError) -> JSONResponse:
    """A typed error as the client maps it back: its own status and code."""
    return error_response(exc.status, str(exc), "invalid_request_error", exc.code)


def invalid(message: str, status: int = 400, code: str = "invalid_request") -> JSONResponse:
    return error_response(status, message, "invalid_request_error", code)


def down() -> JSONResponse:
    return error_response(
        503, "The model server is restarting; retry shortly.", "service_unavailable", "service_unavailable",
        {"Retry-After": str(RETRY_AFTER_S)},
    )  # fmt: skip


def not_found(path: str) -> JSONResponse:
    return error_response(404, f"No route {path[:200]!r} here.", "invalid_request_error", "route_not_found")
