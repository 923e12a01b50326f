"""Exponential backoff with jitter, shared by the uploader and the callback delivery."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before retry number ``attempt`` (1 = the first retry): ``base * 2**(attempt-1)``, capped at
    ``cap``, then scaled by a random factor in ``[1 - jitter, 1]`` so that many failures at once (storage
    or a receiver coming back) do not retry in lockstep."""

    base: float
    cap: float
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        exp = min(max(attempt, 1) - 1, 60)  # 2**60 s is long past any cap; avoids float overflow
        raw = min(self.cap, self.base * (2.0**exp))
        return raw * (1.0 - self.jitter * self.rng.random())
