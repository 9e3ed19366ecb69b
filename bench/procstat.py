"""Read a process's CPU time and memory from /proc, and this process's own CPU time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
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


@dataclass
class CpuSample:
    """CPU seconds of the server and of the load generator at one wall-clock instant."""

    wall: float
    server: float
    generator: float


class CpuMeter:
    """Before/after CPU accounting for one measured interval."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def sample(self) -> CpuSample:
        import time

        return CpuSample(time.monotonic(), cpu_seconds(self.pid), own_cpu_seconds())

    @staticmethod
    def delta(a: CpuSample, b: CpuSample) -> tuple[float, float, float]:
        """(wall seconds, server CPU seconds, generator CPU seconds) between two samples."""
        return b.wall - a.wall, b.server - a.server, b.generator - a.generator
