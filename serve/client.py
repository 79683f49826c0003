"""A small client for the running server's admin endpoints (health, models, LoRA load/unload)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from lorastack.access import Role, env_key
from lorastack.errors import NotFound, ServerError


@dataclass
class ServerClient:
    url: str
    timeout: float = 120

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        # The front door asks for a key once keys exist; local commands pass the one in the environment.
        key = env_key(Role.admin) or env_key(Role.inference)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            return httpx.request(method, f"{self.url}{path}", timeout=self.timeout, headers=headers, **kwargs)
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

    def served_adapters(self) -> dict[str, str]:
        """Served adapter name -> the path it was loaded from."""
        return {m["id"]: m.get("root", "") for m in self.models() if m.get("parent")}

    def load_adapter(self, name: str, path: str, replace: bool = False) -> None:
        body = {"lora_name": name, "lora_path": path, "load_inplace": replace}
        _raise_for(self._request("POST", "/v1/load_lora_adapter", json=body), f"load {name}")

    def unload_adapter(self, name: str) -> None:
        _raise_for(self._request("POST", "/v1/unload_lora_adapter", json={"lora_name": name}), f"unload {name}")


    def promote(self, ref: str, alias: str) -> dict:
        """Ask the front door to switch ``alias`` to ``ref`` (loaded and checked first; the old one drains)."""
        response = self._request("POST", "/admin/promote", json={"ref": ref, "alias": alias})
        _raise_for(response, f"promote {ref}")
        return response.json()

    def metrics(self) -> str:
        response = self._request("GET", "/metrics")
        _raise_for(response, "read metrics")
        return response.text

    def rollback(self, alias: str) -> dict:
        response = self._request("POST", "/admin/rollback", json={"alias": alias})
        _raise_for(response, f"roll back {alias}")
        return response.json()


def _raise_for(response: httpx.Response, action: str) -> None:
    if response.is_success:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip() or response.reason_phrase
    if response.status_code == 404:
        raise NotFound(f"The server could not {action}: {message}")
    raise ServerError(f"The server could not {action} (HTTP {response.status_code}): {message}")
