"""Facts about the machine a benchmark runs on (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path


def _cpuinfo(*keys: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of ``keys``, where there is
    one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(keys):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str | None:
    """The processor's model name from /proc/cpuinfo, where there is one."""
    return _cpuinfo("model name")


def cpu_flags() -> set[str]:
    return set((_cpuinfo("flags", "Features") or "").split())


def vector_extension() -> str | None:
    """The widest x86 vector extension the processor has (avx512, avx2, avx, sse4), or NEON/SVE
    on ARM; None when /proc/cpuinfo does not say."""
    flags = cpu_flags()
    for name, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"),
                       ("sse4", "sse4_2"), ("sve", "sve"), ("neon", "asimd")):
        if flag in flags:
            return name
    return None


def load_average() -> float | None:
    """The one-minute load average."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe() -> str:
    """One line for a benchmark's output: the processor, its vector extension, the CPUs, the
    load averages and Python (ratios between runs on different processors differ by 2x)."""
    import sys

    load = os.getloadavg()
    return (f"{cpu_model() or 'unknown CPU'} ({vector_extension() or 'no known vector extension'}),"
            f" {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
            f"Python {sys.version.split()[0]}")
