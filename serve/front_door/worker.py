"""One front-door worker process: relays inference straight to vLLM, hands everything else to the control process.

With ``--workers N`` (N > 1) the public port is shared by N of these (``SO_REUSEPORT``: the kernel spreads the
connections). Each holds a replica of the control's routes (aliases, the names vLLM serves, whether vLLM is up),
kept current by a long poll (``/_lorastack/sync``) that also carries back its requests in flight per version,
the use of each name and its metrics. Admin routes, unknown names (a first request that must load an adapter) and
every route it does not know go to the control process, which is the one owner of state (see ``service``).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from lorastack.access import Role
from lorastack.serve.front_door import errors
from lorastack.serve.front_door.auth import denied
from lorastack.serve.front_door.metrics import CountResponses, Metrics
from lorastack.serve.front_door.protocol import INFERENCE
from lorastack.serve.front_door.relay import Relay
from lorastack.serve.front_door.routing import Routes
from lorastack.serve.keys import KeyStore

logger = logging.getLogger(__name__)

SYNC_PATH = "/_lorastack/sync"
TOKEN_HEADER = "x-lorastack-worker"
"""Carries the per-start secret that makes the control process trust a worker (sync, and the client's address)."""
CLIENT_HEADER = "x-lorastack-client"
"""The address of the client a worker forwards for (the control process keeps admin routes to loopback without
keys): believed only beside the secret."""
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te", "trailer"}


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker is started with (pickled to the spawned process, never on its command line)."""

    index: int
    host: str
    port: int
    control_url: str
    token: str
    upstream: str
    upstream_key: str | None
    base_name: str
    home: Path


class Replica:
    """The control's routes as this worker last saw them, and what it reports back."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.routes = Routes()
        self.metrics = Metrics()
        self.generation = -1
        self.available = threading.Event()
        self.used: dict[str, int] = {}
        self.listening = False

    def touch(self, upstream: str) -> bool:
        """The relay's note of a request for an adapter (the control's least-recently-used order hears of it at the
        next sync); a replica routes only adapters vLLM holds, so there is never anything to load here."""
        self.used[upstream] = self.used.get(upstream, 0) + 1
        return True

    def apply(self, answer: dict) -> None:
        self.routes.replace(answer["aliases"], set(answer["direct"]))
        self.generation = answer["generation"]
        (self.available.set if answer["available"] else self.available.clear)()

    def report(self) -> dict:
        used, self.used = self.used, {}
        with self.routes.lock:
            inflight = dict(self.routes.inflight)
        return {
            "worker": self.config.index, "pid": os.getpid(), "generation": self.generation, "inflight": inflight,
            "used": used, "listening": self.listening, "metrics": self.metrics.samples(), "at": time.monotonic(),
        }  # fmt: skip


def build_worker_app(replica: Replica, keys: KeyStore) -> FastAPI:
    config = replica.config
    control = httpx.AsyncClient(
        base_url=config.control_url, timeout=httpx.Timeout(None, connect=5),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
    )  # fmt: skip
    relay = Relay(config.upstream, config.upstream_key, replica.routes, replica.metrics, config.base_name,
                  replica.available)
    trusted = {TOKEN_HEADER: config.token}

    async def to_control(request: Request, content: bytes | None = None) -> Response:
        """The request as the client sent it (or ``content`` for its body), answered by the control process."""
        request.scope["lorastack_forwarded"] = True  # counted by the control process, not twice
        headers = [(k, v) for k, v in request.headers.items()
                   if k not in _HOP_BY_HOP and not k.startswith("x-lorastack")]  # fmt: skip
        client = request.client.host if request.client else ""
        headers += [(TOKEN_HEADER, config.token), (CLIENT_HEADER, client)]
        outgoing = control.build_request(
            request.method, request.url.path, params=request.query_params, headers=headers,
            content=content if content is not None else request.stream(),
        )  # fmt: skip
        try:
            answer = await control.send(outgoing, stream=True)
        except httpx.TransportError:
            return errors.down()
        kept = {k: v for k, v in answer.headers.items() if k not in _HOP_BY_HOP}

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()

        return StreamingResponse(body(), answer.status_code, headers=kept)

    relay.fallback = to_control
    relay.residency = replica  # type: ignore[assignment]  # its touch() counts use for the control's eviction order

    async def sync_forever() -> None:
        parent = os.getppid()
        while True:
            if os.getppid() != parent:
                logger.warning("Front-door worker %s: the server is gone; stopping.", config.index)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            try:
                answer = await control.post(SYNC_PATH, json=replica.report(), headers=trusted, timeout=30)
                answer.raise_for_status()
                state = answer.json()
            except (httpx.HTTPError, ValueError):
                await asyncio.sleep(0.2)
                continue
            replica.apply(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(sync_forever())
        replica.listening = True
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await relay.close()
            await control.aclose()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def inference(path: str, schema: type[BaseModel]) -> None:
        async def handler(request: Request) -> Response:
            if refusal := denied(keys, request, Role.inference):
                return refusal
            return await relay.forward(path, request, schema)

        app.add_api_route(path, handler, methods=["POST"], name=path)

    for path, schema in INFERENCE.items():
        inference(path, schema)

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"])
    async def elsewhere(request: Request) -> Response:
        return await to_control(request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.error("%s %s failed in a front-door worker: %r", request.method, request.url.path[:200], exc)
        return errors.error_response(500, "The front door failed on this request.", "server_error", "internal_error")

    app.add_middleware(CountResponses, metrics=replica.metrics)
    return app


def _die_with_parent() -> None:
    """Linux: this process gets SIGTERM when the server that started it dies (kill -9 included)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the sync loop notices the parent is gone


def listening_socket(host: str, port: int) -> socket.socket:
    """The public port, shared with the other workers (the kernel spreads new connections between them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def first_sync(replica: Replica, deadline_s: float = 60) -> None:
    """Routes before the first connection is accepted."""
    config = replica.config
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            answer = httpx.post(config.control_url + SYNC_PATH, json=replica.report(),
                                headers={TOKEN_HEADER: config.token}, timeout=10)  # fmt: skip
            answer.raise_for_status()
            replica.apply(answer.json())
            return
        except (httpx.HTTPError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_worker(config: WorkerConfig) -> None:
    """The worker process's main: sync, listen on the shared port, serve until told to stop."""
    import uvicorn  # heavy, and only in the worker processes

    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    replica = Replica(config)
    first_sync(replica)
    app = build_worker_app(replica, KeyStore(config.home))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=30,
                                           lifespan="on"))  # fmt: skip
    server.run(sockets=[listening_socket(config.host, config.port)])
