"""At most ``image_work_concurrency`` requests of an API process work on pixels at once.

Region, info and profile requests read, reduce, decode and sort image pixels: each holds memory in
proportion to its image. Without a bound, 64 such requests at once took the API past 1.4 GB (and
malloc kept much of it afterwards). The waiting is done on the event loop, not in the thread pool,
so that waiting requests hold neither memory nor threads, and /healthz and the other routes keep
answering.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Callable, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")

_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = \
    weakref.WeakKeyDictionary()


def _semaphore(size: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _slots.get(loop)
    if sem is None:
        sem = _slots[loop] = asyncio.Semaphore(size)
    return sem


async def image_work(settings, fn: Callable[..., T], *args) -> T:
    """``fn(*args)`` in the thread pool once one of the process's image slots is free."""
    async with _semaphore(settings.image_work_concurrency):
        return await run_in_threadpool(fn, *args)


__all__ = ["image_work"]
