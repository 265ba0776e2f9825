"""The API's heavy work kept from holding up its event loop: large upload summaries run in a child
process at a lower OS priority.

The event loop answers every request's network side (``/healthz`` among them) in one thread. A
summary that scans a model a line at a time in a thread of the API holds the GIL except when the
interpreter switches threads (every ``sys.getswitchinterval()``, 5 ms), so the loop waited up to
that long each time it took the GIL back (after each ``epoll``, ``recv``, ``send``): during a
121 MB PDB's summary ``/healthz`` took 150-740 ms. An upload of ``upload_summary_process_bytes`` or
more is summarized in a child process (:func:`summarize_upload`), which shares no GIL with the loop,
``work_nice`` steps below the API's OS priority, so the scheduler runs the API first.

(Pixel work stays on the API's threads: niced threads that hold the GIL part of the time were
descheduled while holding it on a busy machine, and the loop waited for them.)
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from jobs.settings import get_settings

_lock = threading.Lock()
_processes: ProcessPoolExecutor | None = None
#: the most summary processes at once (each holds its own bounded memory)
SUMMARY_PROCESSES = 2


def _summary_processes() -> ProcessPoolExecutor:
    global _processes
    with _lock:
        if _processes is None:
            # spawn: the API has threads, which a fork would copy in whatever state they are
            _processes = ProcessPoolExecutor(SUMMARY_PROCESSES,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_child_start,
                                             initargs=(get_settings().work_nice, os.getpid()))
        return _processes


def _child_start(nice: int, api_pid: int) -> None:
    """A summary process: ``nice`` steps below the API, and gone within a second of the API (an
    API killed, or stopped without its shutdown, must not leave its children running)."""
    os.nice(nice)

    def watch() -> None:
        while os.getppid() == api_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="api-watch", daemon=True).start()


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
    """Stop the summary processes (the API's shutdown); they are started again on next use."""
    global _processes
    with _lock:
        processes, _processes = _processes, None
    if processes is not None:
        processes.shutdown(wait=False, cancel_futures=True)


__all__ = ["summarize_upload", "shutdown", "SUMMARY_PROCESSES"]
