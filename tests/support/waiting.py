"""Waiting on a condition with a deadline (never a bare sleep as synchronisation)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(predicate: Callable[[], Any | Awaitable[Any]], *, within: float = 15.0, what: str = "") -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def wait_for(probe: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Blocking twin of :func:`until`, for tests that drive a server in another thread (or process)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
