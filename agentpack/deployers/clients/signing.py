"""Signing requests to a deployed agent whose URL is not public.

* Function Compute HTTP triggers with ``authType: function`` check the Alibaba Cloud V3
  signature (ACS3-HMAC-SHA256) made with an AccessKey of the account, the same scheme the
  control plane uses; the Alibaba Cloud SDK (``alibabacloud_tea_openapi``, which the fc extra
  installs) computes it from the canonical request — method, path, sorted query, the signed
  headers, the body's SHA-256 — exactly as it does for its own control-plane calls.
* Lambda function URLs with ``AuthType: AWS_IAM`` check AWS Signature V4 for the service
  ``lambda``; botocore signs it with the credentials of the standard AWS chain.

Both are ``httpx.Auth`` flows, so the signature covers the exact bytes sent.  What is ours is
only which headers are signed and how httpx's request is handed to the SDK.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import uuid
from collections.abc import Generator
from types import SimpleNamespace
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

if TYPE_CHECKING:
    from botocore.credentials import Credentials

ACS3 = "ACS3-HMAC-SHA256"


class AcsSignatureAuth(httpx.Auth):
    """ACS3-HMAC-SHA256 for FC HTTP triggers with signature authentication (see the module doc)."""

    requires_request_body = True

    def __init__(self, access_key_id: str, access_key_secret: str, security_token: str | None = None) -> None:
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self._token = security_token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from alibabacloud_tea_openapi.utils import Utils

        payload_hash = hashlib.sha256(request.content).hexdigest()
        request.headers["x-acs-date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        request.headers["x-acs-signature-nonce"] = uuid.uuid4().hex
        request.headers["x-acs-content-sha256"] = payload_hash
        if self._token:
            request.headers["x-acs-security-token"] = self._token
        headers = {name.lower(): value for name, value in request.headers.items()}
        headers["host"] = request.url.netloc.decode("ascii")
        signed = {
            name: value
            for name, value in headers.items()
            if name in ("host", "content-type") or name.startswith("x-acs-")
        }
        parts = urlsplit(str(request.url))
        # the SDK encodes the query's values; its own names never need it, a URL's may
        query = {quote(name, safe="~"): value for name, value in parse_qsl(parts.query, keep_blank_values=True)}
        canonical = SimpleNamespace(
            method=request.method.upper(), pathname=parts.path or "/", query=query, headers=signed
        )
        request.headers["Authorization"] = Utils.get_authorization(
            canonical, ACS3, payload_hash, self.access_key_id, self._secret
        )
        yield request


class AwsSigV4Auth(httpx.Auth):
    """AWS Signature V4 for Lambda function URLs with ``AuthType: AWS_IAM`` (botocore signs)."""

    requires_request_body = True

    def __init__(self, credentials: Credentials, region: str, service: str = "lambda") -> None:
        self._credentials = credentials
        self.region = region
        self.service = service

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        unsigned = {k: v for k, v in request.headers.items() if k.lower() not in ("connection", "accept-encoding")}
        aws = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=unsigned)
        SigV4Auth(self._credentials.get_frozen_credentials(), self.service, self.region).add_auth(aws)
        for name, value in aws.headers.items():
            request.headers[name] = value
        yield request
