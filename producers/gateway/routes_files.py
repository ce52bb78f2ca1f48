"""OpenAI's ``/v1/files``: upload (multipart, streamed into the store), list, retrieve, read
the content (streamed back), delete. Same keys, tenants and error shape as the OpenAI front
door: another tenant's file answers 404 like a missing one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from genq import constants as c
from genq.store.files import StoredFile
from producers.gateway.auth import current_principal
from producers.gateway.batch_objects import file_object, list_object
from producers.gateway.limits import enforce_rate_limit
from producers.gateway.openai_errors import OpenAIRoute
from producers.gateway.principal import Principal
from producers.gateway.state import Gateway, gateway_of
from producers.gateway.uploads import (
    FRAMING_ALLOWANCE_BYTES,
    UploadReader,
    multipart_boundary,
    too_large,
)
from schemas import InvalidRequest, NotFound

UPLOAD_PATH = "/v1/files"
UPLOAD_PURPOSES = ("batch",)
FILE_LIST_MAX = 10_000

router = APIRouter(
    prefix="/v1",
    tags=["openai"],
    route_class=OpenAIRoute,
    dependencies=[Depends(enforce_rate_limit)],
    include_in_schema=False,
)
Caller = Annotated[Principal, Depends(current_principal)]


def no_such_file(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", details=[{"field": "file_id"}])


def check_purpose(purpose: str | None) -> str:
    if not purpose:
        raise InvalidRequest(
            "purpose is required: upload batch input with purpose 'batch'",
            details=[{"field": "purpose", "code": "missing_required_parameter"}],
        )
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"purpose {purpose[:40]!r} is not supported: genq takes files with purpose 'batch'",
            details=[{"field": "purpose", "code": "invalid_value"}],
        )
    return purpose


@router.post("/files")
async def upload_file(request: Request, principal: Caller) -> JSONResponse:
    """Store an uploaded file a chunk at a time, as it arrives."""
    gateway = gateway_of(request)
    limit = gateway.settings.files_max_bytes
    boundary = multipart_boundary(request.headers.get("content-type"))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FRAMING_ALLOWANCE_BYTES:
        raise too_large(limit)
    reader = UploadReader(boundary, limit)
    upload = _Upload(gateway, principal.tenant)
    try:
        async for piece in request.stream():
            reader.feed(piece)
            if reader.filename is not None and "purpose" in reader.fields:
                check_purpose(reader.fields["purpose"])
            if len(reader.pending) >= c.FILE_CHUNK_BYTES:
                await upload.store(reader)
        reader.finish()
        purpose = check_purpose(reader.fields.get("purpose"))
        await upload.store(reader)
        stored = await upload.finish(reader, purpose)
    except BaseException:
        await upload.discard()
        raise
    return JSONResponse(file_object(stored))


class _Upload:
    """The file being written: created with its first chunk."""

    def __init__(self, gateway: Gateway, tenant: str) -> None:
        self.gateway, self.tenant = gateway, tenant
        self.file_id: str | None = None
        self.seq = 0

    async def store(self, reader: UploadReader) -> None:
        files = self.gateway.files
        if self.file_id is None:
            name = reader.filename or "upload.jsonl"
            purpose = reader.fields.get("purpose", "batch")
            self.file_id = await self.gateway.call(files.begin, self.tenant, name, purpose)
        if reader.pending:
            data = bytes(reader.pending)
            reader.pending.clear()
            await self.gateway.call(files.append, self.file_id, self.seq, data)
            self.seq += 1

    async def finish(self, reader: UploadReader, purpose: str) -> StoredFile:
        if self.file_id is None:
            await self.store(reader)
        assert self.file_id is not None
        return await self.gateway.call(
            self.gateway.files.finish, self.file_id, reader.file_bytes, purpose
        )

    async def discard(self) -> None:
        if self.file_id is not None:
            await self.gateway.call(self.gateway.files.discard, self.file_id)


@router.get("/files")
async def list_files(
    request: Request,
    principal: Caller,
    purpose: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=FILE_LIST_MAX)] = FILE_LIST_MAX,
    order: Literal["asc", "desc"] = "desc",
) -> JSONResponse:
    """The caller's files, newest first (``order=asc``: oldest), ``after`` a file id."""
    gateway = gateway_of(request)
    found = await gateway.call(
        lambda: gateway.files.page(
            principal.scope,
            purpose=purpose,
            after=after,
            limit=limit + 1,
            newest_first=order == "desc",
        )
    )
    data = [file_object(f) for f in found[:limit]]
    return JSONResponse(list_object(data, has_more=len(found) > limit))


@router.get("/files/{file_id}")
async def retrieve_file(request: Request, principal: Caller, file_id: str) -> JSONResponse:
    gateway = gateway_of(request)
    stored = await gateway.call(gateway.files.get, file_id, principal.scope)
    if stored is None:
        raise no_such_file(file_id)
    return JSONResponse(file_object(stored))


@router.get("/files/{file_id}/content")
async def file_content(request: Request, principal: Caller, file_id: str) -> StreamingResponse:
    """The file's bytes, streamed a stored chunk at a time."""
    gateway = gateway_of(request)
    stored = await gateway.call(gateway.files.get, file_id, principal.scope)
    if stored is None:
        raise no_such_file(file_id)

    async def content() -> AsyncIterator[bytes]:
        seq = 0
        while (data := await gateway.call(gateway.files.chunk, stored.id, seq)) is not None:
            yield data
            seq += 1

    headers = {"Content-Length": str(stored.bytes)}
    return StreamingResponse(content(), media_type="application/octet-stream", headers=headers)


@router.delete("/files/{file_id}")
async def delete_file(request: Request, principal: Caller, file_id: str) -> JSONResponse:
    gateway = gateway_of(request)
    if not await gateway.call(gateway.files.delete, file_id, principal.scope):
        raise no_such_file(file_id)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})
