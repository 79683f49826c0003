"""The lorastack front door: the OpenAI API in front of vLLM.

It passes requests through (streaming included) and adds what vLLM lacks:

- **aliases**: a client calls ``support``; the front door sends the request to ``support@v3``, the version the
  alias points to. Every aliased version is loaded in vLLM under its own versioned name, so a promotion loads the
  new version beside the old one, checks it with one real completion, switches the alias (one assignment under a
  lock), and unloads the old version once its in-flight requests have finished;
- **per-version metrics** in Prometheus format at ``/metrics``;
- **API keys** (``lorastack.serve.keys``): inference routes need an inference or admin key, admin routes (LoRA load/unload,
  promote, rollback, metrics) an admin key, once any key exists;
- **a clean 503** with Retry-After while vLLM is down (the supervisor in ``lorastack.serve.server`` restarts it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter as PromCounter, Histogram, generate_latest

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lorastack.access import DEFAULT_ALIAS, Role, allows
from lorastack.errors import AdapterRejected, AlreadyExists, LorastackError, ServerError, Unauthorized
from lorastack.evaluation import Endpoint, EvalRequirement, Evaluator
from lorastack.serve.client import ServerClient
from lorastack.serve.keys import KeyStore
from lorastack.serve.loading import checked
from lorastack.serve.registry import AdapterVersion, Registry
from lorastack.serve.state import ServerState

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 10
"""What a 503 tells clients to wait while vLLM restarts."""
_INFERENCE = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
_INFERENCE_OTHER = ("/tokenize", "/detokenize", "/version", "/ping")
"""vLLM routes an inference key may also reach; every other vLLM route (LoRA load/unload, SageMaker's /adapters,
profiling, pause...) needs the admin key."""
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


def versioned(adapter: AdapterVersion) -> str:
    """The name an aliased version is served under in vLLM (and shown to clients as the response's model)."""
    return adapter.ref


def _error(status: int, message: str, kind: str, code: str, headers: dict | None = None) -> JSONResponse:
    """OpenAI's error body; ``code`` is stable (lorastack's errors carry theirs, see lorastack.errors)."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _lorastack_error(exc: LorastackError) -> JSONResponse:
    """A typed error as the client maps it back: its own status and code."""
    return _error(exc.status, str(exc), "invalid_request_error", exc.code)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EvalBody(_Strict):
    """The promotion's eval, as ``lorastack adapters promote --eval`` sends it (paths on the server's machine)."""

    eval_file: str = Field(min_length=1)
    min_accuracy: float = Field(ge=0, le=1)
    corpus: str | None = None
    limit: int | None = Field(None, ge=1)

    def requirement(self) -> EvalRequirement:
        return EvalRequirement(Path(self.eval_file), self.min_accuracy, Path(self.corpus) if self.corpus else None,
                               self.limit)  # fmt: skip


class PromoteBody(_Strict):
    ref: str = Field(min_length=1, max_length=200)
    alias: str = Field(DEFAULT_ALIAS, min_length=1, max_length=200)
    eval: EvalBody | None = None


class RollbackBody(_Strict):
    alias: str = Field(DEFAULT_ALIAS, min_length=1, max_length=200)


@dataclass(frozen=True)
class Promotion:
    """What a promotion (or rollback) did: ``adapter`` now serves ``alias``; ``previous`` served it before."""

    alias: str
    adapter: AdapterVersion
    previous: str | None
    accuracy: float | None = None
    baseline: float | None = None
    baseline_model: str | None = None

    def body(self) -> dict:
        return {"alias": self.alias, "ref": self.adapter.ref, "previous": self.previous, "accuracy": self.accuracy,
                "baseline": self.baseline, "baseline_model": self.baseline_model}  # fmt: skip


class Metrics:
    """Prometheus metrics labelled by the model the client asked for (``alias``) and the version that served it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("alias", "version")
        self.requests = PromCounter(
            "lorastack_requests", "Inference requests", (*labels, "status"), registry=self.registry
        )
        self.prompt_tokens = PromCounter("lorastack_prompt_tokens", "Prompt tokens", labels, registry=self.registry)
        self.completion_tokens = PromCounter(
            "lorastack_completion_tokens", "Completion tokens", labels, registry=self.registry
        )
        self.errors = PromCounter("lorastack_errors", "Failed requests", (*labels, "reason"), registry=self.registry)
        self.latency = Histogram(
            "lorastack_request_seconds", "Total request time", labels, buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.ttft = Histogram(
            "lorastack_time_to_first_token_seconds", "Time to the first streamed token (or the whole reply)", labels,
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)


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


class FrontDoor:
    """The front door's state and its FastAPI ``app``."""

    def __init__(
        self,
        state: ServerState,
        registry: Registry,
        keys: KeyStore | None = None,
        evaluator: Evaluator | None = None,
        drain_timeout: float = 600,
    ) -> None:
        """``state`` is the served base model and rank every adapter is checked against; its ``upstream_url`` is
        vLLM. ``evaluator`` runs a promotion's eval (the agent's; None: promotions cannot ask for one)."""
        self.state = state
        self.upstream = (state.upstream_url or state.url).rstrip("/")
        self.registry = registry
        self.base_name = state.base_name
        self.keys = keys or KeyStore(registry.home)
        self.evaluator = evaluator
        self.metrics = Metrics()
        self.routes = Routes()
        self.available = threading.Event()
        self.available.set()
        self.drain_timeout = drain_timeout
        self._admin = threading.Lock()
        self.client = ServerClient(self.upstream)
        self.app = self._build()

    # -- aliases ---------------------------------------------------------------------------------------------

    def restore_aliases(self) -> list[LorastackError]:
        """Load every aliased version under its versioned name and route the aliases to it (at every start)."""
        with self._admin:  # a promotion cannot interleave with a restore
            return self._restore_aliases()

    def _restore_aliases(self) -> list[LorastackError]:
        errors: list[LorastackError] = []
        served = self.client.served_adapters()
        for alias, adapter in self.registry.aliases().items():
            name = versioned(adapter)
            try:
                if name not in served:
                    checked(self.registry, adapter.ref, self.state)
                    self.client.load_adapter(name, str(adapter.path))
                    served[name] = str(adapter.path)
            except LorastackError as exc:
                errors.append(exc)
                logger.warning("Could not restore alias %s -> %s: %s", alias, adapter.ref, exc)
                continue
            self.routes.switch(alias, name)
            logger.info("Alias %s -> %s", alias, adapter.ref)
        return errors

    def promote(self, ref: str, alias: str, requirement: EvalRequirement | None = None) -> Promotion:
        """The whole promotion, owned here: check ``ref``, load it beside what ``alias`` serves, run the eval if
        ``requirement`` asks for one (it must reach the floor and beat the alias's current version, or the base
        model), check it with one real completion, switch the alias, then retire the old version once drained.

        Any failure before the switch unloads the candidate (if this promotion loaded it) and leaves the alias,
        the registry and vLLM as they were.
        """
        with self._admin:
            adapter = checked(self.registry, ref, self.state)
            name = versioned(adapter)
            with self.routes.lock:
                current = self.routes.aliases.get(alias)
            if current == name:
                raise AlreadyExists(f"The alias {alias!r} already serves {adapter.ref}.", "Nothing to do.")
            baseline_model = current or self.base_name
            baseline = accuracy = None
            if requirement is not None:
                baseline = self._evaluate(requirement, baseline_model)
            fresh = name not in self.client.served_adapters()
            if fresh:
                self.client.load_adapter(name, str(adapter.path))
            try:
                if requirement is not None:
                    accuracy = self._evaluate(requirement, name)
                    self._require(requirement, adapter, alias, accuracy, baseline_model, baseline)
                self._probe(name)
                self.registry.set_alias(alias, adapter)  # persisted first: if this fails, nothing has switched
                old = self.routes.switch(alias, name)  # the switch itself: one assignment under the routes lock
            except BaseException:
                if fresh:
                    self._unload_quietly(name)
                raise
        if old and old != name:
            threading.Thread(target=self._retire, args=(old,), daemon=True, name=f"retire-{old}").start()
        if requirement is None:
            return Promotion(alias, adapter, old)
        return Promotion(alias, adapter, old, accuracy, baseline, baseline_model)

    def rollback(self, alias: str) -> Promotion:
        """Promote, the same way, the version ``alias`` served before the current one."""
        _, previous = self.registry.rollback_target(alias)
        return self.promote(previous.ref, alias)

    def _evaluate(self, requirement: EvalRequirement, model: str) -> float:
        if self.evaluator is None:
            raise ServerError(
                "This server was started without an evaluator, so it cannot make a promotion wait for an eval.",
                "Start it with lorastack serve, or promote without --eval.",
            )
        logger.info("Evaluating %s on %s...", model, requirement.eval_file.name)
        endpoint = Endpoint(f"{self.upstream}/v1", "unused", self.state.tool_call_parser is not None)
        return self.evaluator(requirement, endpoint, model)

    @staticmethod
    def _require(requirement: EvalRequirement, adapter: AdapterVersion, alias: str, accuracy: float,
                 baseline_model: str, baseline: float | None) -> None:  # fmt: skip
        baseline = baseline or 0.0
        if accuracy >= requirement.min_accuracy and accuracy > baseline:
            return
        raise AdapterRejected(
            f"{adapter.ref} scored {accuracy:.1%} on {requirement.eval_file.name}, {baseline_model} {baseline:.1%}: "
            f"it needs at least {requirement.min_accuracy:.0%} and to beat {baseline_model}, so {alias!r} stays "
            f"where it is.",
            "Train it further, or give another --eval / --min-accuracy.",
        )

    def _unload_quietly(self, name: str) -> None:
        """Take a candidate out again after a failed promotion; the promotion's own error is what the caller sees."""
        try:
            self.client.unload_adapter(name)
        except LorastackError as exc:
            logger.warning("Could not unload %s after its failed promotion: %s", name, exc)

    def _probe(self, name: str) -> None:
        """One real completion on ``name``: a version that cannot answer is never switched to."""
        body = {"model": name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}  # fmt: skip
        try:
            response = httpx.post(f"{self.upstream}/v1/chat/completions", json=body, timeout=120)
        except httpx.TransportError as exc:
            raise ServerError(f"{name} did not answer its check ({exc.__class__.__name__}).") from None
        if not response.is_success:
            raise AdapterRejected(f"{name} failed its check (HTTP {response.status_code}): {response.text[:200]}")

    def _retire(self, upstream: str) -> None:
        if not self.routes.drain(upstream, self.drain_timeout):
            logger.warning("%s still busy after %s s; left loaded", upstream, self.drain_timeout)
            return
        with self._admin:  # no promotion may re-point an alias at it between the check and the unload
            with self.routes.lock:
                if upstream in self.routes.aliases.values() or self.routes.inflight[upstream] > 0:
                    return
            try:
                self.client.unload_adapter(upstream)
                logger.debug("Unloaded %s after it drained", upstream)
            except LorastackError as exc:
                logger.warning("Could not unload %s: %s", upstream, exc)

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _key(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return header[7:].strip() if header.lower().startswith("bearer ") else None

    def _denied(self, request: Request, needed: Role) -> JSONResponse | None:
        if not self.keys.enabled():
            # No key yet: inference is open (as vLLM is), admin only from this machine.
            host = request.client.host if request.client else ""
            if needed is Role.admin and host not in _LOOPBACK:
                return _error(
                    401, "Admin routes need an admin key when called from another machine: create one with "
                    "`lorastack keys create --role admin`.", "authentication_error", Unauthorized.code,
                )  # fmt: skip
            return None
        role = self.keys.role_of(self._key(request))
        if allows(role, needed):
            return None
        if role is None:
            return _error(401, "Missing or invalid API key (Authorization: Bearer KEY).", "authentication_error",
                          Unauthorized.code)  # fmt: skip
        return _error(401, "This route needs an admin key.", "authentication_error", Unauthorized.code)

    def _down(self) -> JSONResponse:
        return _error(
            503, "The model server is restarting; retry shortly.", "service_unavailable", "service_unavailable",
            {"Retry-After": str(RETRY_AFTER_S)},
        )  # fmt: skip

    def _build(self) -> FastAPI:
        app = FastAPI(title="lorastack", docs_url=None, redoc_url=None)
        http = httpx.AsyncClient(base_url=self.upstream, timeout=httpx.Timeout(600, connect=5))

        @app.get("/health")
        async def health() -> Response:
            if not self.available.is_set():
                return self._down()
            try:
                upstream = await http.get("/health", timeout=5)
            except httpx.TransportError:
                return self._down()
            return JSONResponse({"status": "ok"}) if upstream.status_code == 200 else self._down()

        @app.get("/metrics")
        async def metrics(request: Request) -> Response:
            if denied := self._denied(request, Role.admin):
                return denied
            return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

        @app.get("/v1/models")
        async def models(request: Request) -> Response:
            if denied := self._denied(request, Role.inference):
                return denied
            if not self.available.is_set():
                return self._down()
            try:
                upstream = await http.get("/v1/models")
            except httpx.TransportError:
                return self._down()
            data = upstream.json()
            with self.routes.lock:
                aliases = dict(self.routes.aliases)
            now = int(time.time())
            for alias, target in sorted(aliases.items()):
                data["data"].append({
                    "id": alias, "object": "model", "created": now, "owned_by": "lorastack",
                    "root": target, "parent": self.base_name,
                })  # fmt: skip
            return JSONResponse(data)

        @app.get("/admin/aliases")
        async def aliases(request: Request) -> Response:
            if denied := self._denied(request, Role.admin):
                return denied
            with self.routes.lock:
                return JSONResponse(dict(self.routes.aliases))

        @app.post("/admin/promote")
        async def promote(request: Request) -> Response:
            return await self._admin_action(
                request, PromoteBody,
                lambda body: self.promote(body.ref, body.alias, body.eval.requirement() if body.eval else None),
            )  # fmt: skip

        @app.post("/admin/rollback")
        async def rollback(request: Request) -> Response:
            return await self._admin_action(request, RollbackBody, lambda body: self.rollback(body.alias))

        @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
        async def passthrough(path: str, request: Request) -> Response:
            route = "/" + path
            inference = request.method == "POST" and route in _INFERENCE or route in _INFERENCE_OTHER
            needed = Role.inference if inference else Role.admin
            if denied := self._denied(request, needed):
                return denied
            if not self.available.is_set():
                return self._down()
            if request.method == "POST" and route in _INFERENCE:
                return await self._inference(http, route, request)
            try:
                upstream = await http.request(request.method, route, content=await request.body(),
                                              headers={"content-type": request.headers.get("content-type", "")})
            except httpx.TransportError:
                return self._down()
            return Response(upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type"))

        @app.on_event("shutdown")
        async def close() -> None:
            await http.aclose()

        return app

    async def _admin_action(
        self, request: Request, schema: type[_Strict], action: Callable[[Any], Promotion]
    ) -> Response:
        """An alias change requested over HTTP: admin key, vLLM up, a body of ``schema``; typed errors keep their
        status and code."""
        if denied := self._denied(request, Role.admin):
            return denied
        if not self.available.is_set():
            return self._down()
        try:
            body = schema.model_validate_json(await request.body())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            return _error(400, f"Invalid request body: {problems}.", "invalid_request_error", "invalid_request")
        try:
            promotion = await run_in_threadpool(action, body)
        except LorastackError as exc:
            return _lorastack_error(exc)
        return JSONResponse(promotion.body())

    async def _inference(self, http: httpx.AsyncClient, route: str, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        options = body.get("stream_options") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(options or {}, dict):
            return _error(400, "The request body must be a JSON object (stream_options an object).",
                          "invalid_request_error", "invalid_request")  # fmt: skip
        model = str(body.get("model") or self.base_name)
        streaming = bool(body.get("stream"))
        wants_usage = bool((options or {}).get("include_usage"))
        if streaming:
            body["stream_options"] = {**(options or {}), "include_usage": True}
        target = self.routes.acquire(model)  # from here on, every path releases it
        labels = (target.alias, target.version)
        body["model"] = target.upstream
        started = time.perf_counter()
        try:
            upstream = await http.send(http.build_request("POST", route, json=body), stream=True)
        except BaseException as exc:
            self.routes.release(target)
            if not isinstance(exc, httpx.TransportError):
                raise
            self._account(self._known(labels), 503, 0, 0, None)
            return self._down()
        if not streaming or upstream.status_code != 200:
            try:
                content = await upstream.aread()
            finally:
                self.routes.release(target)
                await upstream.aclose()
            elapsed = time.perf_counter() - started
            if upstream.status_code != 200:
                labels = self._known(labels)
            self._account(labels, upstream.status_code, elapsed, elapsed, _usage(content))
            return Response(content, upstream.status_code, media_type=upstream.headers.get("content-type"))
        return StreamingResponse(
            self._relay(upstream, target, labels, started, wants_usage), media_type="text/event-stream"
        )

    def _known(self, labels: tuple[str, str]) -> tuple[str, str]:
        """Failed requests keep their labels only for aliases: any other name the client sent becomes "unknown",
        so clients cannot grow the metrics' label sets without bound."""
        with self.routes.lock:
            return labels if labels[0] in self.routes.aliases or labels[0] == self.base_name else ("unknown", "")

    async def _relay(self, upstream: httpx.Response, target: Target, labels: tuple[str, str], started: float,
                     wants_usage: bool) -> AsyncIterator[bytes]:  # fmt: skip
        first: float | None = None
        usage: dict | None = None
        status = "200"
        finished = False
        buffer = b""

        async def finish() -> None:
            # Before the client gets [DONE]: one that has read the whole stream then finds the request counted
            # in the metrics and no longer in flight (which a drain waits for).
            nonlocal finished
            finished = True
            self.routes.release(target)
            await upstream.aclose()
            end = time.perf_counter()
            self._account(labels, status, end - started, (first or end) - started, usage)

        try:
            async for chunk in upstream.aiter_bytes():
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    payload = event[6:] if event.startswith(b"data: ") else b""
                    if payload == b"[DONE]":
                        await finish()
                        yield event + b"\n\n"
                        return
                    if payload:
                        try:
                            parsed = json.loads(payload)
                        except ValueError:
                            parsed = {}
                        if not isinstance(parsed, dict):
                            parsed = {}
                        if parsed.get("usage"):
                            usage = parsed["usage"]
                            if not parsed.get("choices") and not wants_usage:
                                continue  # the usage-only chunk we asked for, not the client
                        if first is None and parsed.get("choices"):
                            first = time.perf_counter()
                    yield event + b"\n\n"
            if buffer:
                yield buffer
        except (httpx.TransportError, asyncio.CancelledError):
            status = "499"
            raise
        finally:
            if not finished:
                await finish()

    def _account(self, labels: tuple[str, str], status: int | str, seconds: float, ttft: float,
                 usage: dict | None) -> None:  # fmt: skip
        m = self.metrics
        m.requests.labels(*labels, str(status)).inc()
        if str(status) != "200":
            m.errors.labels(*labels, f"http_{status}").inc()
            return
        m.latency.labels(*labels).observe(seconds)
        m.ttft.labels(*labels).observe(ttft)
        if usage:
            m.prompt_tokens.labels(*labels).inc(usage.get("prompt_tokens") or 0)
            m.completion_tokens.labels(*labels).inc(usage.get("completion_tokens") or 0)


def _usage(content: bytes) -> dict | None:
    try:
        return json.loads(content).get("usage")
    except (ValueError, AttributeError):
        return None
