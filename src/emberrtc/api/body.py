"""Request bodies validated straight from their bytes, for the hottest write endpoints.

FastAPI parses a JSON body with the standard library, then validates the Python objects field by field
through its own machinery: in ``bench/api.py`` that was a seventh of a ``POST /record-rules``.
``Model.model_validate_json`` does both in one pass in pydantic-core. :func:`parse_body` keeps what
FastAPI does around it, so clients see no difference: the same content-type rule, and the same error
shapes (``loc`` starting with ``"body"``) for :func:`emberrtc.api.errors.validation_error` to map to
RTC codes. An endpoint using it declares its body (and path parameters) in OpenAPI with :func:`body_doc`.
"""

from __future__ import annotations

import email.message
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule: no content type, ``application/json`` or ``application/*+json``."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def parse_body(model: type[M], request: Request) -> M:
    """The request's body as ``model``, or :class:`RequestValidationError` as FastAPI would raise it."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    if not _is_json(request.headers.get("content-type")):
        error = {"type": "model_attributes_type", "loc": ("body",), "msg": "Input should be a valid dictionary"}
        raise RequestValidationError([{**error, "input": raw}])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


#: Models declared by :func:`body_doc`; the app's OpenAPI document puts their schemas in its components.
DOCUMENTED_BODIES: set[type[BaseModel]] = set()


def body_doc(model: type[BaseModel], *path_params: str) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the required JSON body (its schema goes in the components,
    ``DOCUMENTED_BODIES``), and the string ``path_params`` that the endpoint reads from
    ``request.path_params`` rather than as arguments (FastAPI's parameter solving costs as much per
    request as validating the whole body)."""
    DOCUMENTED_BODIES.add(model)
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in path_params]
    doc: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}
    if parameters:
        doc["parameters"] = parameters
    return doc
