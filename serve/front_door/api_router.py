"""The front door's routes: thin handlers over :class:`FrontDoor` (service), :class:`Relay` and the protocol.

Only the routes below exist. vLLM's other routes, its raw LoRA routes above all, are not forwarded: adapters
reach vLLM through the registry's check and sha256 alone (``/admin/adapters/load``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from lorastack.access import Role
from lorastack.errors import LorastackError
from lorastack.serve.front_door import errors
from lorastack.serve.front_door.auth import denied
from lorastack.serve.front_door.metrics import CountResponses
from lorastack.serve.front_door.protocol import (
    INFERENCE, UTILITY, LoadBody, PinBody, PromoteBody, RollbackBody, UnloadBody,
)  # fmt: skip
from lorastack.serve.front_door.protocol import BadRequest, parse_body
from lorastack.serve.front_door.relay import Relay, parse_request, read_body
from lorastack.serve.front_door.worker import SYNC_PATH
from lorastack.serve.jobs.api_router import add_routes as add_job_routes
from lorastack.serve.jobs.api_router import schema_models as job_schema_models

if TYPE_CHECKING:
    from lorastack.serve.front_door.service import FrontDoor

logger = logging.getLogger(__name__)

def _body(model: type[BaseModel]) -> dict:
    """The OpenAPI request body of a route whose handler parses ``model`` itself."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def build_app(door: FrontDoor) -> FastAPI:
    relay = Relay(door.upstream, door.upstream_key, door.routes, door.metrics, door.base_name, door.available)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await relay.close()

    app = FastAPI(title="lorastack", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    relay.residency = door.residency
    app.state.relay = relay

    @app.get("/health")
    async def health() -> Response:
        if not door.available.is_set():
            return errors.down()
        try:
            upstream = await relay.http.get("/health", timeout=5)
        except httpx.TransportError:
            return errors.down()
        return JSONResponse({"status": "ok"}) if upstream.status_code == 200 else errors.down()

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if refusal := denied(door.keys, request, Role.admin):
            return refusal
        workers = await run_in_threadpool(door.pool.worker_metrics) if door.pool is not None else ()
        return Response(door.metrics.render(workers), media_type=CONTENT_TYPE_LATEST)

    @app.post(SYNC_PATH, include_in_schema=False)
    async def sync(request: Request) -> Response:
        """A front-door worker's long poll (see ``workers``); no such route for anyone else."""
        if door.pool is None or not request.scope.get("lorastack_worker"):
            return errors.not_found(SYNC_PATH)
        try:
            return JSONResponse(await door.pool.sync(parse_body(await read_body(request))))
        except (BadRequest, ValueError, TypeError, AttributeError):
            return errors.invalid("Malformed worker report.")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        if refusal := denied(door.keys, request, Role.inference):
            return refusal
        return JSONResponse(app.openapi())

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        if refusal := denied(door.keys, request, Role.inference):
            return refusal
        if not door.available.is_set():
            return errors.down()
        try:
            upstream = await relay.http.get("/v1/models", headers=relay.headers)
            data = upstream.json()
        except (httpx.TransportError, ValueError):
            return errors.down()
        for entry in data.get("data", []):
            if entry.get("parent"):
                entry["root"] = entry["id"]  # vLLM puts the adapter's folder there: a name, never a path, leaves
        now = int(time.time())
        for alias, target in sorted(door.routes.snapshot().items()):
            data["data"].append({
                "id": alias, "object": "model", "created": now, "owned_by": "lorastack", "root": target,
                "parent": door.base_name,
            })  # fmt: skip
        listed = {entry.get("id") for entry in data["data"]}
        for name, ref in await run_in_threadpool(door.residency.available):
            if name not in listed:  # registered, loaded on its first request
                data["data"].append({
                    "id": name, "object": "model", "created": now, "owned_by": "lorastack", "root": ref,
                    "parent": door.base_name, "loaded": False,
                })  # fmt: skip
        return JSONResponse(data)

    def inference(path: str, schema: type[BaseModel]) -> None:
        async def handler(request: Request) -> Response:
            if refusal := denied(door.keys, request, Role.inference):
                return refusal
            return await relay.forward(path, request, schema)

        app.add_api_route(path, handler, methods=["POST"], name=path, openapi_extra=_body(schema))

    for path, schema in INFERENCE.items():
        inference(path, schema)

    def utility(path: str, schema: type[BaseModel]) -> None:
        async def handler(request: Request) -> Response:
            if refusal := denied(door.keys, request, Role.inference):
                return refusal
            parsed = await parse_request(request, schema)
            if isinstance(parsed, Response):
                return parsed
            body, _ = parsed
            if not door.available.is_set():
                return errors.down()
            try:
                upstream = await relay.http.post(path, json=body, headers=relay.headers)
            except httpx.TransportError:
                return errors.down()
            return Response(upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type"))

        app.add_api_route(path, handler, methods=["POST"], name=path, openapi_extra=_body(schema))

    for path, schema in UTILITY.items():
        utility(path, schema)

    @app.get("/admin/aliases")
    async def aliases(request: Request) -> Response:
        if refusal := denied(door.keys, request, Role.admin):
            return refusal
        return JSONResponse(door.routes.snapshot())

    def admin(path: str, schema: type[BaseModel], action: Callable[[Any], dict]) -> None:
        async def handler(request: Request) -> Response:
            """An admin action: admin key, vLLM up, a body of ``schema``; typed errors keep status and code."""
            if refusal := denied(door.keys, request, Role.admin):
                return refusal
            if not door.available.is_set():
                return errors.down()
            parsed = await parse_request(request, schema)
            if isinstance(parsed, Response):
                return parsed
            try:
                return JSONResponse(await run_in_threadpool(action, parsed[1]))
            except LorastackError as exc:
                return errors.typed(exc)

        app.add_api_route(path, handler, methods=["POST"], name=path, openapi_extra=_body(schema))

    admin("/admin/promote", PromoteBody,
          lambda b: door.promote(b.ref, b.alias, b.eval.requirement() if b.eval else None).body())
    admin("/admin/rollback", RollbackBody, lambda b: door.rollback(b.alias).body())
    admin("/admin/adapters/load", LoadBody, lambda b: _loaded(door.load(b.ref)))
    admin("/admin/adapters/unload", UnloadBody, lambda b: {"name": b.name, "live": door.unload(b.name)})  # fmt: skip
    admin("/admin/adapters/pin", PinBody,
          lambda b: {"ref": b.ref, "served": door.pin(b.ref, b.pinned), "pinned": b.pinned})  # fmt: skip

    add_job_routes(app, door.jobs, door.keys)  # /v1/files and /v1/fine_tuning/jobs (serve/jobs)

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)  # fmt: skip
    async def elsewhere(path: str) -> Response:
        return errors.not_found("/" + path)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # One line in the log, not a traceback per request; the client gets OpenAI's body.
        logger.error("%s %s failed: %r", request.method, request.url.path[:200], exc)
        return errors.error_response(500, "The front door failed on this request.", "server_error", "internal_error")

    def schema() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for model in (*INFERENCE.values(), *UTILITY.values(), PromoteBody, RollbackBody, LoadBody, UnloadBody,
                          *job_schema_models()):
                for name, definition in model.model_json_schema(ref_template="#/components/schemas/{model}").get(
                    "$defs", {}
                ).items():
                    components.setdefault(name, definition)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
    app.add_middleware(CountResponses, metrics=door.metrics)
    return app


def _loaded(result: Any) -> dict:
    return {"ref": result.adapter.ref, "replaced": result.replaced}
