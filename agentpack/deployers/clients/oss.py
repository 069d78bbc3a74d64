"""Object Storage Service (OSS) calls the FC deployer needs to ship code above FC's inline limit.

Function Compute takes a function's code inline up to 100 MB zipped, or from an OSS object up to
500 MB.  This module puts the artifact into an **existing** bucket with the real SDK
(``alibabacloud-oss-v2``) and the deployer's own credentials:

* the object key is content-addressed — ``<prefix>/<function>/<sha256>.zip`` — and a HEAD
  comes first, so an artifact already in the bucket (same bytes, same CRC-64) is never sent
  again;
* the file is streamed: the SDK's uploader sends it in parts read from the file (a multipart
  upload above one part), so memory stays flat whatever the artifact's size;
* the CRC-64 (ECMA-182, what OSS reports and FC's ``code.checksum`` takes) is computed from
  the file and must match what OSS stored;
* a bucket that does not exist is a configuration error naming it; nothing here creates one.

No presigned URL is made: FC reads the object with the caller's own permissions.  The SDK is
imported inside functions so that ``import agentpack`` stays light.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from agentpack.deployers.clients.alibaba import AlibabaConfigError, Credentials, RetryPolicy, resolve_endpoint
from agentpack.deployers.errors import PlatformError, require_modules

if TYPE_CHECKING:
    import alibabacloud_oss_v2 as oss

T = TypeVar("T")

ENDPOINT_ENV = "AGENTPACK_OSS_ENDPOINT"
#: Parts of the multipart upload: read from the file one at a time per worker.
PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 3
_READ_BLOCK = 1024 * 1024


class MissingBucket(AlibabaConfigError):
    """The configured bucket does not exist (agentpack never creates one)."""


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    crc64: str


def crc64_of(path: Path) -> str:
    """The file's CRC-64/ECMA-182 as OSS and FC write it (a decimal string), read in blocks."""
    import crcmod  # crcmod-plus: the C implementation the OSS SDK uses as well

    crc = crcmod.Crc(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)
    with Path(path).open("rb") as source:
        for block in iter(lambda: source.read(_READ_BLOCK), b""):
            crc.update(block)
    return str(crc.crcValue)


def object_key(folder: str, function: str, sha256: str) -> str:
    return "/".join(part for part in (folder.strip("/"), function, f"{sha256}.zip") if part)


def absent(error: PlatformError) -> bool:
    """Whether a HeadObject error means "no such object".  ``NoSuchKey`` says so; so does a 404
    whose HEAD answer carried no ``x-oss-err`` header to read a code from (a HEAD has no body),
    which the SDK reports as ``BadErrorResponse`` — its own ``Client.is_object_exist`` counts
    that pair as absent too (alibabacloud-oss-v2 1.4.1, ``client.py``).  Without this, the first
    upload of every artifact would fail on such an answer."""
    return error.code == "NoSuchKey" or (error.status == 404 and error.code == "BadErrorResponse")


def require_sdk() -> None:
    """The OSS SDK is in the ``fc`` extra; checked before a deploy that needs it makes any call."""
    require_modules(("alibabacloud_oss_v2",), "FC code through OSS", "fc")


