"""Peak resident memory of the current process, as the benchmarks report it."""

from __future__ import annotations


def peak_rss_gb() -> float:
    """Peak resident set size of this process in GB (10^9 bytes), from Linux's ``VmHWM``.

    Not ``getrusage().ru_maxrss``: Linux carries that over from the parent
    across fork + exec, so a worker started by a big process (``make bench``
    after the snapshot benchmark, ~1 GB) would report the parent's peak as
    its own.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line (not Linux?)")
