"""Who may call which route: the access rule of lorastack.access, applied to a request."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from lorastack.access import Role, allows
from lorastack.errors import Unauthorized
from lorastack.serve.front_door.errors import error_response
from lorastack.serve.keys import KeyStore

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def denied(keys: KeyStore, request: Request, needed: Role) -> JSONResponse | None:
    """None if the request may go on, else the 401 to send. One look at the key store on the usual paths (a valid
    key, or no key at all on a server without keys): it runs on every request."""
    key = presented_key(request)
    role = keys.role_of(key) if key else None
    if role is not None:  # a valid key: keys exist
        return None if allows(role, needed) else _unauthorized("This route needs an admin key.")
    if not keys.enabled():
        # No key yet: inference is open (as vLLM is), admin only from this machine.
        host = request.client.host if request.client else ""
        if needed is Role.admin and host not in _LOOPBACK:
            return _unauthorized(
                "Admin routes need an admin key when called from another machine: create one with "
                "`lorastack keys create --role admin`."
            )
        return None
    return _unauthorized("Missing or invalid API key (Authorization: Bearer KEY).")


def _unauthorized(message: str) -> JSONResponse:
    return error_response(401, message, "authentication_error", Unauthorized.code)
