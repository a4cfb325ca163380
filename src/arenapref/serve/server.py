"""Running the app under uvicorn with a limit on how long a client may take to send its request headers.

Why here and not in the app: an ASGI app is only called once uvicorn has parsed the complete request line and
headers, so no middleware can see a client that sends them one byte at a time ("slowloris"). uvicorn has no
limit of its own for that phase: `timeout_keep_alive` only runs between requests and is cancelled by every
byte that arrives, and h11 limits the headers' size (`h11_max_incomplete_event_size`), not their time. So the
limit lives in the HTTP protocol object: a subclass of uvicorn's h11 protocol that starts a timer when a
connection opens or a new request's first byte arrives, stops it when h11 has the whole head, and otherwise
answers 408 and closes the connection (a connection that sent nothing is just closed). Each cut-off is counted
in the app's SlowClients, which /healthz shows. The body's time limit is the Gate's (serve/middleware.py).

The h11 protocol is used rather than httptools: the guard relies on h11's connection state, and both parse
far faster than a model scores.

    from arenapref.serve.server import run
    run(create_app(model, settings), settings, timeout_keep_alive=75, log_level="info")
"""

from __future__ import annotations

import json
import logging

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from arenapref.serve.middleware import SlowClients, log_event
from arenapref.serve.settings import ServeSettings


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head takes longer than `header_timeout` s."""

    header_timeout: float = 10.0
    slow_clients: SlowClients = SlowClients()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = None
        self._head_bytes = 0
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        self._head_bytes += len(data)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # h11 has the whole head (or gave up on it: 400)
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        pending = self.conn.trailing_data[0]  # a pipelined request's first bytes, read during the last response
        if self._head_timer is None and pending and not self.transport.is_closing() \
                and self.conn.their_state is h11.IDLE:
            self._arm()
            self._head_bytes = len(pending)

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        client = "%s:%d" % self.client if self.client else None
        if self._head_bytes:
            self.slow_clients.header_timeouts += 1
            log_event(logging.WARNING, "header_timeout", client=client, received_bytes=self._head_bytes,
                      header_timeout_s=self.header_timeout)
            # Written by hand: h11 only sends a response after it has parsed a request.
            body = json.dumps({"error": {
                "message": f"request headers not received within {self.header_timeout:g} s (header_timeout_s)",
                "type": "timeout", "code": 408, "limit": "header_timeout_s"}, "request_id": None}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        else:
            self.slow_clients.idle_closed += 1
        self.transport.close()


def protocol_for(settings: ServeSettings, slow_clients: SlowClients) -> type[HeaderTimeoutProtocol]:
    """A HeaderTimeoutProtocol class bound to these settings and counters (uvicorn instantiates it per connection)."""
    return type("ArenaprefHTTPProtocol", (HeaderTimeoutProtocol,),
                {"header_timeout": settings.header_timeout_s, "slow_clients": slow_clients})


def server_config(app, settings: ServeSettings, **uvicorn_options) -> uvicorn.Config:
    """uvicorn.Config for `app` (from create_app) with the header timeout; host and port default to the settings'.

    Any other uvicorn option (timeout_keep_alive, log_level, access_log, ...) passes through; `http` cannot,
    since the protocol is what enforces the timeout.
    """
    if "http" in uvicorn_options:
        raise TypeError("server_config sets uvicorn's `http` protocol itself (it enforces header_timeout_s)")
    slow_clients = getattr(getattr(app, "state", None), "slow_clients", None) or SlowClients()
    uvicorn_options.setdefault("host", settings.host)
    uvicorn_options.setdefault("port", settings.port)
    return uvicorn.Config(app, http=protocol_for(settings, slow_clients), **uvicorn_options)


def run(app, settings: ServeSettings, **uvicorn_options) -> None:
    """Serve `app` until interrupted, as uvicorn.run does, with the header timeout."""
    try:
        uvicorn.Server(server_config(app, settings, **uvicorn_options)).run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down on; uvicorn.run swallows it the same way
        pass
