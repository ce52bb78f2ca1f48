"""Turn pydantic's validation errors into genq's ``invalid_request`` with field details."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.errors import InvalidRequest

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe(exc: ValidationError) -> list[dict[str, Any]]:
    """One ``{"field", "message"}`` per problem, with dotted field paths."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in err["loc"]) or "body"
        details.append({"field": field, "message": err["msg"]})
    return details


def parse(model: type[ModelT], data: object) -> ModelT:
    """Validate ``data`` as ``model`` or raise ``InvalidRequest`` naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = describe(exc)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        raise InvalidRequest(f"invalid {model.__name__}: {summary}", details=details) from exc
