"""Resident memory of the current process, as the benchmarks report it (Linux ``/proc``)."""

from __future__ import annotations

import os

GB = 1e9  # the benchmarks' memory unit


def peak_rss_bytes() -> int:
    """Peak resident set size of this process, from ``VmHWM`` in ``/proc/self/status``.

    Not ``getrusage().ru_maxrss``: Linux carries that over from the parent
    across fork + exec, so a worker started by a big process (``make bench``
    after the snapshot benchmark, ~1 GB) would report the parent's peak as
    its own.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line (not Linux?)")


def current_rss_bytes() -> int:
    """Resident set size of this process now, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_gb() -> float:
    """:func:`peak_rss_bytes` in GB."""
    return peak_rss_bytes() / GB


def current_rss_gb() -> float:
    """:func:`current_rss_bytes` in GB."""
    return current_rss_bytes() / GB
