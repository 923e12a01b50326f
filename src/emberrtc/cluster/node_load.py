"""What a node reports as its load in each heartbeat: participants, rooms, recording workers, CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The module every recording worker process runs (``recording.supervisor`` starts ``python -m`` it).
_WORKER_MODULE = b"emberrtc.recording.worker"


@dataclass(frozen=True)
class NodeLoad:
    #: Users in rooms this node hosts.
    participants: int = 0
    #: Rooms this node hosts with anybody in them.
    rooms: int = 0
    #: Recording worker processes this node runs.
    recording_workers: int = 0
    #: The machine's CPU in use since the previous heartbeat, 0-100 (%).
    cpu: float = 0.0


class CpuMeter:
    """The machine's busy share of CPU time between two readings of ``/proc/stat`` (Linux)."""

    def __init__(self, stat: Path = Path("/proc/stat")) -> None:
        self._stat = stat
        self._last = self._read()

    def _read(self) -> tuple[int, int] | None:
        try:
            fields = self._stat.read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        values = [int(v) for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    def percent(self) -> float:
        """Busy % since the previous call (0 when ``/proc/stat`` cannot be read)."""
        now, last = self._read(), self._last
        self._last = now
        if now is None or last is None or now[0] <= last[0]:
            return 0.0
        total, idle = now[0] - last[0], now[1] - last[1]
        return round(100.0 * (total - idle) / total, 1)


def recording_workers(parent: int | None = None, proc: Path = Path("/proc")) -> int:
    """How many recording worker processes are children of ``parent`` (this process by default)."""
    parent = os.getpid() if parent is None else parent
    count = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # ``pid (comm) state ppid ...``: comm may hold spaces, so split after its closing parenthesis.
            stat = (entry / "stat").read_bytes()
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            if ppid == parent and _WORKER_MODULE in (entry / "cmdline").read_bytes():
                count += 1
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not readable
    return count
