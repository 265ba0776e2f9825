"""Facts about the machine a benchmark runs on (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_model() -> str | None:
    """The processor's model name from /proc/cpuinfo, where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


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
