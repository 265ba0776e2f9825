"""The API's heavy work, kept from holding up its event loop: pixel work on niced threads, large
upload summaries in a niced child process.

The event loop answers every request's network side (``/healthz`` among them) in one thread. Two
things starved it on a loaded machine, although the work already ran in threads:

* **the GIL**: a summary that scans a model a line at a time holds it except for the moments the
  interpreter switches threads (every ``sys.getswitchinterval()``, 5 ms), so the loop waits that
  long every time it takes the GIL back (after each ``epoll``, ``send``, ``recv``): a 121 MB PDB's
  summary kept ``/healthz`` 200-700 ms. Summaries of uploads of ``upload_summary_process_bytes`` or
  more run in a child process (:func:`summarize_upload`), which shares no GIL with the loop;
* **the CPU**: with more busy threads than cores, the loop's thread waits its turn behind them.
  Image work (region, info, profile) runs on its own threads (:func:`pixel_work`), and those and the
  summary process run ``work_nice`` steps below the API's OS priority (Linux: niceness is per
  thread), so the scheduler runs the loop first when it wakes.

Both pools are made on first use and sized by the settings of that moment.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from jobs.settings import get_settings

_lock = threading.Lock()
_threads: ThreadPoolExecutor | None = None
_processes: ProcessPoolExecutor | None = None
#: the most summary processes at once (each holds its own bounded memory)
SUMMARY_PROCESSES = 2


def lower_priority(steps: int) -> None:
    """Lower the calling thread's OS priority by ``steps`` (at most to 19); no-op where that is
    not possible (an OS without per-thread niceness)."""
    if steps <= 0:
        return
    try:
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + steps))
    except (AttributeError, OSError):
        pass


def _pixel_threads() -> ThreadPoolExecutor:
    global _threads
    with _lock:
        if _threads is None:
            settings = get_settings()
            _threads = ThreadPoolExecutor(settings.image_work_concurrency,
                                          thread_name_prefix="bragg-pixels",
                                          initializer=lower_priority,
                                          initargs=(settings.work_nice,))
        return _threads


def pixel_work(fn):
    """``fn`` (a route's pixel work) runs on a niced thread of its own pool; the caller (a route's
    thread) waits for it without holding the GIL. Its exceptions are raised to the caller."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        return _pixel_threads().submit(fn, *args, **kwargs).result()
    return run


def _summary_processes() -> ProcessPoolExecutor:
    global _processes
    with _lock:
        if _processes is None:
            # spawn: the API has threads, which a fork would copy in whatever state they are
            _processes = ProcessPoolExecutor(SUMMARY_PROCESSES,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=os.nice,
                                             initargs=(get_settings().work_nice,))
        return _processes


def summarize_upload(settings, path, kind: str, size: int) -> dict:
    """``sim_core.inputs.summarize(path, kind)``: in this thread for a small file, in a child
    process for one of ``upload_summary_process_bytes`` or more (raises what summarize raises)."""
    from sim_core.inputs import summarize

    if size < settings.upload_summary_process_bytes:
        return summarize(path, kind)
    global _processes
    try:
        return _summary_processes().submit(summarize, os.fspath(path), kind).result()
    except BrokenProcessPool:
        # a child died (killed for its memory?): the next upload gets a fresh pool
        with _lock:
            _processes = None
        raise


def shutdown() -> None:
    """Stop the pools (the API's shutdown); they are made again on next use."""
    global _threads, _processes
    with _lock:
        threads, processes, _threads, _processes = _threads, _processes, None, None
    if processes is not None:
        processes.shutdown(wait=False, cancel_futures=True)
    if threads is not None:
        threads.shutdown(wait=False, cancel_futures=True)


__all__ = ["pixel_work", "summarize_upload", "lower_priority", "shutdown", "SUMMARY_PROCESSES"]
