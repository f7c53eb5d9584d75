"""Helpers shared by the benchmark scripts (standard library and torch only, torch imported where it is used:
Avalanche's worker imports this from its own virtual environment, where ``packnet`` is not installed)."""

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


def sync(device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously), so a timer measures it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(device) -> None:
    """One throwaway SGD step before anything is timed, identical in every worker: torch imports
    ``torch._dynamo`` and ~900 modules when the first optimizer is constructed (seconds), and the first CUDA
    kernels initialise the context. Neither is any method's cost."""
    import torch

    layer = torch.nn.Linear(8, 2).to(device)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(layer(torch.randn(4, 8, device=device)),
                                          torch.zeros(4, dtype=torch.long, device=device)).backward()
        opt.step()
    sync(device)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
