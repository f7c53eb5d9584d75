"""Helpers shared by the benchmark scripts (standard library only: Avalanche's worker imports this from its own
virtual environment, where ``packnet`` is not installed)."""

from __future__ import annotations

import platform
import resource
import sys


def peak_rss_bytes() -> int:
    """This process's own peak resident set size so far.

    ``VmHWM`` from ``/proc/self/status`` where there is one: on Linux ``getrusage().ru_maxrss`` is
    ``max(VmHWM, the RSS the parent had when it forked us)`` (the kernel carries the old address space's high
    water mark over ``execve``), so a worker started by a driver that holds the data and torch would report at
    least the driver's RSS. ``VmHWM`` belongs to the worker's own address space. Elsewhere ``ru_maxrss`` (KiB on
    Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def cpu_model() -> str:
    """The CPU's model name (from ``/proc/cpuinfo``; ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
