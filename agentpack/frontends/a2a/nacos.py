"""``NacosRegistry``: publishes the agent's A2A card to a Nacos (3.1 or later) agent registry.

Why HTTP and not the Nacos SDK: ``nacos-sdk-python`` (3.0.x, 3.2.0) subclasses a2a-sdk 0.3's
``AgentCard`` in its AI module and imports that module from its gRPC transport, so none of it —
not even ``import v2.nacos`` — imports beside a2a-sdk 1.x, which agentpack needs; the
maintainer SDK depends on it.  So this module speaks the **published HTTP Admin API** for A2A
(``/nacos/v3/admin/ai/a2a``, Nacos 3.1.0+; https://nacos.io/swagger/admin/ , tag "Nacos AI A2A
Related APIs") with httpx, which agentpack already depends on.

What it does, per start and stop of the app (the A2A adapter calls it; failures are logged and
never keep the agent from serving):

* ``register``: log in when a username and password are set, then *upsert* the card: ``GET``
  this name and version; if the agent is unknown ``POST`` it, otherwise ``PUT`` it with
  ``setAsLatest=true`` (a new version is added, an existing one refreshed — the URL may have
  changed since the last start).  The card's ``url`` is where the agent answers now.
* ``deregister``: ``DELETE`` this card **version** only (never the agent's other versions).

Only ``registrationType=URL`` is offered: the card's ``url`` is the endpoint, which needs
nothing but published calls.  ``SERVICE`` (endpoints as naming-service instances of group
``agent-endpoints`` kept alive by heartbeats) is left out on purpose: for HTTP clients before
Nacos 3.3 it rests on a convention found only in the server's source
(``ai/.../A2aServerOperationService.injectEndpoint``), not in its docs or swagger.

Deregistering on shutdown suits one instance per version.  When several instances serve one
version behind one URL (a serverless function scaling in, a replica set), the first instance
to stop would withdraw the card from under the others: pass ``deregister_on_shutdown=False``.

Nothing heavy is imported at module level (httpx is imported when a call is made).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from agentpack.frontends.a2a.config import DEFAULT_TRANSPORT, A2ARegistry, A2ATransportsProperties

logger = logging.getLogger("agentpack.a2a")

#: AgentScope Runtime's variables and default (``agentscope_runtime/engine/deployers/adapter/
#: a2a/nacos_a2a_registry.py``, ``NacosSettings``); a registry is built from the environment
#: only when at least one of them is present.
ENV_KEYS = (
    "NACOS_SERVER_ADDR",
    "NACOS_USERNAME",
    "NACOS_PASSWORD",
    "NACOS_NAMESPACE_ID",
    "NACOS_ACCESS_KEY",
    "NACOS_SECRET_KEY",
)
DEFAULT_SERVER_ADDR = "localhost:8848"
#: Nacos's web context path (``server.servlet.contextPath=/nacos``, distribution/conf/application.properties).
DEFAULT_CONTEXT_PATH = "/nacos"
#: An empty ``namespaceId`` means ``public`` on every A2A form (alibaba/nacos 3.1.0
#: ``ai/.../form/a2a/admin/AgentForm.java``, ``AiConstants.A2a.A2A_DEFAULT_NAMESPACE``).
DEFAULT_NAMESPACE = "public"
DEFAULT_TIMEOUT = 5.0

#: The A2A admin API (swagger ``x-nacos-api-since: 3.1.0``; ``Constants.A2A.ADMIN_PATH``).
A2A_ADMIN_PATH = "/v3/admin/ai/a2a"
#: Login: ``POST /v3/auth/user/login`` (nacos.io docs/latest/manual/admin/auth; 3.1.0
#: ``UserControllerV3``); the Java client falls back to the 1.x/2.x path on 404/501
#: (alibaba/nacos ``client-basic/.../auth/impl/process/HttpLoginProcessor.java``).
LOGIN_PATH = "/v3/auth/user/login"
LEGACY_LOGIN_PATH = "/v1/auth/users/login"
#: Token lifetime when the login answer gives none (``nacos.core.auth.plugin.nacos.token.expire.seconds``).
DEFAULT_TOKEN_TTL = 18000

# Body codes of the {code, message, data} envelope (3.1.0 ``api/.../model/v2/ErrorCode.java``).
RESOURCE_CONFLICT = 20005
AGENT_NOT_FOUND = 50100
AGENT_VERSION_NOT_FOUND = 50101

#: ``registrationType`` values (3.1.0 ``AiConstants.A2a``); only URL is offered, see the module doc.
REGISTRATION_TYPES = ("URL",)
#: What the card declares when the runtime gave no value: the A2A 0.3 card shape Nacos 3.1-3.2
#: validate (``AgentRequestUtil.validateAgentCard`` requires name, version, protocolVersion,
#: preferredTransport and url).
DEFAULT_PROTOCOL_VERSION = "0.3.0"
#: Agent names: at most 64 characters, visible ASCII only (nacos.io docs/v3.1/manual/user/ai/agent-registry).
MAX_NAME_LENGTH = 64


class NacosRegistryError(RuntimeError):
    """A Nacos call failed: the operation, the HTTP status, Nacos's body code and its message.

    Messages never carry the password, the access token or the secret key.
    """

    def __init__(self, operation: str, message: str, *, status: int | None = None, code: int | None = None) -> None:
        self.operation, self.status, self.code, self.detail = operation, status, code, message
        where = ", ".join(
            part
            for part in (f"HTTP {status}" if status is not None else "", f"code {code}" if code is not None else "")
            if part
        )
        super().__init__(f"Nacos {operation} failed" + (f" ({where})" if where else "") + f": {message}")


@dataclass
class _Answer:
    """One HTTP answer from Nacos, read whatever its shape."""

    status: int
    code: int | None
    message: str
    data: Any

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.code == 0


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    return value if value else None


class NacosRegistry(A2ARegistry):
    """Registers the agent's card with Nacos over its HTTP Admin API; see the module doc.

    Keywords follow the Nacos client's ``ClientConfigBuilder`` that AgentScope Runtime fills
    from the environment: ``server_address`` (``host:port``, several comma-separated, an
    ``http(s)://`` prefix kept; an address with a path is used as the whole base, context path
    included), ``username``/``password`` (Nacos auth; the Admin API needs it by default,
    ``nacos.core.auth.admin.enabled=true``), ``namespace_id`` (default ``public``),
    ``access_key``/``secret_key`` (Alibaba Cloud MSE). A keyword left ``None`` is read from
    its ``NACOS_*`` variable, so ``NacosRegistry()`` configures itself from the environment as
    AgentScope Runtime's does.  ``timeout`` bounds each HTTP request (seconds); ``set_as_latest``
    makes the registered version the agent's latest; ``deregister_on_shutdown`` (see the module
    doc) deletes this version when the app stops.
    """

    def __init__(
        self,
        server_address: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        namespace_id: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        registration_type: str = "URL",
        context_path: str = DEFAULT_CONTEXT_PATH,
        timeout: float = DEFAULT_TIMEOUT,
        set_as_latest: bool = True,
        deregister_on_shutdown: bool = True,
    ) -> None:
        environ = os.environ
        kind = (registration_type or "URL").upper()
        if kind not in REGISTRATION_TYPES:
            raise ValueError(
                f"registration_type {registration_type!r} is not supported: only 'URL' (the card's url is the endpoint). "
                "SERVICE registration over HTTP relies on an unpublished Nacos convention before Nacos 3.3"
            )
        self.registration_type = kind
        self.server_address = server_address or _env("NACOS_SERVER_ADDR", environ) or DEFAULT_SERVER_ADDR
        self.username = username if username is not None else _env("NACOS_USERNAME", environ)
        self._password = password if password is not None else _env("NACOS_PASSWORD", environ)
        given_namespace = namespace_id if namespace_id is not None else _env("NACOS_NAMESPACE_ID", environ)
        #: what the Spas signature covers (the SDK signs its configured namespace, empty when unset)
        self._signed_namespace = given_namespace or ""
        self.namespace_id = given_namespace or DEFAULT_NAMESPACE
        self.access_key = access_key if access_key is not None else _env("NACOS_ACCESS_KEY", environ)
        self._secret_key = secret_key if secret_key is not None else _env("NACOS_SECRET_KEY", environ)
        self.timeout = timeout
        self.set_as_latest = set_as_latest
        self.deregister_on_shutdown = deregister_on_shutdown
        self._bases = _bases(self.server_address, context_path)
        self._current = 0  # index of the server that answered last
        self._token: str | None = None
        self._token_expires = 0.0

    # -- construction from the environment -------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> NacosRegistry:
        """A registry configured by ``NACOS_SERVER_ADDR`` (default ``localhost:8848``),
        ``NACOS_USERNAME``, ``NACOS_PASSWORD``, ``NACOS_NAMESPACE_ID``, ``NACOS_ACCESS_KEY``
        and ``NACOS_SECRET_KEY``; other keywords pass through."""
        env = os.environ if environ is None else environ
        return cls(
            server_address=_env("NACOS_SERVER_ADDR", env) or DEFAULT_SERVER_ADDR,
            username=_env("NACOS_USERNAME", env) or "",
            password=_env("NACOS_PASSWORD", env) or "",
            namespace_id=_env("NACOS_NAMESPACE_ID", env) or "",
            access_key=_env("NACOS_ACCESS_KEY", env) or "",
            secret_key=_env("NACOS_SECRET_KEY", env) or "",
            **kwargs,
        )

    def registry_name(self) -> str:
        return "nacos"

    def __repr__(self) -> str:  # never the password or the secret key
        user = f", username={self.username!r}" if self.username else ""
        return f"NacosRegistry(server_address={self.server_address!r}, namespace_id={self.namespace_id!r}{user})"

    # -- the card ----------------------------------------------------------------------------------
    def build_card(
        self, agent_card: Any, a2a_transports_properties: Sequence[A2ATransportsProperties] | None = None
    ) -> dict[str, Any]:
        """The card JSON Nacos is given: the A2A 0.3 card (camelCase) with ``url`` where the
        agent answers now.  Raises ``ValueError`` for a card Nacos would refuse."""
        card = _card_dict(agent_card)
        transports = [t for t in (a2a_transports_properties or []) if t is not None and t.host]
        if transports:
            preferred = card.get("preferredTransport") or DEFAULT_TRANSPORT
            chosen = next(
                (t for t in transports if (t.transport_type or DEFAULT_TRANSPORT) == preferred), transports[0]
            )
            card["url"] = _transport_url(chosen)
            card["preferredTransport"] = chosen.transport_type or DEFAULT_TRANSPORT
            if len(transports) > 1:
                card["additionalInterfaces"] = [
                    {"url": _transport_url(t), "transport": t.transport_type or DEFAULT_TRANSPORT} for t in transports
                ]
        if not card.get("protocolVersion"):
            card["protocolVersion"] = DEFAULT_PROTOCOL_VERSION
        if not card.get("preferredTransport"):
            card["preferredTransport"] = DEFAULT_TRANSPORT
        _check_card(card)
        return card

    # -- A2ARegistry -------------------------------------------------------------------------------
    async def register(
        self, agent_card: Any, a2a_transports_properties: list[A2ATransportsProperties] | None = None
    ) -> None:
        """Publish (or refresh) this version of the card; raises :class:`NacosRegistryError`."""
        card = self.build_card(agent_card, a2a_transports_properties)
        name, version = card["name"], card["version"]
        # ASCII JSON (non-ASCII as \\u escapes): the form then means the same to a server whatever
        # charset it assumes for form bodies, and Jackson reads the escapes back.
        form = {
            "namespaceId": self.namespace_id,
            "agentCard": json.dumps(card, separators=(",", ":")),
            "registrationType": self.registration_type,
        }
        update = {**form, "setAsLatest": "true" if self.set_as_latest else "false"}
        async with self._client() as client:
            found = await self._call(
                client,
                "GET",
                "get agent card",
                query={"namespaceId": self.namespace_id, "agentName": name, "version": version},
            )
            if found.ok or found.code == AGENT_VERSION_NOT_FOUND:
                answer = await self._call(client, "PUT", "update agent card", form=update)
            elif found.code == AGENT_NOT_FOUND:
                answer = await self._call(client, "POST", "register agent", form=form)
                if answer.status == 409 or answer.code == RESOURCE_CONFLICT:  # registered meanwhile by another instance
                    answer = await self._call(client, "PUT", "update agent card", form=update)
            elif found.status == 403:
                raise self._error("get agent card", found)
            else:
                # Nacos 3.1.0-3.2.0 answer 500 to a GET of any version once the latest version was
                # deleted (``queryTargetVersion`` dereferences a null latestPublishedVersion); a
                # PUT still works there, so try it before giving up.
                logger.debug("[A2A] Nacos GET of %s %s answered %s; trying an update", name, version, found.status)
                answer = await self._call(client, "PUT", "update agent card", form=update)
                if answer.code == AGENT_NOT_FOUND:
                    answer = await self._call(client, "POST", "register agent", form=form)
            if not answer.ok:
                raise self._error("register agent card", answer)
        logger.info(
            "[A2A] Nacos has agent %r version %s at %s (namespace %s)", name, version, card["url"], self.namespace_id
        )

    async def deregister(
        self, agent_card: Any, a2a_transports_properties: list[A2ATransportsProperties] | None = None
    ) -> None:
        """Delete this version of the card (only this one: without a version Nacos deletes them all)."""
        if not self.deregister_on_shutdown:
            return
        card = _card_dict(agent_card)
        name, version = card.get("name"), card.get("version")
        if not name or not version:
            raise ValueError("the agent card needs a name and a version to deregister one version from Nacos")
        async with self._client() as client:
            answer = await self._call(
                client,
                "DELETE",
                "delete agent version",
                query={"namespaceId": self.namespace_id, "agentName": name, "version": version},
            )
        if not answer.ok:
            raise self._error("delete agent version", answer)
        logger.info("[A2A] Nacos no longer has agent %r version %s (namespace %s)", name, version, self.namespace_id)

    # -- HTTP ----------------------------------------------------------------------------------------
    def _client(self) -> Any:
        import httpx

        return httpx.AsyncClient(timeout=self.timeout, headers={"User-Agent": "agentpack-nacos-registry"})

    async def _call(
        self,
        client: Any,
        method: str,
        operation: str,
        *,
        query: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> _Answer:
        """One A2A admin call: parameters in the query string (GET, DELETE) or an urlencoded form
        (POST, PUT) — the controllers bind plain request parameters, never JSON (3.1.0
        ``A2aAdminController``; Nacos's own ITs send forms, ``test/openapi-test/.../A2aAdminApiOpenApiITCase.java``).
        A 403 with a token in hand means it expired or was revoked: log in again, once."""
        for attempt in (1, 2):
            headers = self._signature_headers()
            if self._has_login():
                headers["accessToken"] = await self._access_token(
                    client, refresh=attempt == 2
                )  # swagger securitySchemes: apiKey header accessToken
            response = await self._send(
                client, method, A2A_ADMIN_PATH, operation, query=query, form=form, headers=headers
            )
            answer = self._read(response)
            if answer.status == 403 and attempt == 1 and self._has_login():
                logger.debug("[A2A] Nacos refused the token (%s); logging in again", self._redact(answer.message))
                continue
            return answer
        raise AssertionError("unreachable")

    async def _send(
        self,
        client: Any,
        method: str,
        path: str,
        operation: str,
        *,
        query: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send to the server that answered last, then to the others (a server list, as the SDK takes)."""
        import httpx

        headers = dict(headers or {})
        content = None
        if form is not None:
            content = urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8"
        failures: list[str] = []
        for offset in range(len(self._bases)):
            index = (self._current + offset) % len(self._bases)
            try:
                response = await client.request(
                    method, self._bases[index] + path, params=query, content=content, headers=headers
                )
            except httpx.TransportError as exc:
                failures.append(f"{self._bases[index]}: {type(exc).__name__}: {exc}".rstrip(": "))
                continue
            self._current = index
            return response
        raise NacosRegistryError(operation, "cannot reach Nacos (" + "; ".join(self._redact(f) for f in failures) + ")")

    def _read(self, response: Any) -> _Answer:
        """The ``{code, message, data}`` envelope every 3.x Open/Admin API answers with
        (nacos.io admin-api §0.1; errors: ``NacosApiExceptionHandler``, HTTP status = errCode),
        or the plain Spring error / text body the auth filter's ``sendError`` produces."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body and isinstance(body.get("code"), int):
            detail = body.get("data") if not (response.status_code == 200 and body["code"] == 0) else None
            message = str(body.get("message") or "")
            if isinstance(detail, str) and detail and detail != message:
                message = detail if not message or detail.startswith(message) else f"{message}: {detail}"
            return _Answer(response.status_code, body["code"], message, body.get("data"))
        if isinstance(body, dict):  # Spring Boot's error attributes: {timestamp, status, error, message, path}
            message = str(body.get("message") or body.get("error") or "")
            return _Answer(response.status_code, None, message, body)
        return _Answer(response.status_code, None, (response.text or "").strip()[:500], None)

    def _error(self, operation: str, answer: _Answer) -> NacosRegistryError:
        message = self._redact(answer.message) or "no message"
        if answer.status == 403 and self._has_login():
            message += f" (does Nacos user {self.username!r} have write access to namespace {self.namespace_id!r}?)"
        elif answer.status == 403:
            message += " (the Admin API needs a Nacos user with write access: set username/password or NACOS_USERNAME/NACOS_PASSWORD)"
        return NacosRegistryError(operation, message, status=answer.status, code=answer.code)

    # -- authentication --------------------------------------------------------------------------------
    def _has_login(self) -> bool:
        return bool(self.username and self._password)

    async def _access_token(self, client: Any, refresh: bool = False) -> str:
        if self._token and not refresh and time.monotonic() < self._token_expires:
            return self._token
        self._token = None
        form = {"username": str(self.username), "password": str(self._password)}  # in the body, never in a URL
        response = None
        for path in (LOGIN_PATH, LEGACY_LOGIN_PATH):
            response = await self._send(client, "POST", path, "login", form=form)
            if response.status_code not in (404, 501):
                break
        assert response is not None
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("accessToken") if isinstance(body, dict) else None
        if response.status_code != 200 or not token:
            answer = self._read(response)
            raise NacosRegistryError(
                "login",
                f"as user {self.username!r}: {self._redact(answer.message) or 'no access token in the answer'}",
                status=response.status_code,
                code=answer.code,
            )
        # {accessToken, tokenTtl (seconds), globalAdmin, username}, no envelope (nacos.io auth docs).
        ttl = body.get("tokenTtl") if isinstance(body.get("tokenTtl"), (int, float)) else DEFAULT_TOKEN_TTL
        self._token = str(token)
        self._token_expires = time.monotonic() + max(float(ttl) * 0.9, 0.0)  # renew a little early
        return self._token

    def _signature_headers(self) -> dict[str, str]:
        """Alibaba Cloud MSE's AK/SK signature, as nacos-sdk-python signs its AI HTTP calls
        (``v2/nacos/ai/remote/ai_http_client_proxy.py``): ``Spas-Signature`` =
        base64(HMAC-SHA1(secret key, "<namespace>+DEFAULT_GROUP+<Timestamp>")).  Open-source
        Nacos does not check it; what MSE checks is not published."""
        if not (self.access_key and self._secret_key):
            return {}
        now = str(int(time.time() * 1000))
        signed = f"{self._signed_namespace}+DEFAULT_GROUP+{now}"
        signature = base64.b64encode(
            hmac.new(self._secret_key.encode(), signed.encode(), hashlib.sha1).digest()
        ).decode()
        return {"Spas-AccessKey": self.access_key, "Timestamp": now, "Spas-Signature": signature}

    def _redact(self, text: str) -> str:
        """Server text with any secret of ours blanked out (should a server ever echo one)."""
        for secret in (self._password, self._token, self._secret_key):
            if secret and len(secret) >= 3:
                text = text.replace(secret, "***")
        return text


def create_nacos_registry_from_env(environ: Mapping[str, str] | None = None) -> NacosRegistry | None:
    """A :class:`NacosRegistry` from the ``NACOS_*`` variables, or ``None`` when none of them is
    set — AgentScope Runtime's rule: no variable means the user wants no registry."""
    env = os.environ if environ is None else environ
    if not any(key in env for key in ENV_KEYS):
        logger.info("[A2A] no NACOS_* environment variables; the Nacos registry is not enabled")
        return None
    registry = NacosRegistry.from_env(env)
    auth = [
        kind
        for kind, on in (
            ("username/password", registry._has_login()),
            ("access key", bool(registry.access_key and registry._secret_key)),
        )
        if on
    ]
    logger.info(
        "[A2A] Nacos registry from the environment: server=%s, namespace=%s, authentication=%s",
        registry.server_address,
        registry.namespace_id,
        ", ".join(auth) or "none",
    )
    return registry


# -- helpers ---------------------------------------------------------------------------------------------
def _bases(server_address: str, context_path: str) -> list[str]:
    """``scheme://host:port/context`` for each comma-separated address (``http://`` by default)."""
    context = "/" + context_path.strip("/") if context_path and context_path.strip("/") else ""
    bases = []
    for address in (part.strip() for part in server_address.split(",")):
        if not address:
            continue
        if "://" not in address:
            address = f"http://{address}"
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Nacos server address {address!r} is not host:port or an http(s):// URL")
        address = address.rstrip("/")
        bases.append(address if parts.path.strip("/") else address + context)
    if not bases:
        raise ValueError("no Nacos server address given")
    return bases


def _card_dict(agent_card: Any) -> dict[str, Any]:
    """The card as camelCase JSON: an a2a-sdk 0.3 ``AgentCard`` (what the adapter passes) or a dict."""
    dump = getattr(agent_card, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json", by_alias=True, exclude_none=True))
    if isinstance(agent_card, Mapping):
        card: dict[str, Any] = json.loads(json.dumps(dict(agent_card)))
        return card
    raise TypeError(f"agent_card must be an a2a-sdk 0.3 AgentCard or a dict, got {type(agent_card).__name__}")


def _transport_url(transport: A2ATransportsProperties) -> str:
    scheme = "https" if transport.support_tls else "http"
    host = str(transport.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = transport.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    path = transport.path or ""
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{netloc}{path}"


def _check_card(card: dict[str, Any]) -> None:
    name, version, url = card.get("name"), card.get("version"), card.get("url")
    if not name or not version:
        raise ValueError("the agent card needs a name and a version for Nacos")
    if len(name) > MAX_NAME_LENGTH or any(not 32 <= ord(ch) <= 126 for ch in name):
        raise ValueError(
            f"Nacos takes agent names of at most {MAX_NAME_LENGTH} visible ASCII characters; {name!r} is not one "
            "(set a2a_config agent_card name)"
        )
    if not url or urlsplit(str(url)).scheme not in ("http", "https"):
        raise ValueError(
            f"the agent's public URL is unknown (card url {url!r}); set a2a_config public_url or host/port, "
            "or AGENTPACK_PUBLIC_URL, so Nacos can tell clients where the agent answers"
        )


__all__ = ["NacosRegistry", "NacosRegistryError", "create_nacos_registry_from_env"]
