"""Loopback stand-in for Object Storage Service (OSS), driven by the real ``alibabacloud-oss-v2`` SDK.

It serves the object operations a deployer needs — PutObject, the multipart upload the SDK's
uploader uses for large files (InitiateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload), HeadObject, GetObject and DeleteObject — on path-style URLs
(``/<bucket>/<key>``: what the SDK sends to an IP endpoint). Before any handler runs it checks
what OSS checks: the V4 signature (``OSS4-HMAC-SHA256``, the SDK's default) recomputed with
the test credentials, the signing scope's date, region and product, the clock skew and the
``x-oss-content-sha256`` header. Errors are OSS's XML ``<Error>`` document (for HEAD, base64 in
the ``x-oss-err`` header, as OSS sends them), so the SDK raises its real ``ServiceError`` with
the code, message and request id a user would see.

Bodies are streamed to files under ``root``, never held whole in memory, and each answer
carries the object's CRC-64 (``x-oss-hash-crc64ecma``), which the SDK compares with its own.
Buckets exist only when a test creates them: nothing here creates one implicitly. Every request
is logged (``calls``) for tests to inspect. README.md beside this file lists the facts and
their sources.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from .acs import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET
from .loopback import LoopbackServer

# OSS refuses requests whose signing time is more than 15 minutes from its clock.
MAX_CLOCK_SKEW = _dt.timedelta(minutes=15)
MIN_PART_SIZE = 100 * 1024  # every part but the last, checked at CompleteMultipartUpload
MAX_PART_NUMBER = 10000
CHUNK = 1024 * 1024
_AUTH_RE = re.compile(
    r"^OSS4-HMAC-SHA256 Credential=(?P<ak>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<product>[^/,\s]+)/aliyun_v4_request"
    r"(?:,\s*AdditionalHeaders=(?P<additional>[^,\s]+))?,\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


class OSSError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


@dataclass
class OSSCall:
    """One request as the stand-in received it, and how it answered."""

    method: str
    path: str
    query: dict[str, str]
    action: str = "?"
    bucket: Optional[str] = None
    key: Optional[str] = None
    status: int = 0
    error_code: Optional[str] = None
    request_id: str = ""
    bytes_received: int = 0


@dataclass
class _Object:
    path: Path
    size: int
    crc64: str
    etag: str
    content_type: str
    last_modified: _dt.datetime
    object_type: str = "Normal"


@dataclass
class _Upload:
    bucket: str
    key: str
    content_type: str
    directory: Path
    parts: dict[int, tuple[Path, int, str, str]] = field(default_factory=dict)  # n -> (path, size, md5 etag, crc64)


def _crc64() -> Any:
    import crcmod  # crcmod-plus (test extra; the OSS SDK needs it as well)

    return crcmod.Crc(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)


def signing_key(secret: str, date: str, region: str, product: str = "oss") -> bytes:
    key = hmac.new(("aliyun_v4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, product, "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class OSSStandIn(LoopbackServer):
    """A threaded loopback OSS endpoint for one region (see the module doc)."""

    thread_name = "oss-stand-in"

    def __init__(self, root: Path, *, region: str = "cn-hangzhou", buckets: tuple[str, ...] = (),
                 access_key_id: str = TEST_ACCESS_KEY_ID, access_key_secret: str = TEST_ACCESS_KEY_SECRET,
                 security_token: Optional[str] = None) -> None:
        self.root = Path(root)
        self.region = region
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.security_token = security_token
        self.buckets: dict[str, dict[str, _Object]] = {}
        self.uploads: dict[str, _Upload] = {}
        self.calls: list[OSSCall] = []
        #: False plays a bucket whose policy does not let Function Compute read it (no oss:GetObject)
        self.function_compute_may_read = True
        #: False plays a HEAD error answered without the ``x-oss-err`` header (status only): the SDK
        #: then raises ServiceError code ``BadErrorResponse``, which its own ``is_object_exist``
        #: reads as absent on a 404 [sdk-oss ``_client.py`` ``_to_service_error``, ``client.py``]
        self.head_error_header = True
        self._lock = threading.RLock()
        self.root.mkdir(parents=True, exist_ok=True)
        for bucket in buckets:
            self.create_bucket(bucket)

    # -- test controls ---------------------------------------------------------------------------
    def create_bucket(self, name: str) -> None:
        with self._lock:
            self.buckets.setdefault(name, {})
            (self.root / "objects" / name).mkdir(parents=True, exist_ok=True)

    def object_bytes(self, bucket: str, key: str) -> Optional[bytes]:
        with self._lock:
            found = self.buckets.get(bucket, {}).get(key)
            return found.path.read_bytes() if found is not None else None

    def read_for_function_compute(self, bucket: str, key: str) -> Optional[bytes]:
        """What FC gets when it fetches a function's code from OSS (None: unable to access it)."""
        if not self.function_compute_may_read:
            return None
        return self.object_bytes(bucket, key)

    def keys(self, bucket: str) -> list[str]:
        with self._lock:
            return sorted(self.buckets.get(bucket, {}))

    def calls_of(self, *actions: str) -> list[OSSCall]:
        with self._lock:
            return [c for c in self.calls if c.action in actions]

    def bytes_uploaded(self) -> int:
        """Body bytes received by successful PutObject / UploadPart calls."""
        with self._lock:
            return sum(c.bytes_received for c in self.calls if c.action in ("PutObject", "UploadPart") and c.status < 300)

    def fail_next(self, action: str, times: int = 1, *, status: int = 503, code: str = "ServiceUnavailable",
                  message: str = "Please reduce your request rate.") -> None:
        with self._lock:
            self._inject(action, times, (status, code, message))

    # -- lifecycle ----------------------------------------------------------------------------------
    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- request handling ------------------------------------------------------------------------------
    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        raw_path, _, raw_query = http.path.partition("?")
        pairs = [pair.partition("=") for pair in raw_query.split("&") if pair]
        query = {unquote(k): unquote(v) for k, _, v in pairs}
        call = OSSCall(http.command, unquote(raw_path), query, request_id=uuid.uuid4().hex.upper()[:24])
        bucket, _, key = call.path.lstrip("/").partition("/")
        call.bucket, call.key = bucket or None, key or None
        call.action = _action(http.command, call.key, query)
        body: Optional[Path] = None
        try:
            try:
                self._authenticate(http, raw_path, raw_query)
            except OSSError:
                self._drain(http)
                raise
            body, received, md5, crc = self._receive(http)
            call.bytes_received = received
            injected = self._take_injected(call.action)
            if injected is not None:
                raise OSSError(*injected)
            if call.bucket is None or call.key is None:
                raise OSSError(501, "NotImplemented", f"the stand-in serves object operations only, not {call.method} {call.path}")
            if call.action == "?":
                raise OSSError(501, "NotImplemented", f"{call.method} {call.path} with {sorted(query)} is not served here")
            content_md5 = http.headers.get("Content-MD5")
            if content_md5 and base64.b64decode(content_md5) != md5.digest():
                raise OSSError(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
            status, headers, payload = getattr(self, f"_{call.action}")(http, call, body, received, md5, crc)
        except OSSError as error:
            call.error_code = error.code
            status, headers, payload = error.status, {}, self._error_document(error, call)
            if http.command == "HEAD":
                if self.head_error_header:
                    headers["x-oss-err"] = base64.b64encode(payload).decode()
                payload = b""
            headers["Content-Type"] = "application/xml"
        finally:
            if body is not None:
                body.unlink(missing_ok=True)
        call.status = status
        with self._lock:
            self.calls.append(call)
        self._answer(http, call, status, headers, payload)

    def _answer(self, http: BaseHTTPRequestHandler, call: OSSCall, status: int, headers: dict[str, str], payload: Any) -> None:
        http.send_response(status)
        http.send_header("Server", "AliyunOSS")
        http.send_header("x-oss-request-id", call.request_id)
        for name, value in headers.items():
            http.send_header(name, value)
        if isinstance(payload, Path):  # GetObject: stream the file
            http.send_header("Content-Length", str(payload.stat().st_size))
            http.end_headers()
            with payload.open("rb") as source:
                shutil.copyfileobj(source, http.wfile, CHUNK)
            return
        data = payload or b""
        if "Content-Length" not in headers:
            http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        if data and http.command != "HEAD":
            http.wfile.write(data)

    def _error_document(self, error: OSSError, call: OSSCall) -> bytes:
        fields = {"Code": error.code, "Message": error.message, "RequestId": call.request_id, "HostId": self.endpoint, **error.extra}
        inner = "".join(f"<{name}>{escape(str(value))}</{name}>" for name, value in fields.items())
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{inner}</Error>'.encode()

    def _drain(self, http: BaseHTTPRequestHandler) -> None:
        path, _, _, _ = self._receive(http)
        if path is not None:
            path.unlink(missing_ok=True)

    def _receive(self, http: BaseHTTPRequestHandler) -> tuple[Optional[Path], int, Any, Any]:
        """The request body streamed to a file (Content-Length or chunked), with its MD5 and CRC-64."""
        md5, crc = hashlib.md5(), _crc64()
        chunked = "chunked" in (http.headers.get("Transfer-Encoding") or "").lower()
        length = int(http.headers.get("Content-Length") or 0)
        if not chunked and length == 0:
            return None, 0, md5, crc
        spool = self.root / "incoming"
        spool.mkdir(exist_ok=True)
        handle, name = tempfile.mkstemp(dir=spool)
        received = 0
        with os.fdopen(handle, "wb") as out:
            for block in _chunked(http.rfile) if chunked else _sized(http.rfile, length):
                out.write(block)
                md5.update(block)
                crc.update(block)
                received += len(block)
        return Path(name), received, md5, crc

    def _authenticate(self, http: BaseHTTPRequestHandler, raw_path: str, raw_query: str) -> None:
        headers = {name.lower(): value.strip() for name, value in http.headers.items()}
        authorization = headers.get("authorization", "")
        if not authorization:
            raise OSSError(403, "AccessDenied", "You have no right to access this object because of bucket acl.")
        match = _AUTH_RE.match(authorization)
        if match is None:
            raise OSSError(400, "InvalidArgument", "Authorization header is invalid: expected an OSS4-HMAC-SHA256 V4 signature")
        if match["ak"] != self.access_key_id:
            raise OSSError(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.",
                           OSSAccessKeyId=match["ak"])
        if self.security_token is not None and headers.get("x-oss-security-token") != self.security_token:
            raise OSSError(403, "InvalidSecurityToken", "The security token you provided is invalid.")
        sent = headers.get("x-oss-date", "")
        try:
            when = _dt.datetime.strptime(sent, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise OSSError(403, "AccessDenied", f"x-oss-date {sent!r} is missing or not YYYYMMDDThhmmssZ") from None
        if abs(_dt.datetime.now(_dt.timezone.utc) - when) > MAX_CLOCK_SKEW:
            raise OSSError(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
        if match["date"] != sent[:8]:
            raise OSSError(403, "SignatureDoesNotMatch", "the date in the signing scope is not the date of x-oss-date")
        if match["region"] != self.region or match["product"] != "oss":
            raise OSSError(403, "SignatureDoesNotMatch",
                           f"the signing scope names region {match['region']!r} and product {match['product']!r}; "
                           f"this endpoint is region {self.region!r}, product 'oss'")
        payload_hash = headers.get("x-oss-content-sha256")
        if payload_hash != "UNSIGNED-PAYLOAD":
            raise OSSError(400, "InvalidArgument", "x-oss-content-sha256 must be UNSIGNED-PAYLOAD")
        additional = [name for name in (match["additional"] or "").split(";") if name]
        if additional != sorted(additional):
            raise OSSError(400, "InvalidArgument", "AdditionalHeaders must be sorted")
        signed = sorted(name for name in headers
                        if name.startswith("x-oss-") or name in ("content-type", "content-md5") or name in additional)
        canonical = "\n".join([
            http.command,
            quote(unquote(raw_path), safe="/"),
            _canonical_query(raw_query),
            "".join(f"{name}:{headers[name]}\n" for name in signed),
            ";".join(additional),
            payload_hash,
        ])
        string_to_sign = "\n".join(["OSS4-HMAC-SHA256", sent, f"{match['date']}/{match['region']}/oss/aliyun_v4_request",
                                    hashlib.sha256(canonical.encode()).hexdigest()])
        expected = hmac.new(signing_key(self.access_key_secret, match["date"], match["region"]), string_to_sign.encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["sig"]):
            raise OSSError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. "
                           "Check your key and signing method.", StringToSign=string_to_sign)

    # -- operations ---------------------------------------------------------------------------------------
    def _bucket(self, name: str) -> dict[str, _Object]:
        found = self.buckets.get(name)
        if found is None:
            raise OSSError(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=name)
        return found

    def _object(self, bucket: str, key: str) -> _Object:
        found = self._bucket(bucket).get(key)
        if found is None:
            raise OSSError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        return found

    def _store(self, bucket: str, key: str, source: Path, size: int, crc: str, etag: str, content_type: str,
               object_type: str = "Normal") -> _Object:
        target = self.root / "objects" / bucket / hashlib.sha256(key.encode()).hexdigest()
        os.replace(source, target)
        stored = _Object(target, size, crc, etag, content_type, _dt.datetime.now(_dt.timezone.utc), object_type)
        self.buckets[bucket][key] = stored
        return stored

    @staticmethod
    def _object_headers(found: _Object) -> dict[str, str]:
        return {"ETag": found.etag, "x-oss-hash-crc64ecma": found.crc64, "Content-Type": found.content_type,
                "Last-Modified": format_datetime(found.last_modified, usegmt=True), "x-oss-object-type": found.object_type,
                "x-oss-storage-class": "Standard", "Content-Length": str(found.size)}

    def _PutObject(self, http: BaseHTTPRequestHandler, call: OSSCall, body: Optional[Path], size: int, md5: Any, crc: Any) -> tuple:
        with self._lock:
            self._bucket(call.bucket)
            if body is None:
                body = Path(tempfile.mkstemp(dir=self.root)[1])
            etag = f'"{md5.hexdigest().upper()}"'
            stored = self._store(call.bucket, call.key, body, size, str(crc.crcValue), etag,
                                 http.headers.get("Content-Type") or "application/octet-stream")
        return 200, {"ETag": stored.etag, "x-oss-hash-crc64ecma": stored.crc64, "Content-MD5": base64.b64encode(md5.digest()).decode()}, b""

    def _HeadObject(self, http: BaseHTTPRequestHandler, call: OSSCall, *_: Any) -> tuple:
        with self._lock:
            found = self._object(call.bucket, call.key)
            return 200, self._object_headers(found), b""

    def _GetObject(self, http: BaseHTTPRequestHandler, call: OSSCall, *_: Any) -> tuple:
        with self._lock:
            found = self._object(call.bucket, call.key)
            headers = self._object_headers(found)
            headers.pop("Content-Length")
            return 200, headers, found.path

    def _DeleteObject(self, http: BaseHTTPRequestHandler, call: OSSCall, *_: Any) -> tuple:
        with self._lock:
            found = self._bucket(call.bucket).pop(call.key, None)  # deleting a missing object succeeds too
            if found is not None:
                found.path.unlink(missing_ok=True)
        return 204, {}, b""

    def _InitiateMultipartUpload(self, http: BaseHTTPRequestHandler, call: OSSCall, *_: Any) -> tuple:
        with self._lock:
            self._bucket(call.bucket)
            upload_id = uuid.uuid4().hex.upper()
            directory = self.root / "uploads" / upload_id
            directory.mkdir(parents=True)
            self.uploads[upload_id] = _Upload(call.bucket, call.key, http.headers.get("Content-Type") or "application/octet-stream", directory)
        url = call.query.get("encoding-type") == "url"
        key = quote(call.key, safe="") if url else escape(call.key)
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult><Bucket>{escape(call.bucket)}</Bucket>'
                f"<Key>{key}</Key><UploadId>{upload_id}</UploadId>{'<EncodingType>url</EncodingType>' if url else ''}"
                "</InitiateMultipartUploadResult>")
        return 200, {"Content-Type": "application/xml"}, body.encode()

    def _upload(self, call: OSSCall) -> _Upload:
        self._bucket(call.bucket)
        upload = self.uploads.get(call.query.get("uploadId", ""))
        if upload is None or (upload.bucket, upload.key) != (call.bucket, call.key):
            raise OSSError(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload "
                           "may have been aborted or completed.", UploadId=call.query.get("uploadId", ""))
        return upload

    def _UploadPart(self, http: BaseHTTPRequestHandler, call: OSSCall, body: Optional[Path], size: int, md5: Any, crc: Any) -> tuple:
        number = call.query.get("partNumber", "")
        if not number.isdigit() or not 1 <= int(number) <= MAX_PART_NUMBER:
            raise OSSError(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive.",
                           ArgumentName="PartNumber", ArgumentValue=number)
        with self._lock:
            upload = self._upload(call)
            target = upload.directory / f"{int(number):05d}"
            if body is None:
                target.write_bytes(b"")
            else:
                os.replace(body, target)
            etag = f'"{md5.hexdigest().upper()}"'
            upload.parts[int(number)] = (target, size, etag, str(crc.crcValue))
        return 200, {"ETag": etag, "x-oss-hash-crc64ecma": str(crc.crcValue), "Content-MD5": base64.b64encode(md5.digest()).decode()}, b""

    def _CompleteMultipartUpload(self, http: BaseHTTPRequestHandler, call: OSSCall, body: Optional[Path], *_: Any) -> tuple:
        try:
            document = ElementTree.fromstring(body.read_bytes() if body is not None else b"")
        except ElementTree.ParseError:
            raise OSSError(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.") from None
        listed = [(int(part.findtext("PartNumber") or 0), (part.findtext("ETag") or "").strip()) for part in document.iter("Part")]
        with self._lock:
            upload = self._upload(call)
            if not listed:
                raise OSSError(400, "InvalidArgument", "the CompleteMultipartUpload body lists no part")
            numbers = [n for n, _ in listed]
            if numbers != sorted(set(numbers)):
                raise OSSError(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts list must be specified in order by part number.")
            for n, etag in listed:
                part = upload.parts.get(n)
                if part is None or part[2].strip('"') != etag.strip('"'):
                    raise OSSError(400, "InvalidPart", "One or more of the specified parts could not be found or the specified entity tag "
                                   "might not have matched the part's entity tag.", PartNumber=str(n))
            for n, _ in listed[:-1]:
                if upload.parts[n][1] < MIN_PART_SIZE:
                    raise OSSError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.", PartNumber=str(n))
            handle, name = tempfile.mkstemp(dir=self.root)
            crc, digest, size = _crc64(), hashlib.md5(), 0
            with os.fdopen(handle, "wb") as out:
                for n, _ in listed:
                    with upload.parts[n][0].open("rb") as part_file:
                        for block in iter(lambda: part_file.read(CHUNK), b""):
                            out.write(block)
                            crc.update(block)
                            size += len(block)
                    digest.update(bytes.fromhex(upload.parts[n][2].strip('"')))
            etag = f'"{digest.hexdigest().upper()}-{len(listed)}"'
            stored = self._store(upload.bucket, upload.key, Path(name), size, str(crc.crcValue), etag, upload.content_type, "Multipart")
            del self.uploads[call.query["uploadId"]]
            shutil.rmtree(upload.directory, ignore_errors=True)
        url = call.query.get("encoding-type") == "url"
        key = quote(call.key, safe="") if url else escape(call.key)
        answer = (f'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult>{"<EncodingType>url</EncodingType>" if url else ""}'
                  f"<Location>http://{self.endpoint}/{escape(call.bucket)}/{key}</Location><Bucket>{escape(call.bucket)}</Bucket>"
                  f"<Key>{key}</Key><ETag>{escape(etag)}</ETag></CompleteMultipartUploadResult>")
        return 200, {"Content-Type": "application/xml", "ETag": etag, "x-oss-hash-crc64ecma": stored.crc64}, answer.encode()

    def _AbortMultipartUpload(self, http: BaseHTTPRequestHandler, call: OSSCall, *_: Any) -> tuple:
        with self._lock:
            upload = self._upload(call)
            del self.uploads[call.query["uploadId"]]
            shutil.rmtree(upload.directory, ignore_errors=True)
        return 204, {}, b""


def _action(method: str, key: Optional[str], query: dict[str, str]) -> str:
    if key is None:
        return "?"
    if method == "PUT":
        return "UploadPart" if "uploadId" in query else "PutObject"
    if method == "POST":
        return "InitiateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload" if "uploadId" in query else "?"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "GET":
        return "?" if "uploadId" in query else "GetObject"
    return "?"


def _canonical_query(raw_query: str) -> str:
    """The query as signed: the pairs as sent (already encoded), sorted, ``k=v`` or ``k`` alone."""
    pairs = sorted(pair.partition("=")[::2] for pair in raw_query.split("&") if pair)
    return "&".join(f"{k}={v}" if v else k for k, v in pairs)


def _sized(stream: Any, length: int) -> Any:
    left = length
    while left > 0:
        block = stream.read(min(CHUNK, left))
        if not block:
            raise OSSError(400, "IncompleteBody", "the request body ended before Content-Length bytes")
        left -= len(block)
        yield block


def _chunked(stream: Any) -> Any:
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass
            return
        yield from _sized(stream, size)
        stream.readline()
