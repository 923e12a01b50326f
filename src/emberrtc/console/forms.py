"""HTML forms: reading ``application/x-www-form-urlencoded`` bodies, and checking them with the API's own
request models, so a form gets the API's error (code and message) for the field it is about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from pydantic import BaseModel, ValidationError

from emberrtc.api.errors import field_error
from emberrtc.domain.errors import EmberError, MalformedRequestBody

M = TypeVar("M", bound=BaseModel)

#: The largest form the console takes (its forms are a few hundred bytes; the edge caps bodies too).
MAX_FORM_BYTES = 64 * 1024


class Form:
    """A submitted form: each field's values in order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in pairs:
            self._values.setdefault(key, []).append(value)

    def get(self, name: str, default: str = "") -> str:
        values = self._values.get(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        return list(self._values.get(name, []))

    def optional(self, name: str) -> str | None:
        """The field's value, stripped; None when absent or blank."""
        value = self.get(name).strip()
        return value or None


async def read_form(request: Request) -> Form:
    """The request's urlencoded form; :class:`MalformedRequestBody` for anything else."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise MalformedRequestBody("the console takes application/x-www-form-urlencoded forms")
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise MalformedRequestBody(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequestBody("the form could not be read") from exc
    return Form(pairs)


@dataclass(frozen=True)
class FormError:
    """An error to show on a form: the catalogue's error, and the field it is about (dotted, as the API
    names it, e.g. ``mp4_config.record_cycle``; ``body`` for the form as a whole)."""

    code: str
    message: str
    field: str = "body"

    @classmethod
    def of(cls, exc: EmberError, field: str = "body") -> FormError:
        return cls(exc.code, exc.message, field)

    def about(self, name: str) -> bool:
        """Is the error about the field ``name`` (or an item of it: ``record_formats.0``)?"""
        return self.field == name or self.field.startswith(name + ".")


def validate(model: type[M], data: dict[str, Any]) -> M | FormError:
    """``data`` checked by the API's request model, or the error the API would answer, with its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        err, field = field_error(errors)
        return FormError.of(err, field)
