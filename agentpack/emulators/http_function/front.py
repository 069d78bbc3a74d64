"""The front: the platform's HTTP trigger on ``http://127.0.0.1:<port>``, before the instances.

It forwards each request as the trigger would: with the platform's request headers (the
profile's; a client's own are dropped), the platform's request size limit, the function's
timeout (past it the caller gets the platform's error; a stream already under way is cut),
and at most ``instance_concurrency`` requests per instance — others wait for one to free,
since the emulator does not scale out.  With an ``affinity_header``, requests carrying the
same value go to the same instance.  Responses stream through chunk by chunk.  Every error the
platform gives itself (too large, timed out, the instance died) is the profile's, so each
platform answers its own way.  An instance that dies is reported and replaced at once
(:mod:`.instance`); a request that finds it dead waits for the new one.  A malformed request
is answered 400, a request head not sent within :data:`HEADER_TIMEOUT` seconds 408, and a body
that stalls for :data:`BODY_TIMEOUT` seconds 408 (agentpack's bounds: the platforms publish
none).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import subprocess
import time
import uuid
from typing import Any

from agentpack.emulators.background import BackgroundEmulator, EmulatorStartError, Log
from agentpack.emulators.h11_server import BodyTimeout, BodyTooLarge, Exchange, H11Server
from agentpack.emulators.http_function.config import FunctionConfig
from agentpack.emulators.http_function.instance import Instance
from agentpack.emulators.http_function.profiles import Answer, FunctionProfile
from agentpack.processes import proc_available
from agentpack.targets import TARGETS, get_target

#: Seconds a request head may take once it began, and a body may stall between two reads.
HEADER_TIMEOUT = 30.0
BODY_TIMEOUT = 30.0

#: How long a session stays pinned to its instance after its last request (FC's session TTL).
AFFINITY_TTL = 600.0
#: Headers that describe one hop of a connection, never forwarded.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def _profile(platform: str) -> FunctionProfile:
    """The profile of the target named ``platform`` (its row names it)."""
    row = TARGETS.get(platform)
    profile = row.load("emulator") if row is not None and row.emulator else None
    if not (isinstance(profile, type) and issubclass(profile, FunctionProfile)):
        names = [name for name, other in TARGETS.items() if other.emulator.rpartition(":")[0] == __package__]
        raise ValueError(f"platform {platform!r}: use {', '.join(names[:-1])} or {names[-1]}")
    return profile(get_target(platform))


class FunctionEmulator(BackgroundEmulator):
    """Instances of one function behind an emulated HTTP trigger; see the package doc.

    ::

        emulator = FunctionEmulator(FunctionConfig(code_dir, python, platform="fc", timeout=60)).start()
        ... HTTP to emulator.url ...
        emulator.stop()
    """

    thread_name = "agentpack-function-emulator"

    def __init__(self, config: FunctionConfig, log: Log | None = None, profile: FunctionProfile | None = None) -> None:
        self.profile = profile or _profile(config.platform)
        if not self.profile.lifecycle_hooks:  # no platform hooks: none to call
            config = dataclasses.replace(config, initializer=False, pre_stop=False)
        if config.timeout <= 0 or config.instances < 1 or config.instance_concurrency < 1:
            raise ValueError("timeout must be positive, instances and instance_concurrency at least 1")
        super().__init__(log)
        self.config = config
        self.instances: list[Instance] = []
        self.client: Any = None
        self._front: H11Server | None = None
        self._turn = itertools.count()
        #: session header value -> (instance, last use); entries expire like FC's session TTL
        self._affinity: dict[str, tuple[Instance, float]] = {}
        self._freed: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        if self._front is None:
            raise RuntimeError("start() the emulator first")
        return f"http://127.0.0.1:{self._front.port}"

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> FunctionEmulator:
        """Start every instance and open the front; raises :class:`EmulatorStartError`."""
        if not any((self.config.code_dir / part[2:]).exists() for part in self.config.command if part.startswith("./")):
            raise EmulatorStartError(
                f"{self.config.code_dir} has no {self.config.command[0]}: is it an unpacked {self.config.platform} artifact?",
                code="CAExited",
            )
        self._run_start()
        return self

    async def _start(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            timeout=None, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        )
        self._freed = asyncio.Condition()
        self._front = H11Server(
            self.handle, port=self.config.port, header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT
        )
        await self._front.start()  # a port already taken fails before any cold start
        if not proc_available():
            self.log(
                "note: this system has no /proc, so an instance counts as started once its port accepts "
                "connections; whether it listens on 0.0.0.0, as the platform needs, is checked on Linux only"
            )
        self.instances = [Instance(self, index) for index in range(1, self.config.instances + 1)]
        outcomes = await asyncio.gather(
            *(self._first_launch(instance) for instance in self.instances), return_exceptions=True
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            raise failures[0]

    @staticmethod
    async def _first_launch(instance: Instance) -> None:
        async with instance.relaunching:  # a request that comes meanwhile waits for it
            await instance.launch()

    async def _stop(self) -> None:
        """Stop every instance (``/pre-stop``, SIGTERM, SIGKILL) and close the front."""
        await asyncio.gather(*(instance.stop() for instance in self.instances), return_exceptions=True)
        if self._front is not None:
            await self._front.close()
        if self.client is not None:
            await self.client.aclose()

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: URL and each instance's pid, port, starts and start time."""
        return {
            "url": self.url if self._front else None,
            "platform": self.config.platform,
            "timeout": self.config.timeout,
            "instances": [
                {
                    "index": i.index,
                    "id": i.id,
                    "pid": i.process.pid if i.process else None,
                    "port": i.port,
                    "starts": i.starts,
                    "start_seconds": i.start_seconds,
                }
                for i in self.instances
            ],
        }

    # -- requests ----------------------------------------------------------------------------------
    async def _instance_for(self, affinity: str | None) -> Instance:
        """An instance with a free slot: the session's own with affinity, else the least busy."""
        assert self._freed is not None
        async with self._freed:
            while True:
                now = time.monotonic()
                if len(self._affinity) > 1000:
                    self._affinity = {k: v for k, v in self._affinity.items() if now - v[1] < AFFINITY_TTL}
                pinned = self._affinity.get(affinity) if affinity is not None else None
                if pinned is not None and now - pinned[1] < AFFINITY_TTL:
                    candidates = [pinned[0]]
                else:
                    start = next(self._turn) % len(self.instances)
                    rotated = self.instances[start:] + self.instances[:start]
                    candidates = sorted(rotated, key=lambda i: i.in_flight)
                for instance in candidates:
                    if instance.in_flight < self.config.instance_concurrency:
                        instance.in_flight += 1
                        if affinity is not None:
                            self._affinity[affinity] = (instance, now)
                        return instance
                await self._freed.wait()

    async def _release(self, instance: Instance) -> None:
        assert self._freed is not None
        async with self._freed:
            instance.in_flight -= 1
            self._freed.notify_all()

    @property
    def request_limit(self) -> int | None:
        """The request body limit in force: the config's, else the platform's."""
        return self.config.request_limit if self.config.request_limit is not None else self.profile.request_limit

    async def handle(self, exchange: Exchange) -> None:
        request_id = uuid.uuid4().hex
        limit = self.request_limit
        try:
            body = await exchange.body(limit=limit)
        except BodyTooLarge:
            assert limit is not None
            self.log(f"request {request_id}: the body is over the platform's {limit} bytes")
            await self._answer(exchange, self.profile.too_large(limit), request_id)
            return
        except BodyTimeout:
            await self._answer(
                exchange, (408, [("content-type", "text/plain")], b"the request body stalled\n"), request_id
            )
            return
        config = self.config
        affinity = exchange.headers.get(config.affinity_header.lower()) if config.affinity_header else None
        instance = await self._instance_for(affinity)
        try:
            if not await self._ensure_alive(instance, exchange, request_id):
                return
            retry = await self._forward(exchange, instance, body, request_id, first_try=True)
            # the instance died before answering: the request goes to its replacement (see _forward)
            if retry and await self._ensure_alive(instance, exchange, request_id):
                await self._forward(exchange, instance, body, request_id, first_try=False)
        finally:
            await self._release(instance)

    async def _ensure_alive(self, instance: Instance, exchange: Exchange, request_id: str) -> bool:
        """A dead instance is being (or is now) replaced: wait for the new one; False when it did
        not start (the caller then has the platform's answer)."""
        if instance.ready or self.stopping:
            return True
        async with instance.relaunching:  # held while a new process starts: wait for it
            if instance.ready:
                return True
            instance.log("the instance is gone; starting a new one")
            try:
                await instance.launch()
            except EmulatorStartError as exc:
                await self._answer(exchange, self.profile.not_started(exc.code, str(exc)), request_id)
                return False
        return True

    def _headers(self, exchange: Exchange, request_id: str) -> list[tuple[str, str]]:
        """The client's headers but the hop-by-hop ones and the platform's own, then the platform's."""
        prefix = self.profile.header_prefix
        kept = [
            (k, v) for k, v in exchange.header_list if k not in HOP_BY_HOP and not (prefix and k.startswith(prefix))
        ]
        return kept + list(self.profile.request_headers(self.config, request_id).items())

    async def _forward(
        self, exchange: Exchange, instance: Instance, body: bytes, request_id: str, *, first_try: bool
    ) -> bool:
        """Relay one request and its response; True (on the first try) when the instance died
        before any answer and the platform would send the request again: when the connection
        was refused (nothing was sent), or for an idempotent method (FC retries GET, HEAD,
        OPTIONS and TRACE on EOF or a reset connection, and answers 502 for others)."""
        import httpx

        config = self.config
        url = f"http://127.0.0.1:{instance.port}{exchange.target}"
        request = self.client.build_request(
            exchange.method, url, headers=self._headers(exchange, request_id), content=body
        )
        began = time.monotonic()
        deadline = began + config.timeout
        process = instance.process  # the one this request goes to (a new one may replace it meanwhile)

        async def relay() -> None:
            response = await self.client.send(request, stream=True)
            try:
                out = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP]
                if "content-length" in response.headers and "transfer-encoding" not in response.headers:
                    out.append(("content-length", response.headers["content-length"]))
                await exchange.start(response.status_code, out)
                async for chunk in response.aiter_raw():
                    await exchange.write(chunk)
                await exchange.end()
            finally:
                await response.aclose()

        task = asyncio.ensure_future(relay())
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            await asyncio.wait({task})
            self.log(f"request {request_id} timed out after {config.timeout:g}s (the function timeout)")
            if exchange.started:
                exchange.abort()  # the platform ends the invocation: the stream is cut
            else:
                await self._answer(exchange, self.profile.timed_out(config.timeout), request_id)
            return False
        error = task.exception()
        if error is None:
            return False
        if isinstance(error, (httpx.TransportError, ConnectionError)):
            died = process is not None and await self._died(process)
            idempotent = exchange.method in ("GET", "HEAD", "OPTIONS", "TRACE")
            if died and first_try and not exchange.started and (idempotent or isinstance(error, httpx.ConnectError)):
                self.log(f"request {request_id}: the instance died before answering; sending it to the new one")
                return True
            if died:
                self.log(f"request {request_id}: the instance exited before completing it")
            if exchange.started:
                exchange.abort()
                return False
            milliseconds = (time.monotonic() - began) * 1000
            answer = self.profile.crashed(milliseconds) if died else self.profile.unreachable(str(error))
            await self._answer(exchange, answer, request_id)
            return False
        raise error

    @staticmethod
    async def _died(process: subprocess.Popen[bytes], within: float = 1.0) -> bool:
        """Whether ``process`` exits within ``within`` seconds (a failed connection to a dying
        process comes a moment before its exit)."""
        deadline = time.monotonic() + within
        while process.poll() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _answer(self, exchange: Exchange, answer: Answer, request_id: str) -> None:
        """The platform's own answer (the profile's), with its request id."""
        if exchange.started:
            exchange.abort()
            return
        status, headers, body = answer
        prefix = self.profile.header_prefix  # the platform's request id header, where it has one
        await exchange.respond(status, body, [*headers, *([(f"{prefix}request-id", request_id)] if prefix else [])])
