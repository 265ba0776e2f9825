"""Process-level tuning for CPU renders: the heap, OpenMP's waiting, and the thread count.

PyTorch's CPU tensors come from malloc. A render allocates and frees many same-sized temporaries per
chunk; with glibc's defaults each of those megabyte-sized blocks is mapped fresh from the kernel and
page-faulted in again, which costs more than the arithmetic on it. Raising glibc's mmap and trim
thresholds keeps freed blocks in the heap for reuse. It is applied once per process, only on glibc,
and can be switched off with ``BRAGG_MALLOC_TUNING=0``.

OpenMP threads that wait for work spin by default (libgomp: up to ~0.3 s). On an idle machine that
is fastest; when other processes busy the cores, a spinning thread burns the time slice its
partner needs and a render becomes 5-10x slower (measured). ``openmp_environment`` bounds the spin
(``GOMP_SPINCOUNT``, a few microseconds' worth, then the thread sleeps); it must run before torch
loads its OpenMP runtime, so ``nanobragg`` and ``nanobragg-server`` call it first thing.

``nanobragg`` and ``nanobragg-server`` also choose the threads of each CPU render from how busy other
processes keep the cores (``CpuMeter``, ``choose_threads``): for the compiled kernel all cores
unless the others' work alone oversubscribes them more than twice, fewer beyond that; for the eager
engine only the cores the others leave idle. An explicit ``OMP_NUM_THREADS`` turns that choice off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from typing import Callable, Optional

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator(limit_bytes: int = 1 << 30) -> bool:
    """Keep freed blocks up to ``limit_bytes`` in the heap; True when the setting took effect."""
    global _done
    if _done:
        return True
    if os.environ.get("BRAGG_MALLOC_TUNING", "1") in ("0", "false", "no"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(limit_bytes))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(2 * limit_bytes)))
    _done = ok
    return ok


#: spin iterations before an idle OpenMP thread sleeps (libgomp's default is 300,000)
SPINCOUNT = "20000"


def openmp_environment(env=None) -> None:
    """Bound OpenMP's spin-waiting in ``env`` (default: this process's environment) unless the
    user chose a wait policy or a spin count. Call it before torch is imported."""
    env = os.environ if env is None else env
    if "OMP_WAIT_POLICY" not in env:
        env.setdefault("GOMP_SPINCOUNT", SPINCOUNT)


def _busy_seconds() -> Optional[float]:
    """CPU seconds spent by the whole machine (every core, every process) since boot."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _process_seconds(pid: int) -> float:
    """CPU seconds process ``pid`` has used (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # after the command name: state is field 3, utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """How many cores other processes keep busy: the machine's CPU time from /proc/stat minus this
    process's own, over the time since a mark. Costs two small reads; no sampling thread. A server
    marks it now and then while idle and after each request; the window used is the latest mark
    old enough to say something, else the one before it."""

    def __init__(self):
        self._marks = [self._snapshot()]
        #: a process whose CPU time is not other processes' work (the server's current client,
        #: whose start-up falls in the window)
        self.guest: Optional[int] = None

    @staticmethod
    def _snapshot():
        return time.monotonic(), _busy_seconds(), _own_seconds()

    def mark(self) -> None:
        self._marks = [self._marks[-1], self._snapshot()]

    def others_busy(self, min_window: float = 0.2) -> Optional[float]:
        """Cores busy with other processes' work over the window (None when it cannot tell)."""
        now_t, busy, own = self._snapshot()
        guest = _process_seconds(self.guest) if self.guest else 0.0
        for t, busy0, own0 in reversed(self._marks):
            wall = now_t - t
            if wall >= min_window and busy is not None and busy0 is not None:
                return max(0.0, (busy - busy0 - (own - own0) - guest) / wall)
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


#: other processes' work, in multiples of the cores, beyond which a render takes fewer threads
OVERSUBSCRIBED = 2.0


def choose_threads(others_busy: Optional[float], eager: bool = False) -> int:
    """Threads for a render: every core this process may use unless other processes' work alone
    oversubscribes the cores more than ``OVERSUBSCRIBED`` times; then one fewer for each core's
    worth beyond that, at least one.

    An ``eager`` render (the engine's tensor operations, not the compiled kernel) takes only the
    cores the others leave idle, at least one: it runs hundreds of short parallel regions, and
    each ends when its slowest thread does, so a thread that shares its core with a busy process
    holds up every region (simple_1024 float32, AMD EPYC, 2 cores: with one busy process 0.30 s
    on two threads against 0.09 s on one, with two busy 0.66 against 0.17 s; 0.07 s quiet).

    The scheduler shares a busy core between threads, not processes: with as many threads as cores
    a render gets the share the C program's OpenMP threads get (measured with two busy processes on
    the 2 cores: one thread made a served render 5x slower, the C program 2.3x). Far beyond that,
    each extra thread mostly waits at the end of a chunk for its descheduled partners (measured at
    load 8 on 2 cores, passive waiting: one thread 2.6 s, two 3.0 s).
    """
    cores = usable_cores()
    if others_busy is None:
        return cores
    if eager:
        idle = (os.cpu_count() or cores) - others_busy
        return max(1, min(cores, int(idle + 0.5)))
    excess = others_busy - OVERSUBSCRIBED * (os.cpu_count() or cores)
    return max(1, min(cores, cores - int(excess + 0.5))) if excess > 0 else cores


_thread_policy: Optional[Callable[..., Optional[int]]] = None
#: the threads the policy chose for the last render (for the server's log)
last_choice: Optional[int] = None


def set_thread_policy(policy: Optional[Callable[..., Optional[int]]]) -> None:
    """Install the function a CPU render asks for its thread count (None: leave torch's); it is
    called with ``eager=`` whether the render runs the eager engine."""
    global _thread_policy
    _thread_policy = policy


def apply_thread_policy(eager: bool = False) -> Optional[int]:
    """Set torch's threads for the render about to start, when a policy is installed and the user
    did not fix them with OMP_NUM_THREADS; returns the count set."""
    global last_choice
    if _thread_policy is None or os.environ.get("OMP_NUM_THREADS"):
        return None
    n = last_choice = _thread_policy(eager=eager)
    if n:
        import torch
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return n
