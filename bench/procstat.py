"""Read a process's CPU time and memory from /proc, and this process's own CPU time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU seconds used by ``pid`` (all its live threads, or only thread ``tid``).

    Read from the scheduler's nanosecond runtime (``se.sum_exec_runtime`` in
    ``/proc/PID/task/TID/sched``): utime + stime in ``/proc/PID/stat`` count whole clock
    ticks (10 ms), so a short measured interval could read as no CPU at all. A kernel
    without that file gets the tick count instead. Threads that have exited are not
    counted; the servers measured keep their threads for their lifetime."""
    tids = [tid] if tid is not None else _tids(pid)
    total = 0.0
    for t in tids:
        runtime = _sched_runtime(pid, t)
        if runtime is None:
            return _stat_seconds(pid, tid)
        total += runtime
    return total


def _tids(pid: int) -> list[int]:
    return [int(name) for name in os.listdir(f"/proc/{pid}/task")]


def _sched_runtime(pid: int, tid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/task/{tid}/sched").read_text()
    except FileNotFoundError:
        return 0.0  # the thread ended between the listing and the read
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("se.sum_exec_runtime"):
            return float(line.split(":")[1]) / 1000  # milliseconds
    return None


def _stat_seconds(pid: int, tid: int | None) -> float:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def cpu_busy_seconds() -> dict[int, float]:
    """Busy (non-idle, non-iowait) seconds of each CPU since boot, from /proc/stat."""
    out: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            v = [int(x) for x in values]
            out[int(name[3:])] = (sum(v[:8]) - v[3] - v[4]) / CLOCK_TICKS
    return out


@dataclass
class CpuSample:
    """CPU seconds of the server and of the load generator at one wall-clock instant, and
    how busy CPU 0 (the server's) and CPU 1 (the generator's) were in total."""

    wall: float
    server: float
    generator: float
    cpu0: float = 0.0
    cpu1: float = 0.0


def others_share(a: CpuSample, b: CpuSample) -> tuple[float, float]:
    """Share of CPU 0 and of CPU 1 that other processes used between two samples: the noise
    from whatever else runs on the machine."""
    wall = b.wall - a.wall
    if wall <= 0:
        return 0.0, 0.0
    cpu0 = (b.cpu0 - a.cpu0) - (b.server - a.server)
    cpu1 = (b.cpu1 - a.cpu1) - (b.generator - a.generator)
    return max(cpu0, 0.0) / wall, max(cpu1, 0.0) / wall


class CpuMeter:
    """Before/after CPU accounting for one measured interval."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def sample(self) -> CpuSample:
        import time

        busy = cpu_busy_seconds()
        return CpuSample(
            time.monotonic(),
            cpu_seconds(self.pid),
            own_cpu_seconds(),
            busy.get(0, 0.0),
            busy.get(1, 0.0),
        )

    @staticmethod
    def delta(a: CpuSample, b: CpuSample) -> tuple[float, float, float]:
        """(wall seconds, server CPU seconds, generator CPU seconds) between two samples."""
        return b.wall - a.wall, b.server - a.server, b.generator - a.generator
