"""Clients of the running server: ``ServerClient`` for lorastack's commands (the front door's admin API), and
``VLLMClient`` for the front door itself (vLLM's own routes, behind vLLM's private key).

Adapters reach vLLM only through the front door's admin routes, which check them against the registry first;
vLLM's raw LoRA routes are not forwarded. The front door's errors come back as the same typed errors (their
``code``, see :mod:`lorastack.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from lorastack.access import Role, env_key
from lorastack.errors import NotFound, ServerError, Unauthorized, error_classes, error_for
from lorastack.evaluation import EvalRequirement

_DEFAULT = object()
_KEY_HINT = (
    "Set LORASTACK_ADMIN_KEY (admin commands: load, promote, stats...) or LORASTACK_API_KEY (ask, chat) to a key "
    "from `lorastack keys create --role admin|inference`."
)


@dataclass
class _Client:
    url: str
    timeout: float = 120

    def _headers(self) -> dict[str, str]:
        return {}

    def _request(self, method: str, path: str, timeout: float | None | object = _DEFAULT, **kwargs) -> httpx.Response:
        try:
            timeout = self.timeout if timeout is _DEFAULT else timeout
            return httpx.request(method, f"{self.url}{path}", timeout=timeout, headers=self._headers(), **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(
                f"The server at {self.url} did not answer ({exc.__class__.__name__}).",
                "Start it with: lorastack serve",
            ) from None

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def models(self) -> list[dict]:
        response = self._request("GET", "/v1/models")
        _raise_for(response, "list models")
        return response.json()["data"]


@dataclass
class ServerClient(_Client):
    """The front door, as lorastack's own commands call it (with the key from the environment, once keys exist)."""

    def _headers(self) -> dict[str, str]:
        key = env_key(Role.admin) or env_key(Role.inference)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _admin(self, path: str, body: dict, action: str, timeout: float | None | object = _DEFAULT) -> dict:
        response = self._request("POST", path, json=body, timeout=timeout)
        _raise_for(response, action)
        return response.json()

    def load(self, ref: str) -> dict:
        """Load registered ``ref`` (NAME or NAME@vN) under its name: checked, its sha256 verified, then loaded."""
        return self._admin("/admin/adapters/load", {"ref": ref}, f"load {ref}")

    def unload(self, name: str) -> dict:
        return self._admin("/admin/adapters/unload", {"name": name}, f"unload {name}")

    def pin(self, ref: str, pinned: bool) -> dict:
        """Keep what ``ref`` serves (alias, NAME or NAME@vN) from eviction, or let it go (``pinned`` False)."""
        action = f"{'pin' if pinned else 'unpin'} {ref}"
        return self._admin("/admin/adapters/pin", {"ref": ref, "pinned": pinned}, action)

    def promote(self, ref: str, alias: str, requirement: EvalRequirement | None = None) -> dict:
        """Ask the front door to switch ``alias`` to ``ref`` (loaded, evaluated if ``requirement`` says so, and
        checked first; the old one drains). An eval runs in the server and takes as long as it takes."""
        body: dict = {"ref": ref, "alias": alias}
        if requirement is not None:
            body["eval"] = {
                "eval_files": [str(path.resolve()) for path in requirement.eval_files],
                "min_accuracy": requirement.min_accuracy,
                "corpus": str(requirement.corpus.resolve()) if requirement.corpus else None, "limit": requirement.limit,
            }  # fmt: skip
        timeout = None if requirement is not None else self.timeout
        return self._admin("/admin/promote", body, f"promote {ref}", timeout)

    def rollback(self, alias: str) -> dict:
        return self._admin("/admin/rollback", {"alias": alias}, f"roll back {alias}")

    def metrics(self) -> str:
        response = self._request("GET", "/metrics")
        _raise_for(response, "read metrics")
        return response.text


@dataclass
class VLLMClient(_Client):
    """vLLM itself, on its private port: what only the front door (and the server that starts it) calls."""

    api_key: str | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def served_adapters(self) -> dict[str, str]:
        """Served adapter name -> the path it was loaded from."""
        return {m["id"]: m.get("root", "") for m in self.models() if m.get("parent")}

    def load_adapter(self, name: str, path: str, replace: bool = False) -> None:
        body = {"lora_name": name, "lora_path": path, "load_inplace": replace}
        _raise_for(self._request("POST", "/v1/load_lora_adapter", json=body), f"load {name}")

    def unload_adapter(self, name: str) -> None:
        _raise_for(self._request("POST", "/v1/unload_lora_adapter", json={"lora_name": name}), f"unload {name}")


def _raise_for(response: httpx.Response, action: str) -> None:
    """The front door's typed error as the same class here (its ``code``); vLLM's own errors by HTTP status."""
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = response.text.strip() or response.reason_phrase, None
    if isinstance(code, str) and code in error_classes():
        hint = _KEY_HINT if code == Unauthorized.code else None
        raise error_for(code, message, hint)
    if response.status_code == 404:
        raise NotFound(f"The server could not {action}: {message}")
    raise ServerError(f"The server could not {action} (HTTP {response.status_code}): {message}")
