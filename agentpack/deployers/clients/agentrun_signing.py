"""Signed calls to an AgentRun endpoint that is not open to anyone.

An agent runtime whose ``credentialName`` names an inbound credential answers on its public
host (``<account>.agentrun-data.<region>.aliyuncs.com``) only to callers presenting that
credential.  The account's own AccessKey reaches the same paths on the host with ``-ram``
after its first label (``<account>-ram.agentrun-data.…``), signed with the scheme Alibaba's
AgentRun SDK uses for its data-plane calls (Serverless-Devs/agentrun-sdk-python,
``agentrun/utils/data_api.py`` and ``agentrun/utils/ram_signature/README.md``):

* algorithm ``AGENTRUN4-HMAC-SHA256``, payload ``UNSIGNED-PAYLOAD`` (the body is not hashed, so a
  streamed or retried body signs the same);
* signed headers ``host``, ``x-acs-content-sha256``, ``x-acs-date`` and, with STS credentials,
  ``x-acs-security-token``;
* canonical request ``METHOD \\n path \\n sorted query \\n headers \\n signed names \\n payload``,
  string to sign ``AGENTRUN4-HMAC-SHA256 \\n sha256(canonical request)``;
* key: HMAC-SHA256 chained from ``"aliyun_v4" + secret`` over the date, the region, ``agentrun``
  and ``aliyun_v4_request``; the result goes in ``Agentrun-Authorization``.

This is what ``agentpack invoke``, ``stop`` and the chat page's relay send, the way FC's signed
triggers are called with ``AcsSignatureAuth``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
from collections.abc import Generator
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import httpx

ALGORITHM = "AGENTRUN4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
PRODUCT = "agentrun"
SCOPE_END = "aliyun_v4_request"
#: the data-plane domains that have a ``-ram`` twin (the SDK's list)
DATA_DOMAINS = ("agentrun-data", "funagent-data-pre")


def ram_url(url: str) -> str:
    """``url`` on the signed ``-ram`` host when it is an AgentRun data-plane URL; else unchanged."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    first, dot, rest = host.partition(".")
    if not dot or not any(rest.startswith(f"{domain}.") for domain in DATA_DOMAINS) or first.endswith("-ram"):
        return url
    netloc = f"{first}-ram.{rest}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def region_of(url: str) -> str | None:
    """The region in an AgentRun data-plane host (``….agentrun-data.<region>.aliyuncs.com``)."""
    labels = (urlsplit(url).hostname or "").split(".")
    for index, label in enumerate(labels[:-1]):
        if label in DATA_DOMAINS:
            return labels[index + 1]
    return None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(
    method: str,
    url: str,
    access_key_id: str,
    access_key_secret: str,
    region: str,
    *,
    security_token: str | None = None,
    when: _dt.datetime | None = None,
) -> dict[str, str]:
    """The headers that sign one request to ``url`` (see the module doc)."""
    moment = (when or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    day = moment.strftime("%Y%m%d")
    parts = urlsplit(url)
    headers = {
        "host": parts.netloc,
        "x-acs-content-sha256": UNSIGNED,
        "x-acs-date": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if security_token:
        headers["x-acs-security-token"] = security_token
    names = sorted(headers)
    query = "&".join(
        f"{quote(key, safe='')}={quote(value, safe='')}"
        for key, value in sorted(parse_qsl(parts.query, keep_blank_values=True))
    )
    canonical = "\n".join(
        [
            method.upper(),
            parts.path or "/",
            query,
            "".join(f"{name}:{headers[name].strip()}\n" for name in names),
            ";".join(names),
            UNSIGNED,
        ]
    )
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("aliyun_v4" + access_key_secret).encode()
    for part in (day, region, PRODUCT, SCOPE_END):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    scope = f"{day}/{region}/{PRODUCT}/{SCOPE_END}"
    authorization = (
        f"{ALGORITHM} Credential={access_key_id}/{scope},SignedHeaders={';'.join(names)},Signature={signature}"
    )
    return {**{k: v for k, v in headers.items() if k != "host"}, "Agentrun-Authorization": authorization}


class AgentRunRamAuth(httpx.Auth):
    """Signs each request to an AgentRun endpoint's ``-ram`` host with the account's AccessKey."""

    def __init__(
        self, access_key_id: str, access_key_secret: str, security_token: str | None = None, region: str | None = None
    ) -> None:
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self._token = security_token
        self.region = region

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = str(request.url)
        region = region_of(url) or self.region or "cn-hangzhou"
        for name, value in signed_headers(
            request.method, url, self.access_key_id, self._secret, region, security_token=self._token
        ).items():
            request.headers[name] = value
        yield request
