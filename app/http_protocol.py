"""uvicorn's HTTP/1.1 protocol with the time and connection bounds it lacks.

uvicorn closes a connection that stays idle after a response (``timeout_keep_alive``), but not
one that never sends a request, sends its headers a byte at a time, or stops in the middle of its
body: thousands of such connections stay open for ever. Here, per connection:

* at most ``http_max_connections`` connections are open in a process: one more is closed as it is
  accepted, before uvicorn sets it up (the event loop accepts at most ``http_backlog`` in one
  turn: app/http_server.py);
* a request's headers must arrive within ``http_header_timeout_s`` of the connection (or of the
  first byte after the previous response): otherwise a ``408`` and the connection is closed;
* a request's body may pause at most ``http_body_timeout_s`` between two pieces (while the app
  reads it): otherwise the connection is closed (the route sees the client gone).
"""

from __future__ import annotations

import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

from jobs.settings import get_settings

log = logging.getLogger("bragg.api")

_TIMEOUT_BODY = b'{"detail": "the request headers took too long"}'
_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: "
                b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


_refusals = {"count": 0, "logged_at": float("-inf")}


def _refused(now: float, limit: int) -> None:
    """Count a connection closed at accept; log the count at most every 10 s (a flood of them
    must not become a flood of log lines)."""
    _refusals["count"] += 1
    if now - _refusals["logged_at"] >= 10:
        log.warning("%d connection(s) closed as they were accepted: the limit "
                    "http_max_connections (%d) was reached", _refusals["count"], limit)
        _refusals.update(count=0, logged_at=now)


class BoundedH11Protocol(H11Protocol):
    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()
        self._header_timeout = settings.http_header_timeout_s
        self._body_timeout = settings.http_body_timeout_s
        self._max_connections = settings.http_max_connections
        self._deadline = None
        self._phase: str | None = None  # "headers" or "body" while a deadline is armed
        self._refused = False  # closed as it was accepted (over http_max_connections)

    def connection_made(self, transport) -> None:
        if len(self.connections) >= self._max_connections:
            # refused before uvicorn's set-up (addresses, flow control): a flood of connections
            # costs the event loop as little as it can; abort: no FIN handshake, no TIME_WAIT
            self._refused = True
            _refused(self.loop.time(), self._max_connections)
            transport.abort()
            return
        super().connection_made(transport)
        self._arm("headers", self._header_timeout)

    def connection_lost(self, exc) -> None:
        if self._refused:
            return
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        self._disarm()  # idle from now on: uvicorn's keep-alive timeout
        super().on_response_complete()

    def _follow(self) -> None:
        """Arm the deadline the request's state calls for after new bytes arrived."""
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            if self._phase != "headers":  # the headers' deadline runs from their first byte
                self._arm("headers", self._header_timeout)
        elif cycle.more_body:
            self._arm("body", self._body_timeout)  # from the latest piece
        else:
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _expire(self) -> None:
        phase, self._deadline, self._phase = self._phase, None, None
        if self.transport is None or self.transport.is_closing():
            return
        if phase == "body" and self.flow.read_paused:
            # the app has not read what came yet: the client is not the one waiting
            self._arm("body", self._body_timeout)
            return
        log.debug("closing a connection from %s: its request %s took longer than %s s",
                 self.client, "headers" if phase == "headers" else "body paused",
                 self._header_timeout if phase == "headers" else self._body_timeout)
        if phase == "headers":
            self.transport.write(_TIMEOUT_408)
        self.transport.close()


__all__ = ["BoundedH11Protocol"]
