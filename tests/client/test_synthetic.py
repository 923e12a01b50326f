"""The synthetic tracks' real-time pacing: on time, items come one period apart; after a pause of the
consumer (a client rejoining), the track goes on from the current item instead of bursting the backlog."""

from __future__ import annotations

import pytest

from emberrtc.client import synthetic


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    t = FakeTime()
    monkeypatch.setattr(synthetic.time, "monotonic", t.monotonic)
    monkeypatch.setattr(synthetic.asyncio, "sleep", t.sleep)
    return t


async def test_items_are_paced_one_period_apart(fake: FakeTime) -> None:
    paced = synthetic._Paced(0.02)
    assert [await paced.next() for _ in range(4)] == [0, 1, 2, 3]
    assert fake.slept == pytest.approx([0.02, 0.02, 0.02])


async def test_a_short_lag_is_caught_up_but_a_pause_is_skipped(fake: FakeTime) -> None:
    paced = synthetic._Paced(0.02)
    await paced.next()
    fake.now += 0.5  # a busy consumer: the missed items still come, at once
    assert [await paced.next() for _ in range(3)] == [1, 2, 3] and fake.slept == []
    fake.now += 5.0  # nobody read for 5 s: the next item is the one due now, then pacing resumes
    assert await paced.next() == int((fake.now - 100.0) / 0.02)
    before = paced.count
    assert await paced.next() == before + 1 and all(s <= 0.02 + 1e-9 for s in fake.slept)
