"""The figures of ``bench/cluster.py`` (percentiles, spread, the redirected/direct summary), without a cluster."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.bench import load_bench

bench = load_bench("cluster")


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.95, 1.0])
def test_percentile_interpolates_between_ranks_as_numpy(q: float) -> None:
    values = [7.0, 1.0, 3.0, 10.0, 4.0, 2.5, 8.0]
    assert bench.percentile(values, q) == pytest.approx(float(np.percentile(values, 100 * q)))


def test_percentile_of_known_values() -> None:
    ten = [float(v) for v in range(1, 11)]
    assert bench.percentile(ten, 0.5) == 5.5
    assert bench.percentile(ten, 0.95) == pytest.approx(9.55)
    assert bench.percentile([42.0], 0.95) == 42.0


def test_percentile_refuses_nothing_and_quantiles_out_of_range() -> None:
    with pytest.raises(ValueError):
        bench.percentile([], 0.5)
    with pytest.raises(ValueError):
        bench.percentile([1.0], 1.5)


def test_spread_is_max_over_min_of_every_node() -> None:
    nodes = ["node-1", "node-2", "node-3"]
    assert bench.spread({"node-1": 40, "node-2": 40, "node-3": 40}, nodes) == 1.0
    assert bench.spread({"node-1": 6, "node-2": 4, "node-3": 5}, nodes) == 1.5
    # A node nobody reached counts as empty: the spread is unbounded, not taken over the others only.
    assert math.isinf(bench.spread({"node-1": 3, "node-2": 3}, nodes))
    assert bench.spread({}, nodes) == 1.0


def _join(room: str, index: int, redirected: bool, first_frame: float | None, live: bool = True) -> object:
    return bench.Join(room, f"u{index}", index, "node-1", "node-2" if redirected else "node-1", redirected,
                      0.02, first_frame, live)  # fmt: skip


def test_summary_separates_redirected_from_direct_joins_and_leaves_out_the_untimed() -> None:
    joins = [
        _join("a", 0, True, None),  # the room's first: nobody to see
        _join("a", 1, True, 0.300),
        _join("a", 2, True, 0.500),
        _join("a", 3, False, 0.200),
        _join("b", 0, False, None),
        _join("b", 1, False, 0.400),
        _join("b", 2, True, 9.000, live=False),  # waited for a camera not yet live: counted apart
    ]
    figures = bench.summary(joins)
    assert figures["redirected"]["n"] == 2
    assert figures["redirected"]["p50"] == pytest.approx(400.0)
    assert figures["redirected"]["p95"] == pytest.approx(490.0)
    assert figures["redirected"]["joins"] == 4
    assert figures["direct"]["n"] == 2
    assert figures["direct"]["p50"] == pytest.approx(300.0)
    assert figures["direct"]["joins"] == 3
    assert figures["not_live_at_join"] == 1
