"""Relaying inference to vLLM: alias resolution per request, streaming without re-encoding, metrics, and the
client's disconnect passed on (vLLM stops generating for a client that left, streaming or not)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from lorastack.serve.front_door import errors
from lorastack.serve.front_door.metrics import Metrics
from lorastack.serve.front_door.protocol import MAX_BODY_BYTES, BadRequest, parse_body
from lorastack.serve.front_door.routing import Routes, Target

if TYPE_CHECKING:
    from lorastack.serve.front_door.residency import Residency

_WATCH_S = 0.25
"""How often a waiting non-streaming request checks whether its client is still there."""
_CLIENT_GONE = 499  # nginx's code for it: the client closed the connection before the answer
_DRAIN_S = 1.0
"""How long the end of a stream's body may take to arrive after its [DONE] (vLLM sends both at once)."""
_UPSTREAM_DOWN = (aiohttp.ClientError, TimeoutError)
"""What a request to vLLM raises when vLLM is not there or stops answering (connection refused or reset)."""


class ClientGone(Exception):
    """The client disconnected while its request was under way."""


async def read_body(request: Request) -> bytes:
    """The request body, refused (413) as soon as it is larger than MAX_BODY_BYTES, whatever its headers say."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(f"The request body is larger than {MAX_BODY_BYTES // 2**20} MiB.", 413, "body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"The request body is larger than {MAX_BODY_BYTES // 2**20} MiB.", 413, "body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_request(request: Request, schema: type[BaseModel]) -> tuple[Any, BaseModel] | Response:
    """The request's JSON body and its ``schema`` model, or the 4xx that refuses it."""
    try:
        body = parse_body(await read_body(request))
        return body, schema.model_validate(body)
    except BadRequest as exc:
        return errors.invalid(exc.message, exc.status, exc.code)
    except ValidationError as exc:
        return errors.invalid(_body_problems(exc))


