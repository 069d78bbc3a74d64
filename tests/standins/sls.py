"""A loopback stand-in for Simple Log Service's query API (GetLogsV2 and GetLogs), driven by the real
``aliyun-log-python-sdk``.

The SDK puts the SLS project in the host name (``<project>.<endpoint>``), so it cannot be pointed at
``127.0.0.1:PORT`` directly: tests give it a made-up endpoint (``http://cn-hangzhou.log.aliyuncs.com``)
and route plain HTTP through this server as the HTTP proxy (``HTTP_PROXY``).  The request then arrives
exactly as SLS would get it: absolute URL, ``Host: <project>.<endpoint>``.  Before answering, the
stand-in checks what the API reference says a request must carry — the method and path, the
``x-log-apiversion`` / ``x-log-signaturemethod`` / ``Date`` / ``Content-MD5`` / ``x-log-bodyrawsize``
headers, the ``LOG <AccessKeyId>:<Signature>`` signature recomputed with the test secret, the
``Accept-Encoding`` of GetLogsV2 and each query parameter's type and range — and answers errors in
SLS's envelope.  Facts and sources: README.md beside this file, section "Simple Log Service".
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .acs import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET
from .loopback import LoopbackServer

API_VERSION = "0.6.0"
MAX_CLOCK_SKEW = _dt.timedelta(minutes=15)
MAX_LINES = 100


class SlsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class SlsCall:
    """One request as the stand-in received it."""

    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    action: str | None = None
    #: the query parameters as the operation reads them (GetLogsV2: the JSON body; GetLogs: the query string)
    params: dict[str, Any] = field(default_factory=dict)
    status: int = 0
    error_code: str | None = None


@dataclass
class Entry:
    """A stored log entry: its second and its fields (``__source__`` included)."""

    time: int
    fields: dict[str, str]

    def matches(self, query: str) -> bool:
        """``*`` matches all; ``key: value`` (quotes optional) matches entries whose field has that value;
        anything else is looked for in the values (a simplification of SLS's search syntax)."""
        query = query.strip()
        if query in ("", "*"):
            return True
        key, colon, value = query.partition(":")
        if colon and key.strip() and " " not in key.strip():
            return self.fields.get(key.strip()) == value.strip().strip('"')
        return any(query in v for v in self.fields.values())


class SLSStandIn(LoopbackServer):
    thread_name = "sls-stand-in"

    def __init__(self, endpoint_host: str = "cn-hangzhou.log.aliyuncs.com") -> None:
        self.endpoint_host = endpoint_host
        self.calls: list[SlsCall] = []
        #: (project, logstore) -> entries
        self.stores: dict[tuple[str, str], list[Entry]] = {}
        self._lock = threading.Lock()

    # -- what tests use ----------------------------------------------------------------------------
    @property
    def proxy(self) -> str:
        """The value for ``HTTP_PROXY`` that routes the SDK's requests here."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """The endpoint to give the SDK (plain HTTP, so that the proxy sees each request)."""
        return f"http://{self.endpoint_host}"

    def create_store(self, project: str, store: str) -> None:
        with self._lock:
            self.stores.setdefault((project, store), [])

    def write(self, project: str, store: str, time: int, **fields: str) -> None:
        """Add an entry (the store must exist); kept in time order, as SLS returns them with reverse=false."""
        with self._lock:
            entries = self.stores[(project, store)]
            entries.append(Entry(time, {"__source__": "127.0.0.1", **fields}))
            entries.sort(key=lambda e: e.time)

    def calls_of(self, action: str) -> list[SlsCall]:
        return [c for c in self.calls if c.action == action]

    # -- the server ------------------------------------------------------------------------------
    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        url = urlsplit(http.path)
        headers = {k.lower(): v for k, v in http.headers.items()}
        call = SlsCall(
            method=http.command,
            host=headers.get("host", url.netloc),
            path=unquote(url.path),
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=headers,
            body=body,
        )
        with self._lock:
            self.calls.append(call)
        request_id = uuid.uuid4().hex[:24].upper()
        try:
            status, payload, extra = self._answer(call)
        except SlsError as error:
            status, extra = error.status, {}
            payload = json.dumps({"errorCode": error.code, "errorMessage": error.message}).encode()
            call.error_code = error.code
        call.status = status
        http.send_response(status)
        http.send_header("Content-Type", "application/json")
        http.send_header("x-log-requestid", request_id)
        for name, value in extra.items():
            http.send_header(name, value)
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        http.wfile.write(payload)

    def _answer(self, call: SlsCall) -> tuple[int, bytes, dict[str, str]]:
        project = self._project(call)
        parts = call.path.strip("/").split("/")
        if call.method == "POST" and len(parts) == 3 and parts[0] == "logstores" and parts[2] == "logs":
            call.action = "GetLogsV2"
        elif call.method == "GET" and len(parts) == 2 and parts[0] == "logstores" and call.query.get("type") == "log":
            call.action = "GetLogs"
        else:
            raise SlsError(404, "NotFound", f"{call.method} {call.path} is not an operation this stand-in serves")
        self._check_common(call)
        if call.action == "GetLogsV2":
            if not call.headers.get("content-type", "").startswith("application/json"):
                raise SlsError(
                    400, "InvalidContentType", f"Content-Type {call.headers.get('content-type')} is unsupported."
                )
            try:
                call.params = json.loads(call.body)
            except ValueError:
                raise SlsError(400, "PostBodyInvalid", "The request body is not valid JSON object.") from None
            if not isinstance(call.params, dict):
                raise SlsError(400, "PostBodyInvalid", "The request body is not valid JSON object.")
            encoding = call.headers.get("accept-encoding", "")
            if encoding not in ("lz4", "gzip"):
                raise SlsError(400, "ParameterInvalid", f"Accept-Encoding {encoding!r}: use lz4 or gzip")
        else:
            call.params = dict(call.query)
        start, end, line, offset, reverse = self._query_params(call.params)
        key = (project, parts[1])
        with self._lock:
            if key not in self.stores:
                if not any(p == project for p, _ in self.stores):
                    raise SlsError(404, "ProjectNotExist", f"Project {project} does not exist.")
                raise SlsError(404, "LogStoreNotExist", f"logstore {parts[1]} does not exist")
            matching = [
                e for e in self.stores[key] if start <= e.time < end and e.matches(str(call.params.get("query") or ""))
            ]
        if reverse:
            matching.reverse()
        page = matching[offset : offset + line]
        rows = [{**e.fields, "__time__": str(e.time)} for e in page]
        if call.action == "GetLogs":  # the body is the entries; the meta is in headers
            return 200, json.dumps(rows).encode(), {"x-log-progress": "Complete", "x-log-count": str(len(rows))}
        raw = json.dumps({"meta": {"progress": "Complete", "count": len(rows)}, "data": rows}).encode()
        return 200, *self._compressed(raw, call.headers["accept-encoding"])

    @staticmethod
    def _compressed(raw: bytes, encoding: str) -> tuple[bytes, dict[str, str]]:
        if encoding == "lz4":
            import lz4.block

            data = lz4.block.compress(raw, store_size=False)
        else:
            import zlib

            data = zlib.compress(raw)
        return data, {"x-log-compresstype": encoding, "x-log-bodyrawsize": str(len(raw))}

    def _project(self, call: SlsCall) -> str:
        host = call.host.split(":")[0]
        suffix = "." + self.endpoint_host
        if not host.endswith(suffix) or not host[: -len(suffix)]:
            raise SlsError(400, "InvalidHost", f"Host header {call.host} is invalid: want <project>{suffix}")
        return host[: -len(suffix)]

    @staticmethod
    def _query_params(params: dict[str, Any]) -> tuple[int, int, int, int, bool]:
        def integer(name: str, default: int | None = None) -> int:
            value = params.get(name, default)
            if value is None:
                raise SlsError(400, "ParameterInvalid", f"{name} is required")
            try:
                if isinstance(value, bool):
                    raise ValueError
                return int(value)
            except (TypeError, ValueError):
                raise SlsError(400, "ParameterInvalid", f"{name} must be an integer, not {value!r}") from None

        start, end = integer("from"), integer("to")
        if start >= end:
            raise SlsError(
                400, "ParameterInvalid", f"from ({start}) must be before to ({end}): the range is [from, to)"
            )
        line, offset = integer("line", 100), integer("offset", 0)
        if not 0 <= line <= MAX_LINES or offset < 0:
            raise SlsError(
                400, "ParameterInvalid", f"line must be 0-{MAX_LINES} and offset >= 0, not {line} and {offset}"
            )
        reverse = params.get("reverse", False)
        if isinstance(reverse, str):
            if reverse not in ("true", "false"):
                raise SlsError(400, "ParameterInvalid", f"reverse must be true or false, not {reverse!r}")
            reverse = reverse == "true"
        return start, end, line, offset, bool(reverse)

    def _check_common(self, call: SlsCall) -> None:
        headers = call.headers
        if headers.get("x-log-apiversion") != API_VERSION:
            raise SlsError(
                400, "InvalidAPIVersion", f"x-log-apiversion {headers.get('x-log-apiversion')} is unsupported."
            )
        if headers.get("x-log-signaturemethod") != "hmac-sha1":
            raise SlsError(400, "ParameterInvalid", "x-log-signaturemethod must be hmac-sha1")
        date = headers.get("date")
        if not date:
            raise SlsError(400, "MissingDate", "Date does not exist in http header.")
        try:
            sent = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            raise SlsError(400, "InvalidRequestTime", f"Request time {date} not follow RFC822 spec.") from None
        if abs(_dt.datetime.now(_dt.timezone.utc) - sent) > MAX_CLOCK_SKEW:
            raise SlsError(400, "RequestTimeExpired", f"Request time {date} has been expired while server time is now.")
        if call.body:
            if headers.get("x-log-bodyrawsize") != str(len(call.body)):
                raise SlsError(400, "InvalidBodyRawSize", "x-log-bodyrawsize is invalid.")
            md5 = hashlib.md5(call.body).hexdigest().upper()
            if headers.get("content-md5") != md5:
                raise SlsError(400, "InvalidContentMD5", "Content-MD5 is not the MD5 of the body (uppercase hex).")
        authorization = headers.get("authorization", "")
        if not authorization.startswith("LOG ") or ":" not in authorization:
            raise SlsError(401, "Unauthorized", "the Authorization header must be LOG <AccessKeyId>:<Signature>")
        key_id, _, signature = authorization[4:].partition(":")
        if key_id != TEST_ACCESS_KEY_ID:
            raise SlsError(401, "Unauthorized", f"AccessKeyId {key_id} is not found.")
        if not hmac.compare_digest(signature, self.signature(call)):
            raise SlsError(401, "SignatureNotMatch", f"Signature {signature} not matched.")

    @staticmethod
    def signature(call: SlsCall) -> str:
        """base64(hmac-sha1(secret, VERB\\nCONTENT-MD5\\nCONTENT-TYPE\\nDATE\\nLOG headers + resource))."""
        headers = call.headers
        signed = "".join(
            f"{name}:{headers[name]}\n"
            for name in sorted(headers)
            if name.startswith("x-acs-")
            or (name.startswith("x-log-") and not name.startswith("x-log-meta-") and name != "x-log-date")
        )
        resource = call.path
        if call.query:
            resource += "?" + "&".join(f"{k}={v}" for k, v in sorted(call.query.items()))
        text = (
            "\n".join(
                [call.method, headers.get("content-md5", ""), headers.get("content-type", ""), headers.get("date", "")]
            )
            + "\n"
            + signed
            + resource
        )
        digest = hmac.new(TEST_ACCESS_KEY_SECRET.encode(), text.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()