class OSSApi:
    """One region's OSS, reached with the deployer's credentials (``endpoint`` overrides the region's)."""

    def __init__(
        self,
        *,
        region: str | None,
        credentials: Credentials,
        endpoint: str | None = None,
        environ: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        require_sdk()
        env = os.environ if environ is None else environ
        self.endpoint = resolve_endpoint(endpoint, ENDPOINT_ENV, env)
        if not region:  # V4 signatures name the region even when the endpoint is given
            raise AlibabaConfigError(
                "OSS needs the bucket's region to sign requests: set [targets.fc] region or oss_region"
            )
        self.region = region
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self._client: oss.Client | None = None

    @property
    def client(self) -> oss.Client:
        if self._client is None:
            import alibabacloud_oss_v2 as oss

            config = oss.config.load_default()
            config.credentials_provider = oss.credentials.StaticCredentialsProvider(
                self.credentials.access_key_id, self.credentials.access_key_secret, self.credentials.security_token
            )
            config.region = self.region
            config.retry_max_attempts = self.retry.max_attempts
            config.user_agent = "agentpack"
            if self.endpoint is not None:
                config.endpoint = f"{self.endpoint.protocol}://{self.endpoint.host}"
            self._client = oss.Client(config)
        return self._client

    def where(self, bucket: str, key: str = "") -> str:
        return f"oss://{bucket}/{key}"

    # -- calls --------------------------------------------------------------------------------------
    def head(self, bucket: str, key: str) -> StoredObject | None:
        """The object's size and CRC-64, or None when there is no such object."""
        import alibabacloud_oss_v2 as oss

        try:
            found = self._call(
                "HeadObject", bucket, lambda: self.client.head_object(oss.HeadObjectRequest(bucket=bucket, key=key))
            )
        except PlatformError as error:
            if absent(error):
                return None
            raise
        return StoredObject(bucket, key, int(found.content_length or 0), str(found.hash_crc64 or ""))

    def upload_unless_present(
        self, bucket: str, key: str, path: Path, progress: Callable[[str, str], None]
    ) -> tuple[StoredObject, bool]:
        """Put ``path`` at ``key`` unless the bucket holds these very bytes (size and CRC-64) there
        already: a redeploy of the same artifact uploads nothing.  Returns the object and whether
        it was uploaded now; says what it does through ``progress(step, message)``."""
        where = self.where(bucket, key)
        crc64 = crc64_of(path)
        size = path.stat().st_size
        found = self.head(bucket, key)
        if found is not None and found.crc64 == crc64 and found.size == size:
            progress("upload", f"{where} already holds this artifact; not uploaded again")
            return found, False
        megabytes = size / 1e6
        progress("upload", f"uploading {megabytes:.1f} MB to {where}")
        started = time.perf_counter()
        stored = self.upload_file(bucket, key, path, crc64)
        seconds = time.perf_counter() - started
        progress(
            "upload", f"{where}: {megabytes:.1f} MB in {seconds:.2f} s ({megabytes / max(seconds, 1e-6):.0f} MB/s)"
        )
        return stored, True

    def upload_file(
        self, bucket: str, key: str, path: Path, crc64: str, progress: Callable[[int, int], None] | None = None
    ) -> StoredObject:
        """Stream ``path`` to ``bucket/key`` (multipart above one part) and check OSS stored ``crc64``."""
        import alibabacloud_oss_v2 as oss

        def on_progress(_increment: int, transferred: int, total: int) -> None:
            if progress is not None:
                progress(transferred, total)

        request = oss.PutObjectRequest(bucket=bucket, key=key, content_type="application/zip", progress_fn=on_progress)
        uploader = self.client.uploader(part_size=PART_SIZE, parallel_num=PARALLEL_PARTS)
        result = self._call("PutObject", bucket, lambda: uploader.upload_file(request, str(path)))
        stored = str(result.hash_crc64 or "")
        if stored and stored != crc64:
            raise PlatformError(
                "InconsistentCRC",
                f"{self.where(bucket, key)} holds CRC-64 {stored}, the artifact has {crc64}; "
                "the upload was corrupted: deploy again",
                result.request_id or None,
                None,
                "PutObject",
            )
        return StoredObject(bucket, key, Path(path).stat().st_size, crc64)

    def delete(self, bucket: str, key: str) -> bool:
        """Delete the object; False when the bucket is gone (a missing key is not an error in OSS)."""
        import alibabacloud_oss_v2 as oss

        try:
            self._call(
                "DeleteObject",
                bucket,
                lambda: self.client.delete_object(oss.DeleteObjectRequest(bucket=bucket, key=key)),
            )
        except MissingBucket:
            return False
        return True

    # -- errors -------------------------------------------------------------------------------------
    def _call(self, action: str, bucket: str, request: Callable[[], T]) -> T:
        try:
            return request()
        except Exception as exc:  # the SDK wraps what the service said; find it
            if type(exc).__module__.split(".")[0] != "alibabacloud_oss_v2":
                raise
            raise self._to_error(action, bucket, exc) from exc

    def _to_error(self, action: str, bucket: str, exc: BaseException) -> Exception:
        from alibabacloud_oss_v2 import exceptions

        inner: BaseException = exc  # OperationError / UploadError wrap the cause: unwrap to it
        while not isinstance(inner, (exceptions.ServiceError, exceptions.InconsistentError)):
            unwrap = getattr(inner, "unwrap", None)
            if not callable(unwrap):
                break
            cause = unwrap()
            if cause is None:
                break
            inner = cause
        if isinstance(inner, exceptions.ServiceError):
            request_id = inner.request_id or None
            if inner.code == "NoSuchBucket":
                return MissingBucket(
                    f"[targets.fc] oss_bucket: the bucket {bucket!r} does not exist in OSS region {self.region} "
                    f"(NoSuchBucket, request id {request_id}); create it (agentpack never creates buckets) or name an existing one"
                )
            message = inner.message or str(inner.code)
            if inner.status_code == 403:
                needed = "GetObject" if action == "HeadObject" else action
                message += f" — the credentials need oss:{needed} on acs:oss:*:*:{bucket}/* (see docs/deploy.md, RAM permissions)"
            return PlatformError(str(inner.code or "OSSError"), message, request_id, inner.status_code or None, action)
        if isinstance(inner, exceptions.InconsistentError):
            return PlatformError(
                "InconsistentCRC", f"OSS stored other bytes than were sent ({inner}); deploy again", None, None, action
            )
        where = f"{self.endpoint.protocol}://{self.endpoint.host}" if self.endpoint else f"OSS in {self.region}"
        return PlatformError("ConnectionError", f"could not reach {where}: {str(inner)[:300]}", None, None, action)
