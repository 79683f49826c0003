"""The control process's side of ``--workers N``: starts and watches the worker processes, answers their sync,
and knows what each of them has in flight (a drain waits for all of them).

The control process keeps the front door's state (aliases, loaded adapters, promotions, keys' admin); it listens
on a private loopback port that only workers and this machine reach. Every change of routes is published as a new
generation; a promotion returns once every worker applied it, so no request routed after the promote call goes to
the old version.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from lorastack.serve.front_door.worker import CLIENT_HEADER, TOKEN_HEADER, WorkerConfig, run_worker

logger = logging.getLogger(__name__)

_LONG_POLL_S = 1.0
"""How long a sync waits for a change before it answers anyway (so reports of in-flight counts and metrics are at
most this old)."""
_APPLY_TIMEOUT_S = 10.0


@dataclass
class Report:
    """A worker's last sync: the generation it applied, its requests in flight per version, its metrics."""

    generation: int = -1
    inflight: dict[str, int] = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    listening: bool = False
    pid: int = 0
    received: float = 0.0
    """When the worker made it (time.monotonic: one clock for every process of this machine)."""


class WorkerPool:
    """N front-door worker processes on the public port, in sync with this (control) process."""

    def __init__(self, count: int, host: str, port: int, control_url: str, upstream: str, upstream_key: str | None,
                 base_name: str, home: Path) -> None:  # fmt: skip
        self.count = count
        self.token = secrets.token_urlsafe(32)
        self._configs = [
            WorkerConfig(i, host, port, control_url, self.token, upstream, upstream_key, base_name, home)
            for i in range(count)
        ]
        self._context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks inherited
        self._processes: list[multiprocessing.process.BaseProcess | None] = [None] * count
        self.reports: dict[int, Report] = {}
        self.generation = 0
        self.state: dict = {"aliases": {}, "direct": [], "available": True}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self.on_use: Callable[[dict[str, int]], None] | None = None
        """Called with each report's use of each name since the last one (for least-recently-used decisions)."""

    # -- processes ---------------------------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        """Start every worker; return once all of them listen."""
        for i in range(self.count):
            self._spawn(i)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(self.reports.get(i, Report()).listening for i in range(self.count)):
                dead = [i for i, p in enumerate(self._processes) if p is not None and not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"front-door worker {dead[0] if dead else '?'} did not start")
                self._changed.wait(0.2)
        threading.Thread(target=self._watch, name="lorastack-workers", daemon=True).start()

    def _spawn(self, index: int) -> None:
        process = self._context.Process(target=run_worker, args=(self._configs[index],), daemon=True,
                                        name=f"lorastack-front-door-{index}")  # fmt: skip
        process.start()
        self._processes[index] = process

    def _watch(self) -> None:
        """A worker that dies is started again (its connections are lost; the others go on serving)."""
        while not self._stopping.wait(0.5):
            for i, process in enumerate(self._processes):
                if process is not None and not process.is_alive() and not self._stopping.is_set():
                    logger.warning("Front-door worker %s exited (code %s); starting it again.", i, process.exitcode)
                    with self._changed:
                        self.reports.pop(i, None)
                    self._spawn(i)

    def stop(self) -> None:
        self._stopping.set()
        for process in self._processes:
            if process is not None and process.is_alive():
                process.terminate()
        for process in self._processes:
            if process is not None:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None and p.pid is not None]

    # -- state -------------------------------------------------------------------------------------------------

    def publish(self, aliases: dict[str, str], direct: set[str], available: bool, wait: bool = True) -> bool:
        """A new generation of routes; with ``wait``, return once every live worker applied it (False: timed out)."""
        with self._changed:
            self.generation += 1
            generation = self.generation
            self.state = {"aliases": dict(aliases), "direct": sorted(direct), "available": available}
            self._changed.notify_all()
        return self.applied(generation) if wait else True

    def applied(self, generation: int, timeout: float = _APPLY_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._all(lambda r: r.generation >= generation):
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("Front-door workers did not apply routes generation %s in %s s", generation, timeout)
                    return False
                self._changed.wait(left)
        return True

    def drained(self, upstream: str, timeout: float) -> bool:
        """Whether every worker, having applied the current routes, reports nothing in flight on ``upstream``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            generation = self.generation
            while not self._all(lambda r: r.generation >= generation and not r.inflight.get(upstream)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _all(self, condition: Callable[[Report], bool]) -> bool:
        """``condition`` holds for the last report of every worker that is alive (under ``_changed``)."""
        alive = [i for i, p in enumerate(self._processes) if p is not None and p.is_alive()]
        return all(condition(self.reports.get(i, Report())) for i in alive)

    def worker_metrics(self, timeout: float = 2.0) -> list[list]:
        """Every worker's metrics as of now: each is asked for a report (a new generation of the same routes ends
        its long poll at once) and waited for, so a request a client saw finished is counted. Blocks: call it from
        a thread, never the event loop that answers the syncs."""
        asked = time.monotonic()
        with self._changed:
            self.generation += 1
            self._changed.notify_all()
            deadline = asked + timeout
            while not self._all(lambda r: r.received > asked):
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("Front-door workers did not report their metrics in %s s; showing older ones", timeout)
                    break
                self._changed.wait(left)
            return [r.metrics for r in self.reports.values()]

    async def sync(self, report: dict) -> dict:
        """A worker's long poll: take its report; answer at once if its routes are old, else on the next change or
        after a second."""
        index = report.get("worker")
        if not isinstance(index, int) or not 0 <= index < self.count:
            raise ValueError("unknown worker")
        with self._changed:
            self.reports[index] = Report(
                int(report.get("generation", -1)), dict(report.get("inflight") or {}),
                list(report.get("metrics") or []), bool(report.get("listening")), int(report.get("pid") or 0),
                float(report.get("at") or 0.0),
            )  # fmt: skip
            self._changed.notify_all()
        if self.on_use is not None and report.get("used"):
            self.on_use(dict(report["used"]))
        deadline = time.monotonic() + _LONG_POLL_S
        while self.generation <= report.get("generation", -1) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # a plain read of an int: cheaper than a cross-thread event per worker
        with self._changed:
            return {"generation": self.generation, **self.state}


class TrustedWorkers:
    """ASGI middleware of the control process: a request a worker forwarded is answered as if from the client the
    worker names (the admin routes' loopback rule must see the real client); only a worker's own request (the
    secret, no client named) may sync. Headers without the right secret are ignored."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            token = headers.get(TOKEN_HEADER.encode())
            if token is not None and secrets.compare_digest(token, self.token):
                if (client := headers.get(CLIENT_HEADER.encode())) is not None:
                    scope = {**scope, "client": (client.decode("latin-1"), 0)}  # a client's request, forwarded
                else:
                    scope = {**scope, "lorastack_worker": True}  # the worker's own (its sync)
        await self.app(scope, receive, send)
