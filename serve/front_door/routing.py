"""Alias routing: which vLLM model name a request goes to, and how many requests each name has in flight."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from lorastack.serve.registry import AdapterVersion


def versioned(adapter: AdapterVersion) -> str:
    """The name an aliased version is served under in vLLM (and shown to clients as the response's model)."""
    return adapter.ref


@dataclass
class Target:
    """Where one request goes: ``upstream`` is the vLLM model name; ``alias``/``version`` label its metrics."""

    upstream: str
    alias: str
    version: str


@dataclass
class Routes:
    """Alias -> versioned upstream name, and how many requests each upstream name has in flight."""

    aliases: dict[str, str] = field(default_factory=dict)
    inflight: Counter = field(default_factory=Counter)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def acquire(self, model: str) -> Target:
        """Resolve ``model`` and count the request in flight, in one step (so a switch cannot slip between)."""
        with self.lock:
            upstream = self.aliases.get(model, model)
            self.inflight[upstream] += 1
        version = upstream.rsplit("@", 1)[1] if "@" in upstream else ""
        return Target(upstream, model, version)

    def release(self, target: Target) -> None:
        with self.lock:
            self.inflight[target.upstream] -= 1
            if self.inflight[target.upstream] <= 0:
                del self.inflight[target.upstream]  # names clients make up must not pile up
            self.lock.notify_all()

    def switch(self, alias: str, upstream: str) -> str | None:
        with self.lock:
            old = self.aliases.get(alias)
            self.aliases[alias] = upstream
            return old

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.aliases)

    def drain(self, upstream: str, timeout: float) -> bool:
        """Wait until no request is in flight on ``upstream`` (and no alias points to it)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.inflight[upstream] > 0 or upstream in self.aliases.values():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
        return True
