"""What every stand-in is underneath: a threaded HTTP/1.1 server on a free loopback port that
hands each request to the stand-in's ``_handle``, usable as a context manager, and the queue of
prepared answers its ``fail_next`` fills."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, TypeVar

Self = TypeVar("Self", bound="LoopbackServer")
_INJECTIONS = threading.Lock()


class LoopbackServer:
    #: the server thread's name, seen in thread dumps of a hanging test
    thread_name = "stand-in"

    _server: Optional[ThreadingHTTPServer] = None
    _thread: Optional[threading.Thread] = None

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    # -- prepared answers ------------------------------------------------------------------------
    def _inject(self, action: str, times: int, answer: Any) -> None:
        """Give ``answer`` (the stand-in's own error description) to the next ``times`` calls of ``action``."""
        with _INJECTIONS:
            self.__dict__.setdefault("_injected", {}).setdefault(action, []).append([times, answer])

    def _take_injected(self, action: str) -> Optional[Any]:
        """The answer prepared for this call of ``action``, if any (each is used ``times`` times)."""
        with _INJECTIONS:
            queue = self.__dict__.get("_injected", {}).get(action)
            if not queue:
                return None
            head = queue[0]
            head[0] -= 1
            if head[0] <= 0:
                queue.pop(0)
            return head[1]

    def start(self: Self) -> Self:
        stand_in = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One buffered write per answer and no Nagle delay: otherwise every call pays ~40 ms of
            # delayed-ACK latency on loopback.
            wbufsize = -1
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _serve(self) -> None:
                stand_in._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self: Self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the stand-in first"
        return self._server.server_address[1]
