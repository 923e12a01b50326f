"""A node's load as its heartbeat reports it: recording workers among its children, the machine's CPU."""

from __future__ import annotations

import subprocess
import sys
import time

from emberrtc.cluster.node_load import CpuMeter, recording_workers


def test_recording_workers_are_the_children_running_the_worker_module() -> None:
    before = recording_workers()
    # A child whose command line names the worker module, as the supervisor's are (python -m ...), and one
    # that does not.
    code = "import time; time.sleep(30)"
    worker = subprocess.Popen([sys.executable, "-c", code, "-m", "emberrtc.recording.worker"])
    other = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 5
        while recording_workers() != before + 1:
            assert time.monotonic() < deadline, "the worker child is not counted"
            time.sleep(0.02)
    finally:
        for p in (worker, other):
            p.kill()
            p.wait()
    assert recording_workers() == before


def test_cpu_is_the_busy_share_since_the_last_reading() -> None:
    meter = CpuMeter()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        pass  # busy: at least one core's share of the machine
    busy = meter.percent()
    assert 0 < busy <= 100
