"""``create_gateway(settings)``: the FastAPI app other services use genq through over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from genq.metrics import build_registry
from genq.settings import Settings
from producers.gateway import (
    routes_batches,
    routes_dead_letters,
    routes_files,
    routes_health,
    routes_jobs,
    routes_metrics,
    routes_openai,
    routes_responses,
    routes_runtimes,
    routes_webhooks,
)
from producers.gateway.errors import install_error_handlers
from producers.gateway.limits import BodySizeLimit
from producers.gateway.state import open_gateway
from producers.submission import WebhookCheck
from producers.webhooks import webhook_submit_check
from schemas import JobRequest

TITLE = "genq gateway"
VERSION = "1"
DESCRIPTION = (
    "Submit LLM generation jobs, poll or long-poll them, stream their tokens with resume, "
    "cancel them. Authenticate with `Authorization: Bearer genq_…`. Every error is "
    '`{"error": {"code", "message", "details"}}` with a stable code.'
)


def create_gateway(settings: Settings, *, webhook_check: WebhookCheck | None = None) -> FastAPI:
    """The gateway app for ``settings``. Nothing connects until its lifespan starts.

    ``webhook_check`` vets each job's ``webhook_url`` before the job is accepted (raise
    ``InvalidRequest`` to refuse it); pass the SSRF guard here. Without it only the schema's
    http/https scheme check applies.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        gateway = open_gateway(settings, webhook_check)
        gateway.start()
        registry, collector = build_registry(settings)
        try:
            yield {"gateway": gateway, "metrics": registry}
        finally:
            collector.close()
            await gateway.aclose()

    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    # An upload streams into the store, and its route enforces GENQ_FILES_MAX_BYTES itself.
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, streamed=[routes_files.UPLOAD_PATH]
    )
    app.include_router(routes_health.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_dead_letters.router)
    app.include_router(routes_runtimes.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_openai.router)
    app.include_router(routes_files.router)
    app.include_router(routes_batches.router)
    app.include_router(routes_responses.router)
    app.openapi = _openapi_builder(app)  # type: ignore[method-assign]
    return app


def gateway_from_environment() -> FastAPI:
    """The gateway as ``genq gateway`` serves it: settings from the environment (``GENQ_*``).

    uvicorn calls this in each worker process (``factory=True``).
    """
    settings = Settings()
    # The same check GenqClient applies: a signing secret, and the SSRF guard on the URL.
    return create_gateway(settings, webhook_check=webhook_submit_check(settings))


def _openapi_builder(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema plus ``JobRequest``, which ``POST /v1/jobs`` parses itself (so that
    content type, JSON syntax and idempotency are checked in genq's terms)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        request_schema = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in request_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["JobRequest"] = request_schema
        _validation_is_400(schema)
        app.openapi_schema = schema
        return schema

    return build


def _validation_is_400(schema: dict[str, Any]) -> None:
    """FastAPI documents its validation errors as 422; genq answers them 400 ``invalid_request``."""
    bad_request = {
        "description": "Bad Request",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", bad_request)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
