"""At most ``image_work_concurrency`` image requests of an API process run at once.

Region, info and profile requests (``/v1/jobs/{id}/image``, ``.../image/info``,
``.../image/profile`` and the same of uploaded images) read, reduce, decode and sort pixels: each
holds memory in proportion to its image, and each occupies threads of the pool (its dependencies'
Redis reads, then its work). Without a bound, 64 such requests at once took the API past 1.4 GB
(and malloc kept much of it afterwards) and /healthz to 8.7 s. This ASGI middleware lets a request
to those paths in only once a slot is free; the others wait on the event loop, before anything of
theirs runs, holding neither a thread nor memory.
"""

from __future__ import annotations

import asyncio
import re
import weakref

#: the image routes of a job and of an uploaded image
IMAGE_PATHS = re.compile(r"^/v1/(jobs|files)/[^/]+/image(/info|/profile)?$")


class ImageWorkGate:
    def __init__(self, app, ctx_of):
        self.app = app
        self.ctx_of = ctx_of  # () -> AppContext (its settings)
        self._slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = \
            weakref.WeakKeyDictionary()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._slots.get(loop)
        if sem is None:
            sem = self._slots[loop] = asyncio.Semaphore(
                self.ctx_of().settings.image_work_concurrency)
        return sem

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not IMAGE_PATHS.match(scope["path"]):
            return await self.app(scope, receive, send)
        async with self._semaphore():
            await self.app(scope, receive, send)


__all__ = ["ImageWorkGate", "IMAGE_PATHS"]
