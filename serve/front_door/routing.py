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
    direct: frozenset[str] | None = None
    """In a front-door worker: the names it may send straight to vLLM (the base model, adapters vLLM serves);
    any other name goes to the control process. None (the control process): every name is relayed here."""

    def routable(self, model: str) -> bool:
        """Whether a request for ``model`` (an alias: its version) can be relayed from here, to a name vLLM holds
        now (plain reads: the hot path takes no lock)."""
        direct = self.direct
        return direct is None or self.aliases.get(model, model) in direct

    def replace(self, aliases: dict[str, str], direct: set[str]) -> None:
        """A worker's replica takes the control's routes (requests in flight stay counted)."""
        with self.lock:
            self.aliases = dict(aliases)
            self.direct = frozenset(direct)
            self.lock.notify_all()

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
