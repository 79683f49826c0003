"""Which adapters vLLM holds: registered adapters are loaded on their first request, at most ``capacity`` of them
(``--max-loaded``), and the least recently used one that is not pinned makes room.

Pinned: the versions behind aliases (unless ``adapters unpin``), anything ``adapters pin`` names, and a promotion's
candidate while it is evaluated. An adapter with requests in flight is never evicted. The hot path (a request for
a loaded adapter) is one set lookup and one dict store, no lock and no database read; only a request for an
adapter that is not loaded takes the lock and reads the registry, and concurrent first requests load it once.

Every load and unload of the front door goes through :class:`Residency` (it has the interface of
:class:`~lorastack.serve.client.VLLMClient` that the loading functions use), so it always knows what vLLM holds.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import Counter, Gauge, Histogram

from lorastack.errors import LorastackError, NotFound, SlotsFull
from lorastack.serve.client import VLLMClient
from lorastack.serve.front_door import errors
from lorastack.serve.front_door.metrics import Metrics
from lorastack.serve.front_door.routing import Routes
from lorastack.serve.loading import checked
from lorastack.serve.registry import AdapterVersion, Registry, parse_ref
from lorastack.serve.state import ServerState

logger = logging.getLogger(__name__)

_LOAD_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30)


class Residency:
    """The adapters vLLM holds, their recency, and the loads and evictions that keep them within ``capacity``."""

    def __init__(self, vllm: VLLMClient, registry: Registry, state: ServerState, routes: Routes, metrics: Metrics,
                 capacity: int | None = None, on_demand: bool = True, busy_wait_s: float = 30) -> None:  # fmt: skip
        """``capacity``: most adapters loaded at once (None: no limit). ``on_demand``: load a registered adapter on
        its first request. ``busy_wait_s``: how long a load waits for an adapter to finish its requests when every
        unpinned one is busy."""
        self.vllm = vllm
        self.registry = registry
        self.state = state
        self.routes = routes
        self.capacity = capacity
        self.on_demand = on_demand
        self.busy_wait_s = busy_wait_s
        self.resident: set[str] = set()
        self.last_used: dict[str, int] = {}
        self.pins: dict[str, bool] = registry.pins()
        self.holding: set[str] = set()
        self.changed: Callable[[], None] | None = None
        """Called after a request loaded an adapter (and maybe evicted others): the front door tells its workers."""
        self.retiring: Callable[[str], None] | None = None
        """Called with an adapter about to be evicted, no longer resident: with front-door workers, returns once
        none of them routes it or has it in flight."""
        self._clock = itertools.count()
        self._lock = threading.RLock()
        registry_ = metrics.registry
        self.loads = Counter(
            "lorastack_adapter_loads", "Adapters loaded into vLLM, by what asked (request, admin, restore)",
            ("adapter", "trigger"), registry=registry_,
        )  # fmt: skip
        self.evictions = Counter(
            "lorastack_adapter_evictions", "Adapters unloaded to make room (least recently used, unpinned)",
            ("adapter",), registry=registry_,
        )  # fmt: skip
        self.first_load = Histogram(
            "lorastack_adapter_first_request_load_seconds",
            "Time a request waited for its adapter to load (check, sha256, evictions, vLLM's load)",
            ("adapter",), buckets=_LOAD_BUCKETS, registry=registry_,
        )  # fmt: skip
        Gauge("lorastack_adapters_loaded", "Adapters vLLM holds now", registry=registry_).set_function(
            lambda: len(self.resident)
        )

    # -- the request path ----------------------------------------------------------------------------------------

    def touch(self, upstream: str) -> bool:
        """Note a request for ``upstream``; False if it is not loaded (then :meth:`admit` it). No lock: a set lookup
        and a dict store, each atomic."""
        if upstream in self.resident:
            self.last_used[upstream] = next(self._clock)
            return True
        return False

    async def admit(self, upstream: str) -> Response | None:
        """Load ``upstream`` for a request if it is a registered adapter that is not loaded; the error response if
        that fails. Names the registry does not know go on to vLLM as they are (it answers them, or 404s)."""
        if not self.on_demand or upstream == self.state.base_name:
            return None
        try:
            await run_in_threadpool(self.ensure, upstream)
        except NotFound:
            return None
        except LorastackError as exc:
            return errors.typed(exc)
        return None

    def ensure(self, upstream: str) -> None:
        """Load ``upstream`` unless it is loaded: checked and verified as any load, under its served name."""
        with self._lock:  # concurrent first requests: one loads, the others find it loaded
            if upstream in self.resident:
                return
            started = time.perf_counter()
            adapter = self.resolve(upstream)
            checked(self.registry, adapter.ref, self.state)
            self.load_adapter(upstream, str(adapter.path), trigger="request")
            elapsed = time.perf_counter() - started
        self.first_load.labels(upstream).observe(elapsed)
        logger.info("Loaded %s on its first request in %.0f ms", adapter.ref, elapsed * 1000)
        if self.changed is not None:
            self.changed()

    def resolve(self, upstream: str) -> AdapterVersion:
        """The registered version a served name stands for: ``name@vN`` that version; ``name`` the version marked
        loaded under it, else the latest. NotFound for names the registry does not have."""
        name, version = parse_ref(upstream)
        if version is None and (marked := self.registry.loaded_version(name)) is not None:
            version = marked
        return self.registry.get(f"{name}@v{version}" if version is not None else name)

    def available(self) -> list[tuple[str, str]]:
        """(name, version ref) of every registered adapter a request may name (the version a name loads), for
        ``/v1/models``; empty when requests do not load adapters."""
        if not self.on_demand:
            return []
        latest = {a.name: a for a in self.registry.list()}  # listed by name, version: the last one wins
        marked = {a.name: a for a in self.registry.loaded()}
        return [(name, (marked.get(name) or adapter).ref) for name, adapter in sorted(latest.items())]

    # -- VLLMClient's interface, for loading.py and the front door ------------------------------------------------

    def served_adapters(self) -> dict[str, str]:
        return self.vllm.served_adapters()

    def load_adapter(self, name: str, path: str, replace: bool = False, trigger: str = "admin") -> None:
        with self._lock:
            if name not in self.resident:
                self._make_room()
            self.vllm.load_adapter(name, path, replace=replace)
            self.resident.add(name)
            self.touch(name)
        self.loads.labels(name, trigger).inc()

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            try:
                self.vllm.unload_adapter(name)
            finally:
                self.resident.discard(name)
                self.last_used.pop(name, None)

    def sync(self) -> None:
        """Take what vLLM serves as the resident set (at every start of vLLM, before the restore)."""
        served = self.vllm.served_adapters()
        with self._lock:
            self.resident = set(served)
            for name in served:
                self.touch(name)

    # -- pinning -------------------------------------------------------------------------------------------------

    def pin(self, upstream: str, pinned: bool) -> None:
        self.registry.set_pin(upstream, pinned)
        self.pins[upstream] = pinned

    def pinned(self, upstream: str) -> bool:
        """Call with ``routes.lock`` held (aliases are read)."""
        if upstream in self.holding:
            return True
        explicit = self.pins.get(upstream)
        return explicit if explicit is not None else upstream in self.routes.aliases.values()

    @contextmanager
    def hold(self, upstream: str) -> Iterator[None]:
        """Keep ``upstream`` from eviction for the block (a promotion's candidate, before its alias pins it)."""
        with self.routes.lock:
            self.holding.add(upstream)
        try:
            yield
        finally:
            with self.routes.lock:
                self.holding.discard(upstream)

    # -- eviction ------------------------------------------------------------------------------------------------

    def _make_room(self) -> None:
        """With the lock held: unload least recently used adapters until one more fits."""
        while self.capacity is not None and len(self.resident) >= self.capacity:
            victim = self._victim()
            if self.retiring is not None:
                self.retiring(victim)
            try:
                self.vllm.unload_adapter(victim)
            except LorastackError as exc:
                logger.warning("Could not unload %s to make room: %s", victim, exc)
            self.last_used.pop(victim, None)
            self.evictions.labels(victim).inc()
            logger.info("Evicted %s (least recently used) to make room", victim)

    def _victim(self) -> str:
        """The least recently used unpinned adapter with nothing in flight, taken out of the resident set under the
        routes' lock (a request that resolves to it afterwards loads it again); waits for one to go idle."""
        deadline = time.monotonic() + self.busy_wait_s
        with self.routes.lock:
            while True:
                unpinned = [n for n in self.resident if not self.pinned(n)]
                idle = [n for n in unpinned if self.routes.inflight[n] <= 0]
                if idle:
                    victim = min(idle, key=lambda n: self.last_used.get(n, -1))
                    self.resident.discard(victim)
                    return victim
                left = deadline - time.monotonic()
                if not unpinned or left <= 0:
                    raise SlotsFull(
                        f"All {self.capacity} adapter slots are taken by "
                        + ("pinned adapters." if not unpinned else "adapters with requests in flight."),
                        "Unpin one (lorastack adapters unpin NAME), or start the server with a larger --max-loaded."
                        if not unpinned else "Retry shortly.",
                    )  # fmt: skip
                self.routes.lock.wait(left)
