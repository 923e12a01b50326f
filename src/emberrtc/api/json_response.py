"""The API's JSON responses, serialised with orjson.

Starlette's ``JSONResponse`` runs the standard library's encoder, a tenth of a POST's event-loop time in
``bench/api.py``; orjson gives the same JSON (UTF-8, compact, keys in insertion order) several times
faster. Bodies here are plain dicts, lists, strings, numbers, booleans and None.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
