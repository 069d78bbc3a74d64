"""Plumbing shared by the loopback stand-ins for Alibaba Cloud's ROA-style control planes.

A stand-in is a real socket server on 127.0.0.1 that the unmodified SDK clients talk to
(``Config(endpoint="127.0.0.1:PORT", protocol="http")``). It checks what the API gateway
checks before any handler runs — the ACS3-HMAC-SHA256 signature computed with the test
credentials, the payload hash in ``x-acs-content-sha256``, the version and action headers —
and answers errors in the product's own envelope, so the SDK raises its real exception with
the code, message and request id a user would see. Every request is logged for tests to
inspect, and the next N calls of an action can be made to fail with a 5xx or a throttling
error. The facts behind the checks are in README.md beside this file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, quote, unquote

from .loopback import LoopbackServer

TEST_ACCESS_KEY_ID = "LTAI-test-key-id"
TEST_ACCESS_KEY_SECRET = "test-secret-for-loopback-only"

SIGNATURE_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# The gateway refuses requests whose x-acs-date is too far from its clock.
MAX_CLOCK_SKEW = _dt.timedelta(minutes=15)


class ApiError(Exception):
    """An error answer: HTTP status, the product's error code and a message."""

    def __init__(self, status: int, code: str, message: str, headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Call:
    """One request as the stand-in received it, and how it answered."""

    method: str
    path: str  # decoded path, e.g. /2023-03-30/functions/my-fn
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    action: Optional[str] = None
    status: int = 0
    error_code: Optional[str] = None
    request_id: str = ""
    path_params: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Request:
    """What a route handler gets: the parsed request and its path parameters."""

    call: Call
    params: dict[str, str]

    @property
    def body(self) -> dict[str, Any]:
        data = self.call.json
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ApiError(400, "InvalidArgument", "the request body must be a JSON object")
        return data

    @property
    def query(self) -> dict[str, str]:
        return self.call.query


Handler = Callable[[Request], tuple[int, Any]]


@dataclass
class _Route:
    method: str
    template: str
    regex: re.Pattern[str]
    action: str
    handler: Handler


@dataclass
class _Injected:
    status: int
    code: str
    message: str
    headers: dict[str, str]
    #: the call runs (and takes effect) before the error is answered
    after: bool = False


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    """Query part of the canonical request: keys sorted, values percent-encoded (``~`` kept)."""
    items = sorted(pairs, key=lambda kv: kv[0])
    return "&".join(f"{key}={quote(value, safe='~')}" for key, value in items)


def canonical_request(method: str, raw_path: str, query_pairs: list[tuple[str, str]],
                      headers: dict[str, list[str]], signed: list[str], payload_hash: str) -> str:
    """The string whose hash is signed: method, path, query, headers, header names, payload hash."""
    header_lines = "".join(
        f"{name}:{','.join(sorted(value.strip() for value in headers.get(name, [])))}\n" for name in signed
    )
    return "\n".join(
        [method.upper(), raw_path or "/", canonical_query(query_pairs), header_lines, ";".join(signed), payload_hash]
    )


def sign(secret: str, canonical: str) -> str:
    string_to_sign = f"{SIGNATURE_ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


_AUTH_RE = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AcsStandIn(LoopbackServer):
    """A threaded loopback server for one ROA product version (routes added by subclasses).

    ``error_body`` shapes an error answer the way the product does; ``auth_errors`` names the
    codes the product's gateway uses for a bad signature, an unknown key, a stale date and a
    payload hash that does not match.
    """

    product = "acs"
    version = ""
    error_statuses = {
        "signature": (403, "SignatureDoesNotMatch"),
        "access_key": (403, "InvalidAccessKeyId.NotFound"),
        "missing_auth": (401, "MissingAuthorization"),
        "date": (403, "InvalidTimeStamp.Expired"),
        "content_sha256": (400, "ContentSHA256Mismatch"),
        "version": (400, "InvalidVersion"),
        "action": (400, "InvalidAction"),
        "path": (404, "PathNotSupported"),
        "nonce": (400, "SignatureNonceUsed"),
        "json": (400, "InvalidArgument"),
    }

    def __init__(self, access_key_id: str = TEST_ACCESS_KEY_ID, access_key_secret: str = TEST_ACCESS_KEY_SECRET,
                 security_token: Optional[str] = None) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token
        self.calls: list[Call] = []
        self._routes: list[_Route] = []
        self._nonces: set[str] = set()
        self._lock = threading.RLock()
        self.thread_name = f"{self.product}-stand-in"

    # -- routes ---------------------------------------------------------------------------

    def route(self, method: str, template: str, action: str, handler: Handler) -> None:
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self._routes.append(_Route(method, template, re.compile(f"^{pattern}$"), action, handler))

    # -- error bodies (overridden per product) ----------------------------------------------

    def error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        return {"Code": error.code, "Message": error.message, "RequestId": request_id}

    @property
    def endpoint(self) -> str:
        """What goes into the SDK's ``Config.endpoint`` (with ``protocol="http"``)."""
        return f"127.0.0.1:{self.port}"

    # -- test controls -----------------------------------------------------------------------

    def fail_next(self, action: str, times: int = 1, *, status: int = 503, code: str = "ServiceUnavailable",
                  message: str = "The service is temporarily unavailable; retry later.",
                  headers: Optional[dict[str, str]] = None) -> None:
        """Answer the next ``times`` calls of ``action`` with this error instead of running them."""
        with self._lock:
            self._inject(action, times, _Injected(status, code, message, dict(headers or {})))

    def fail_after_next(self, action: str, *, status: int = 503, code: str = "ServiceUnavailable",
                        message: str = "The service is temporarily unavailable; retry later.") -> None:
        """Run the next call of ``action`` -- it takes effect -- and answer it with this error: a
        gateway that gave up on a backend that went on.  A client retrying the 5xx then meets the
        change it already made (an "already exists", a resource still UPDATING)."""
        with self._lock:
            self._inject(action, 1, _Injected(status, code, message, {}, after=True))

    def throttle_next(self, action: str, times: int = 1, *, retry_after: Optional[int] = None) -> None:
        """Answer the next calls of ``action`` as the gateway does when the caller exceeds its rate.

        With ``retry_after`` the answer carries ``x-acs-retry-after``, which makes the SDK raise
        its ``ThrottlingException`` rather than a plain ``ClientException``.
        """
        headers = {"x-acs-retry-after": str(retry_after)} if retry_after else {}
        self.fail_next(action, times, status=429, code="Throttling",
                       message="Request was denied due to request throttling.", headers=headers)

    def calls_of(self, action: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.action == action]

    def actions(self) -> list[str]:
        with self._lock:
            return [call.action or "?" for call in self.calls]

    # -- request handling ----------------------------------------------------------------------

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        raw_path, _, raw_query = http.path.partition("?")
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        headers_multi: dict[str, list[str]] = {}
        for name, value in http.headers.items():
            headers_multi.setdefault(name.lower(), []).append(value)
        query_pairs = parse_qsl(raw_query, keep_blank_values=True)
        call = Call(
            method=http.command,
            path=unquote(raw_path),
            query=dict(query_pairs),
            headers={name: ",".join(values) for name, values in headers_multi.items()},
            body=body,
            action=http.headers.get("x-acs-action"),
            request_id=str(uuid.uuid4()).upper(),
        )
        status, payload, extra_headers = self._dispatch(call, raw_path, query_pairs, headers_multi)
        call.status = status
        with self._lock:
            self.calls.append(call)
        data = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        http.send_response(status)
        http.send_header("x-acs-request-id", call.request_id)
        for name, value in extra_headers.items():
            http.send_header(name, value)
        if payload is not None:
            http.send_header("Content-Type", "application/json; charset=utf-8")
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        if data and http.command != "HEAD":
            http.wfile.write(data)

    def _dispatch(self, call: Call, raw_path: str, query_pairs: list[tuple[str, str]],
                  headers: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        try:
            self._authenticate(call, raw_path, query_pairs, headers)
            route, params = self._match(call)
            call.path_params = params
            injected = self._take_injected(route.action)
            if injected is not None and not injected.after:
                raise ApiError(injected.status, injected.code, injected.message, injected.headers)
            if call.body and "json" in call.headers.get("content-type", ""):
                try:
                    json.loads(call.body)
                except ValueError:
                    code = self.error_statuses["json"]
                    raise ApiError(code[0], code[1], "the request body is not valid JSON") from None
            status, payload = route.handler(Request(call, params))
            if injected is not None:  # it ran; the caller hears only the error
                raise ApiError(injected.status, injected.code, injected.message, injected.headers)
            return status, payload, {}
        except ApiError as error:
            call.error_code = error.code
            return error.status, self.error_body(error, call.request_id), error.headers

    def _fail(self, kind: str, message: str) -> ApiError:
        status, code = self.error_statuses[kind]
        return ApiError(status, code, message)

    def _authenticate(self, call: Call, raw_path: str, query_pairs: list[tuple[str, str]],
                      headers: dict[str, list[str]]) -> None:
        version = call.headers.get("x-acs-version")
        if version != self.version:
            raise self._fail("version", f"x-acs-version must be {self.version!r}, got {version!r}")
        if not call.action:
            raise self._fail("action", "the x-acs-action header is missing")
        stated_hash = call.headers.get("x-acs-content-sha256")
        if stated_hash != hashlib.sha256(call.body).hexdigest():
            raise self._fail("content_sha256", "x-acs-content-sha256 does not match the SHA-256 of the request body")
        date = call.headers.get("x-acs-date", "")
        try:
            sent = _dt.datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise self._fail("date", f"x-acs-date {date!r} is not an ISO 8601 UTC time (YYYY-MM-DDThh:mm:ssZ)") from None
        if abs(_dt.datetime.now(_dt.timezone.utc) - sent) > MAX_CLOCK_SKEW:
            raise self._fail("date", f"x-acs-date {date} is more than 15 minutes away from the server's clock")
        authorization = call.headers.get("authorization", "")
        if not authorization:
            raise self._fail("missing_auth", "the Authorization header is missing")
        match = _AUTH_RE.match(authorization)
        if match is None:
            raise self._fail("signature", "the Authorization header is not an ACS3-HMAC-SHA256 signature")
        if match["ak"] != self.access_key_id:
            raise self._fail("access_key", f"the AccessKey ID {match['ak']!r} does not exist")
        if self.security_token is not None and call.headers.get("x-acs-security-token") != self.security_token:
            raise self._fail("access_key", "the security token is missing or wrong")
        signed = match["signed"].split(";")
        if signed != sorted(signed):
            raise self._fail("signature", "SignedHeaders must be sorted")
        required = {"host"} | {name for name in headers if name.startswith("x-acs-")}
        if "content-type" in headers:
            required.add("content-type")
        missing = sorted(required - set(signed))
        if missing:
            raise self._fail("signature", f"these headers must be signed: {', '.join(missing)}")
        canonical = canonical_request(call.method, raw_path, query_pairs, headers, signed, stated_hash or EMPTY_SHA256)
        expected = sign(self.access_key_secret, canonical)
        if not hmac.compare_digest(expected, match["sig"]):
            raise self._fail(
                "signature",
                "The request signature we calculated does not match the signature you provided. "
                "Check your access key and signing method.",
            )
        nonce = call.headers.get("x-acs-signature-nonce", "")
        with self._lock:
            if nonce in self._nonces:
                raise self._fail("nonce", f"the signature nonce {nonce!r} has been used before")
            if nonce:
                self._nonces.add(nonce)

    def _match(self, call: Call) -> tuple[_Route, dict[str, str]]:
        for route in self._routes:
            found = route.regex.match(call.path)
            if not found or route.method != call.method:
                continue
            if route.action != call.action:
                raise self._fail("action", f"{call.method} {call.path} is {route.action}, not {call.action}")
            return route, dict(found.groupdict())
        raise self._fail("path", f"'{call.method}' against '{call.path}' is not supported")


def require(condition: bool, message: str, *, status: int = 400, code: str = "InvalidArgument") -> None:
    if not condition:
        raise ApiError(status, code, message)


def crc64_xz(data: bytes) -> int:
    """CRC-64/XZ (ECMA-182 polynomial, reflected, all-ones init and xor-out): OSS/FC's code checksum.

    Uses crcmod's C extension (package crcmod-plus) when installed — a pure-Python loop needs
    about a second per 10 MB, which would dominate deploy timings against the stand-ins.
    """
    fast = _fast_crc64()
    if fast is not None:
        return fast(data)
    table = _crc64_table()
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


_TABLE: list[int] = []
_FAST: list[Any] = []


def _fast_crc64() -> Optional[Callable[[bytes], int]]:
    if not _FAST:
        try:
            import crcmod  # crcmod-plus: same API, prebuilt C extension

            _FAST.append(crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, xorOut=0xFFFFFFFFFFFFFFFF, rev=True))
        except ImportError:
            _FAST.append(None)
    return _FAST[0]


def _crc64_table() -> list[int]:
    if not _TABLE:
        poly = 0xC96C5795D7870F42  # 0x42F0E1EBA9EA3693 bit-reversed
        for index in range(256):
            crc = index
            for _ in range(8):
                crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
            _TABLE.append(crc)
    return _TABLE
