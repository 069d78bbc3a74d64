"""A small HTTP/1.1 server on h11 and asyncio streams, for the emulators' platform endpoints.

ASGI servers hide two things a platform endpoint needs: the trailers after a chunked
request body (Lambda's Runtime API reports mid-stream errors there) and a way to cut a
response off mid-body the way a platform does when a function fails while streaming.
h11 does the protocol; this module is the connection loop around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import h11

logger = logging.getLogger("agentpack.emulate")

Handler = Callable[["Exchange"], Awaitable[None]]


class BodyTooLarge(Exception):
    """A request body went over the limit its reader set."""


class BodyTimeout(Exception):
    """A request body stalled longer than the server's ``body_timeout`` between two reads."""


#: Seconds a request's head may take once its first byte arrived (a half-sent head is answered 408).
HEADER_TIMEOUT = 30.0


def _raw_answer(writer: asyncio.StreamWriter, status: int, reason: str, text: str) -> None:
    """An answer written past h11 (which sends none before a whole request head), then the close."""
    body = text.encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    writer.write(head.encode() + body)


def reason_phrase(status: int) -> bytes:
    """The status line's reason phrase (``200 OK``): h11 sends none unless given one, and the
    platforms' fronts, like most servers and clients' logs, show it."""
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class Exchange:
    """One request on a connection and the means to answer it."""

    def __init__(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body_timeout: float | None = None,
    ) -> None:
        self._conn = conn
        self._body_timeout = body_timeout
        self._reader = reader
        self._writer = writer
        self.method = request.method.decode()
        self.target = request.target.decode("latin-1")
        self.headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
        self.header_list = [
            (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in request.headers
        ]
        self.trailers: dict[str, str] = {}
        self.body_read = False
        self.started = False
        self.ended = False
        self.peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)

    async def _next_event(self) -> object:
        while True:
            event = self._conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self._conn.they_are_waiting_for_100_continue:
                self._writer.write(
                    self._conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")) or b""
                )
            if self._body_timeout is None:
                self._conn.receive_data(await self._reader.read(65536))
                continue
            try:
                self._conn.receive_data(await asyncio.wait_for(self._reader.read(65536), self._body_timeout))
            except asyncio.TimeoutError:
                raise BodyTimeout(self._body_timeout) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The request body piece by piece, as it arrives; trailers land in :attr:`trailers`."""
        while not self.body_read:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.trailers = {
                    name.decode("latin-1").lower(): value.decode("latin-1") for name, value in event.headers
                }
                self.body_read = True
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the client closed the connection mid-request")

    async def body(self, limit: int | None = None) -> bytes:
        """The whole request body; raises :class:`BodyTooLarge` past ``limit`` bytes."""
        parts, size = [], 0
        async for chunk in self.chunks():
            size += len(chunk)
            if limit is not None and size > limit:
                raise BodyTooLarge(size)
            parts.append(chunk)
        return b"".join(parts)

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        encoded = [(k.encode("latin-1"), v.encode("utf-8", "surrogateescape")) for k, v in headers]
        await self._write(h11.Response(status_code=status, headers=encoded, reason=reason_phrase(status)))

    async def write(self, data: bytes) -> None:
        if data and self.method != "HEAD":  # a HEAD response has headers only
            await self._write(h11.Data(data=data))

    async def end(self) -> None:
        self.ended = True
        await self._write(h11.EndOfMessage())

    async def respond(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        """A whole response with a Content-Length."""
        await self.start(status, [*(headers or []), ("content-length", str(len(body)))])
        await self.write(body)
        await self.end()

    def abort(self) -> None:
        """Drop the connection mid-response: the client sees a body that never ends properly."""
        self.ended = True
        self._writer.transport.abort()

    async def _write(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            self._writer.write(data)
            await self._writer.drain()


class H11Server:
    """Serves ``handler`` on ``host:port`` (port 0: any free port, see :attr:`port`).

    A malformed request head is answered 400 and one not finished within ``header_timeout``
    seconds of its first byte 408, then the connection is closed; ``body_timeout`` (None: no
    limit, as the Runtime API needs for streamed responses) bounds each wait for body bytes,
    and a handler that reads the body gets :class:`BodyTimeout` past it.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER)
        exchange: Exchange | None = None
        try:
            while True:
                exchange = None
                event = await self._next_request(conn, reader, self.header_timeout)
                if event is None:
                    _raw_answer(
                        writer,
                        408,
                        "Request Timeout",
                        f"the request head did not arrive within {self.header_timeout:g} s\n",
                    )
                    return
                if not isinstance(event, h11.Request):
                    return
                exchange = Exchange(conn, reader, writer, event, self.body_timeout)
                await self.handler(exchange)
                if not exchange.ended and not exchange.started:
                    await exchange.respond(500, b"the handler sent no response")
                if exchange.ended and writer.transport.is_closing():
                    return
                if exchange.ended and not exchange.body_read and conn.their_state is h11.SEND_BODY:
                    async for _ in exchange.chunks():  # the rest of the request (often just its end)
                        pass
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return  # unread body or a close: no keep-alive
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:  # a malformed request: 400, as any HTTP server answers
            if exchange is None or not exchange.started:
                _raw_answer(writer, 400, "Bad Request", f"malformed HTTP request: {exc}\n")
            logger.debug("malformed request: %s", exc)
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError, BodyTimeout) as exc:
            logger.debug("connection ended: %s", exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("the emulator failed serving a request")
        finally:
            self._connections.discard(task)
            writer.close()

    @staticmethod
    async def _next_request(conn: h11.Connection, reader: asyncio.StreamReader, timeout: float) -> object:
        """The next request head; None when its first bytes came but the rest not within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if conn.trailing_data[0] else None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if deadline is None:  # an idle keep-alive connection waits for a first byte
                    data = await reader.read(65536)
                    deadline = loop.time() + timeout
                else:
                    try:
                        data = await asyncio.wait_for(reader.read(65536), max(0.0, deadline - loop.time()))
                    except asyncio.TimeoutError:
                        return None
                conn.receive_data(data)
                continue
            return event
