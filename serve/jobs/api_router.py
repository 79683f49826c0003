"""The files and fine-tuning jobs routes (OpenAI's ``/v1/files`` and ``/v1/fine_tuning/jobs``), thin over
:class:`~lorastack.serve.jobs.service.FineTuning`. Every route needs an admin key once keys exist (before the first
key: this machine only, as the other admin routes); every refusal is OpenAI's error body with its 4xx."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from lorastack.access import Role
from lorastack.errors import LorastackError, NotFound
from lorastack.serve.front_door.auth import denied
from lorastack.serve.front_door.relay import parse_request
from lorastack.serve.jobs.errors import InvalidRequest, TooLarge
from lorastack.serve.jobs.protocol import (
    JobCreate, checkpoint_object, event_object, file_object, fine_tuned_name, job_object, page,
)  # fmt: skip

if TYPE_CHECKING:
    from lorastack.serve.jobs.service import FineTuning

PAGE_DEFAULT, PAGE_MAX = 20, 100
_FORM_SLACK = 1 << 20
"""Bytes a multipart body may hold beyond the file itself (boundaries, headers, the purpose field)."""

_UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string", "enum": ["fine-tune"]}},
}}}}}  # fmt: skip


_QUERY = {
    "after": {"name": "after", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 256}},
    "limit": {"name": "limit", "in": "query", "required": False,
              "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX}},
    "order": {"name": "order", "in": "query", "required": False, "schema": {"type": "string", "enum": ["asc", "desc"]}},
    "purpose": {"name": "purpose", "in": "query", "required": False, "schema": {"type": "string"}},
}  # fmt: skip
"""The query parameters of the list routes, as the OpenAPI document states them."""


def _error(exc: LorastackError) -> JSONResponse:
    """OpenAI's error body for a typed refusal, with the field it is about (``param``) where it names one."""
    param = exc.param if isinstance(exc, InvalidRequest) else None
    body = {"error": {"message": str(exc), "type": "invalid_request_error", "param": param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return PAGE_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= PAGE_MAX:
        raise InvalidRequest(f"limit must be a whole number from 1 to {PAGE_MAX}.", param="limit")
    return int(raw)


def _after(request: Request) -> str | None:
    after = request.query_params.get("after")
    if after is not None and not 0 < len(after) <= 256:
        raise InvalidRequest("after must be the id of the last item of the previous page.", param="after")
    return after


def _metadata_filter(request: Request) -> dict[str, str]:
    """``metadata[key]=value`` query parameters (how the openai client sends a metadata filter)."""
    found = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            found[key[9:-1]] = value
    return found


async def _limited(stream: AsyncIterator[bytes], most: int) -> AsyncIterator[bytes]:
    """``stream``, refused once it passes ``most`` bytes (whatever Content-Length claimed)."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > most:
            raise TooLarge("The upload is larger than this server's file size limit.",
                           "Upload less data, or start the server with a larger --max-file-mib.")  # fmt: skip
        yield chunk


def add_routes(app: FastAPI, jobs: FineTuning, keys: Any) -> None:
    """Add the routes to ``app`` (before its catch-all 404)."""

    def route(path: str, method: str, work: Callable[[Request], Awaitable[Any]], query: tuple[str, ...] = (),
              **extra: Any) -> None:  # fmt: skip
        async def handler(request: Request) -> Response:
            if refusal := denied(keys, request, Role.admin):
                return refusal
            try:
                result = await work(request)
            except LorastackError as exc:
                return _error(exc)
            return result if isinstance(result, Response) else JSONResponse(result)

        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 256}}
                      for name in re.findall(r"{(\w+)}", path)]  # fmt: skip
        parameters += [_QUERY[name] for name in query]
        openapi = {**extra.pop("openapi_extra", {}), **({"parameters": parameters} if parameters else {})}
        app.add_api_route(path, handler, methods=[method], name=f"{method} {path}", openapi_extra=openapi, **extra)

    def threaded(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any) -> Any:
            return await run_in_threadpool(function, *args)

        return call

    # -- files -----------------------------------------------------------------------------------------------

    async def upload(request: Request) -> Any:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidRequest("Upload files as multipart/form-data with fields file and purpose.", param="file")
        most = jobs.files.max_bytes + _FORM_SLACK
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > most:
            raise TooLarge(f"The upload ({int(length):,} bytes) is larger than this server's file size limit.",
                           "Upload less data, or start the server with a larger --max-file-mib.")  # fmt: skip
        parser = MultiPartParser(request.headers, _limited(request.stream(), most), max_files=1, max_fields=8)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise InvalidRequest(f"The multipart body could not be read: {exc.message}", param="file") from None
        try:
            file, purpose = form.get("file"), form.get("purpose")
            if not isinstance(file, UploadFile):
                raise InvalidRequest("The form has no file field holding a file.", param="file")
            if not isinstance(purpose, str):
                raise InvalidRequest("The form has no purpose field.", "Send purpose=fine-tune.", "purpose")
            return file_object(await run_in_threadpool(jobs.files.add, file.file, file.filename or "", purpose))
        finally:
            await form.close()

    async def list_files(request: Request) -> Any:
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be asc or desc.", param="order")
        rows, more = await run_in_threadpool(jobs.store.files, _after(request), _limit(request),
                                             request.query_params.get("purpose"), order == "asc")  # fmt: skip
        return page([file_object(r) for r in rows], more)

    async def get_file(request: Request) -> Any:
        return file_object(await threaded(jobs.store.file)(request.path_params["file_id"]))

    async def content(request: Request) -> Any:
        row = await threaded(jobs.store.file)(request.path_params["file_id"])
        media = "text/csv" if row["stored"].endswith(".csv") else "application/octet-stream"
        path = jobs.files.path(row)
        if not path.is_file():
            raise NotFound(f"File {row['id']}'s content is missing from the files folder.", "Upload it again.")
        return FileResponse(path, media_type=media)

    async def delete_file(request: Request) -> Any:
        row = await threaded(jobs.files.delete)(request.path_params["file_id"])
        return {"id": row["id"], "object": "file", "deleted": True}

    route("/v1/files", "POST", upload, openapi_extra=_UPLOAD_SCHEMA)
    route("/v1/files", "GET", list_files, ("after", "limit", "order", "purpose"))
    route("/v1/files/{file_id}", "GET", get_file)
    route("/v1/files/{file_id}/content", "GET", content)
    route("/v1/files/{file_id}", "DELETE", delete_file)

    # -- jobs ------------------------------------------------------------------------------------------------

    async def create(request: Request) -> Any:
        parsed = await parse_request(request, JobCreate)
        if isinstance(parsed, Response):
            return parsed
        return job_object(await threaded(jobs.create)(parsed[1]))

    async def list_jobs(request: Request) -> Any:
        rows, more = await threaded(jobs.store.jobs)(_after(request), _limit(request), _metadata_filter(request))
        return page([job_object(r) for r in rows], more)

    async def get_job(request: Request) -> Any:
        return job_object(await threaded(jobs.store.job)(request.path_params["job_id"]))

    async def cancel(request: Request) -> Any:
        return job_object(await threaded(jobs.cancel)(request.path_params["job_id"]))

    async def events(request: Request) -> Any:
        rows, more = await threaded(jobs.store.events)(request.path_params["job_id"], _after(request), _limit(request))
        return page([event_object(r) for r in rows], more)

    async def checkpoints(request: Request) -> Any:
        job_id = request.path_params["job_id"]
        job = await threaded(jobs.store.job)(job_id)
        rows, more = await threaded(jobs.store.checkpoints)(job_id, _after(request), _limit(request))
        name = job["fine_tuned_model"] or fine_tuned_name(job["model"], job["suffix"], job_id)
        return page([checkpoint_object(r, name) for r in rows], more)

    schema = JobCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    route("/v1/fine_tuning/jobs", "POST", create, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": schema}}}})  # fmt: skip
    route("/v1/fine_tuning/jobs", "GET", list_jobs, ("after", "limit"))
    route("/v1/fine_tuning/jobs/{job_id}", "GET", get_job)
    route("/v1/fine_tuning/jobs/{job_id}/cancel", "POST", cancel)
    route("/v1/fine_tuning/jobs/{job_id}/events", "GET", events, ("after", "limit"))
    route("/v1/fine_tuning/jobs/{job_id}/checkpoints", "GET", checkpoints, ("after", "limit"))


def schema_models() -> tuple[type, ...]:
    """Request models whose definitions the OpenAPI document needs (see the front door's ``schema``)."""
    return (JobCreate,)