def _body_problems(exc: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
    return f"Invalid request body: {problems}."


async def until_done(request: Request, work: Awaitable) -> object:
    """``work``'s result, or ClientGone (``work`` cancelled) once the client has disconnected."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_WATCH_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()  # closes the connection to vLLM, which then aborts the generation
            await asyncio.gather(task, return_exceptions=True)


class Relay:
    """Sends inference requests on to vLLM and their answers back.

    Inference goes through aiohttp (its HTTP parser is C; httpx's h11 parses every streamed chunk in Python, which
    was the largest part of the front door's own time under load); ``http`` (httpx) serves the few utility calls.
    """

    def __init__(self, upstream: str, api_key: str | None, routes: Routes, metrics: Metrics, base_name: str,
                 available: threading.Event) -> None:  # fmt: skip
        self.http = httpx.AsyncClient(
            base_url=upstream, timeout=httpx.Timeout(600, connect=5),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=512),
        )  # fmt: skip
        self.upstream = upstream.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self.headers = {"content-type": "application/json"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"
        self.routes = routes
        self.metrics = metrics
        self.base_name = base_name
        self.available = available
        self.fallback: Callable[[Request, bytes], Awaitable[Response]] | None = None
        """In a front-door worker: answers requests for names it cannot route (the control process does)."""
        self.residency: Residency | None = None
        """Loads a registered adapter on its first request (the front door's; None: names go to vLLM as they are)."""

    async def close(self) -> None:
        await self.http.aclose()
        if self._session is not None:
            await self._session.close()

    def _inference(self) -> aiohttp.ClientSession:
        """The connection pool for inference, made in the serving event loop on first use: no limit on connections
        (every request in flight holds one), a connect timeout, and none on a whole stream (only on each read)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop:  # one loop when served; tests may run several
            self._session_loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=600),
                skip_auto_headers=("Accept-Encoding",),  # vLLM's bytes as they are, never compressed for the relay
            )  # fmt: skip
        return self._session

    def known(self, alias: str) -> tuple[str, str]:
        """Labels of a request that failed before a version answered: kept for aliases and the base model; any
        other name a client sent becomes "unknown", so clients cannot grow the label sets without bound."""
        with self.routes.lock:
            return (alias, "") if alias in self.routes.aliases or alias == self.base_name else ("unknown", "")

    async def forward(self, route: str, request: Request, schema: type) -> Response:
        """One inference request (``schema``: the protocol model of ``route``)."""
        parsed = await parse_request(request, schema)
        if isinstance(parsed, Response):
            return parsed
        body, fields = parsed
        model = fields.model or self.base_name
        if self.fallback is not None and not self.routes.routable(model):
            return await self.fallback(request, json.dumps(body, ensure_ascii=False).encode())
        if not self.available.is_set():
            self.metrics.account(self.known(model), 503, 0, 0, None)
            return errors.down()
        wants_usage = bool((fields.stream_options or {}).get("include_usage"))
        if fields.stream:
            body["stream_options"] = {**(fields.stream_options or {}), "include_usage": True}
        target = self.routes.acquire(model)  # from here on, every path releases it
        residency = self.residency
        if residency is not None and target.upstream != self.base_name and not residency.touch(target.upstream):
            refusal = await residency.admit(target.upstream)
            if refusal is not None:
                self.routes.release(target)
                self.metrics.account(self.known(model), refusal.status_code, 0, 0, None)
                return refusal
        body["model"] = target.upstream
        content = json.dumps(body, ensure_ascii=False).encode()
        url = self.upstream + route
        started = time.perf_counter()
        if not fields.stream:
            return await self._whole(request, url, content, target, started)
        try:
            upstream = await self._inference().post(url, data=content, headers=self.headers)
        except BaseException as exc:
            self.routes.release(target)
            if not isinstance(exc, _UPSTREAM_DOWN):
                raise
            self.metrics.account(self.known(model), 503, 0, 0, None)
            return errors.down()
        if upstream.status != 200:
            answer: bytes | None = None
            try:
                answer = await upstream.read()
            except _UPSTREAM_DOWN:
                pass  # vLLM went away while refusing: answered as vLLM being down
            finally:
                self.routes.release(target)
                upstream.release()
            self.metrics.account(self.known(model), upstream.status if answer is not None else 503, 0, 0, None)
            if answer is None:
                return errors.down()
            return Response(answer, upstream.status, media_type=upstream.headers.get("content-type"))
        labels = (target.alias, target.version)
        return StreamingResponse(self._relay(upstream, target, labels, started, wants_usage),
                                 media_type="text/event-stream")  # fmt: skip

    async def _whole(self, request: Request, url: str, content: bytes, target: Target, started: float) -> Response:
        labels = (target.alias, target.version)
        try:
            status, answer, media_type = await until_done(request, self._fetch(url, content))
        except ClientGone:
            self.metrics.account(self.known(target.alias), _CLIENT_GONE, 0, 0, None)
            return Response(status_code=_CLIENT_GONE)
        except _UPSTREAM_DOWN:
            self.metrics.account(self.known(target.alias), 503, 0, 0, None)
            return errors.down()
        finally:
            self.routes.release(target)
        elapsed = time.perf_counter() - started
        if status != 200:
            labels = self.known(target.alias)
        self.metrics.account(labels, status, elapsed, elapsed, _usage(answer) if status == 200 else None)
        return Response(answer, status, media_type=media_type)

    async def _fetch(self, url: str, content: bytes) -> tuple[int, bytes, str | None]:
        # Cancelled (the client left), the connection is closed unread: vLLM then aborts the generation.
        async with self._inference().post(url, data=content, headers=self.headers) as upstream:
            return upstream.status, await upstream.read(), upstream.headers.get("content-type")

    async def _relay(self, upstream: aiohttp.ClientResponse, target: Target, labels: tuple[str, str], started: float,
                     wants_usage: bool) -> AsyncIterator[bytes]:  # fmt: skip
        """The SSE events as vLLM sent them, less the usage-only chunk the client did not ask for. Each event is
        parsed only where it can matter: the first token's arrival and the usage."""
        first: float | None = None
        usage: dict | None = None
        status: int | str = 200
        finished = False
        buffer = b""

        async def finish() -> None:
            # Before the client gets [DONE]: one that has read the whole stream then finds the request counted
            # in the metrics and no longer in flight (which a drain waits for).
            nonlocal finished
            finished = True
            self.routes.release(target)
            end = time.perf_counter()
            self.metrics.account(labels, status, end - started, (first or end) - started, usage)

        chunks = upstream.content.iter_any()
        try:
            async for chunk in chunks:
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    payload = event[6:] if event.startswith(b"data: ") else b""
                    if payload == b"[DONE]":
                        await finish()
                        yield event + b"\n\n"
                        # The rest of the body is the end of its chunked encoding: read, the connection goes back to
                        # the pool for the next request (closed unread, every stream would open a new one to vLLM).
                        # Bounded: an upstream that lingers after [DONE] gets its connection closed instead.
                        try:
                            async with asyncio.timeout(_DRAIN_S):
                                async for _ in chunks:
                                    pass
                        except _UPSTREAM_DOWN:
                            pass
                        return
                    if payload and (first is None or b'"usage":{' in payload or b'"usage": {' in payload):
                        parsed = _object(payload)
                        if isinstance(parsed.get("usage"), dict):
                            usage = parsed["usage"]
                            if not parsed.get("choices") and not wants_usage:
                                continue  # the usage-only chunk we asked for, not the client
                        if first is None and parsed.get("choices"):
                            first = time.perf_counter()
                    yield event + b"\n\n"
            if buffer:
                yield buffer
        except _UPSTREAM_DOWN:
            # vLLM died mid-stream: the client gets an error event it can read, not a cut-off body.
            status = 502
            yield _error_event("The model server stopped while answering; retry shortly.", "upstream_closed")
        except asyncio.CancelledError:
            status = _CLIENT_GONE
            raise
        finally:
            if not finished:
                await finish()
            if upstream.content.at_eof():
                upstream.release()  # a whole body read: the connection goes back to the pool
            else:
                upstream.close()  # cut short (the client left): closed, and vLLM aborts the generation


def _object(payload: bytes) -> dict:
    try:
        parsed = json.loads(payload)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error_event(message: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _usage(content: bytes) -> dict | None:
    usage = _object(content).get("usage")
    return usage if isinstance(usage, dict) else None
