"""Fixtures shared by the callback and recording-output tests: a fake clock, a secret box, a real HTTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet

from emberrtc.domain.clock import ManualClock
from emberrtc.domain.secrets import SecretBox
from tests.support.http_receiver import HttpReceiver


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    r = await HttpReceiver().start()
    try:
        yield r
    finally:
        await r.stop()
