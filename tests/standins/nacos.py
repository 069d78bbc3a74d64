"""Loopback stand-in for the parts of a Nacos 3.1/3.2 server that ``NacosRegistry`` uses: login
and the A2A Admin API (``/nacos/v3/admin/ai/a2a``).

It checks each request the way the server does — exact paths and methods, parameters bound
from the query string or an urlencoded form body only (Spring binds the controllers' plain form
objects from request parameters; a JSON body binds nothing), the forms' required fields and
values, the card fields the server requires, the token the Admin API demands — and answers in
the server's shapes: ``{code, message, data}`` with HTTP status = the exception's status for the
API's own errors, Spring's error JSON for the auth filter's 403, and the bare login answer.
Every request is recorded in order (``calls``, ``actions()``).

Sources, by tag (the same as README.md's Nacos section):

* [SRC-3.1.0] alibaba/nacos at the 3.1.0 release commit 2cbe8ae611ba9b011548b3cf7e407f25f856f4e3
  (read in the snapshot of the fork chrelyonly/chrelyonly-nacos); 3.2.0 (35198bea…) behaves the same
  in every point used here.
* [SWAGGER] the published Admin API: https://nacos.io/swagger/admin/ (nacos-group.github.io
  public/swagger/admin/en/api.json, info.version 3.2.2), tag "Nacos AI A2A Related APIs".
* [DOC-A2A] https://nacos.io/docs/v3.1/manual/user/ai/agent-registry
* [DOC-AUTH] https://nacos.io/docs/latest/manual/admin/auth (login, token, tokenTtl) and
  https://nacos.io/en/docs/next/manual/user/auth (accessToken header / Bearer / parameter).
* [DOC-ADMIN-API] https://nacos.io/docs/latest/manual/admin/admin-api (§0.1 one envelope for all 3.x APIs).
* [PY-SDK] nacos-sdk-python 3.2.0, v2/nacos/ai/remote/ai_http_client_proxy.py (Spas signature).
* [assumed] not found in a source; chosen to be plausible and marked so.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Optional
from urllib.parse import parse_qsl, unquote

from .loopback import LoopbackServer

CONTEXT = "/nacos"  # server.servlet.contextPath=/nacos [SRC-3.1.0 distribution/conf/application.properties]
A2A_PATH = CONTEXT + "/v3/admin/ai/a2a"  # Constants.A2A.ADMIN_PATH [SRC-3.1.0; SWAGGER]
LOGIN_V3 = CONTEXT + "/v3/auth/user/login"  # UserControllerV3 @PostMapping("/login") under /v3/auth/user [SRC-3.1.0; DOC-AUTH]
LOGIN_V1 = (CONTEXT + "/v1/auth/login", CONTEXT + "/v1/auth/users/login")  # UserController @RequestMapping({"/v1/auth", "/v1/auth/users"}) [SRC-3.1.0]

# ErrorCode(code, msg) [SRC-3.1.0 api/.../model/v2/ErrorCode.java]
PARAMETER_MISSING = (10000, "parameter missing")
PARAMETER_VALIDATE_ERROR = (20002, "parameter validate error")
RESOURCE_CONFLICT = (20005, "resource conflict")
SERVER_ERROR = (30000, "server error")
AGENT_NOT_FOUND = (50100, "Agent not found")
AGENT_VERSION_NOT_FOUND = (50101, "Agent version not found")

# AbstractAuthenticationManager.USER_NOT_FOUND_MESSAGE; NacosSignatureAlgorithm "token invalid!" /
# "token expired!" [SRC-3.1.0 plugin-default-impl/nacos-default-auth-plugin]
USER_NOT_FOUND = "User not found! Please check user exist or password is right!"

TEST_USERNAME = "nacos"
TEST_PASSWORD = "s3cret-Pa55word-for-loopback"


class NacosApiError(Exception):
    """An answer in the API's envelope: ``NacosApiExceptionHandler`` answers HTTP ``errCode`` with
    ``{"code": ErrorCode.code, "message": ErrorCode.msg, "data": detail}`` [SRC-3.1.0
    core/.../exception/NacosApiExceptionHandler.java]."""

    def __init__(self, status: int, error: tuple[int, str], detail: Optional[str]) -> None:
        super().__init__(f"{status} {error[0]}: {detail}")
        self.status, self.code, self.message, self.detail = status, error[0], error[1], detail


class _Forbidden(Exception):
    """The auth filter's ``resp.sendError(403, msg)`` [SRC-3.1.0 core/.../auth/AbstractWebAuthFilter.java]."""


@dataclass
class NacosCall:
    """One request as the stand-in received it, and how it answered."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    action: str = "?"
    status: int = 0
    code: Optional[int] = None

    @property
    def params(self) -> dict[str, str]:
        """What the server binds: query and form parameters together (query first, as the servlet API)."""
        return {**self.form, **self.query}


@dataclass
class _Agent:
    """One agent in one namespace: AgentCardVersionInfo plus each version's AgentCardDetailInfo."""

    name: str
    registration_type: str
    latest: Optional[str]  # latestPublishedVersion
    details: list[dict[str, Any]] = field(default_factory=list)  # AgentVersionDetail {version, createdAt, updatedAt, latest}
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> stored card


class NacosStandIn(LoopbackServer):
    """Nacos's login and A2A Admin API on a free loopback port.

    ``auth`` (default on: ``nacos.core.auth.admin.enabled=true`` guards the Admin API out of the
    box [SRC-3.1.0 distribution/conf/application.properties; DOC-ADMIN-API §0.3]) requires a
    valid token on every admin call.  ``v3_login=False`` answers 404 on the 3.x login path (an
    older server).  ``access_key``/``secret_key`` make it check the Spas signature as
    nacos-sdk-python computes it, over ``signed_namespace`` [PY-SDK; what MSE itself checks is not
    published: assumed].
    """

    thread_name = "nacos-stand-in"

    def __init__(self, *, auth: bool = True, username: str = TEST_USERNAME, password: str = TEST_PASSWORD,
                 token_ttl: int = 18000, v3_login: bool = True, access_key: Optional[str] = None,
                 secret_key: Optional[str] = None, signed_namespace: str = "") -> None:
        self.auth, self.username, self.password = auth, username, password
        #: the namespace the client is expected to sign: its configured one, empty when unset [PY-SDK]
        self.signed_namespace = signed_namespace
        self.token_ttl, self.v3_login = token_ttl, v3_login
        self.access_key, self.secret_key = access_key, secret_key
        self.calls: list[NacosCall] = []
        self.agents: dict[tuple[str, str], _Agent] = {}
        self._tokens: set[str] = set()
        self._lock = threading.RLock()

    # -- what tests read and script --------------------------------------------------------------
    @property
    def address(self) -> str:
        """``host:port``, what NACOS_SERVER_ADDR holds."""
        return f"127.0.0.1:{self.port}"

    def actions(self) -> list[str]:
        with self._lock:
            return [call.action for call in self.calls]

    def calls_of(self, action: str) -> list[NacosCall]:
        with self._lock:
            return [call for call in self.calls if call.action == action]

    def card(self, name: str, version: str, namespace: str = "public") -> Optional[dict[str, Any]]:
        """The stored card of one version, or ``None``."""
        with self._lock:
            agent = self.agents.get((namespace, name))
            return copy.deepcopy(agent.cards.get(version)) if agent else None

    def versions(self, name: str, namespace: str = "public") -> list[str]:
        with self._lock:
            agent = self.agents.get((namespace, name))
            return [d["version"] for d in agent.details] if agent else []

    def latest_version(self, name: str, namespace: str = "public") -> Optional[str]:
        with self._lock:
            agent = self.agents.get((namespace, name))
            return agent.latest if agent else None

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on ("token expired!")."""
        with self._lock:
            self._tokens.clear()

    def fail_next(self, action: str, times: int = 1, *, status: int = 500, error: tuple[int, str] = SERVER_ERROR,
                  detail: str = "injected failure") -> None:
        """Answer the next ``times`` calls of ``action`` with this envelope error."""
        with self._lock:
            self._inject(action, times, (status, error, detail))

    # -- request handling --------------------------------------------------------------------------
    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        raw_path, _, raw_query = http.path.partition("?")
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in http.headers.items()}
        # Query string: UTF-8 percent-decoding (Tomcat's URIEncoding default) [SRC-3.1.0 Spring Boot 3 defaults].
        query = dict(parse_qsl(raw_query, keep_blank_values=True, encoding="utf-8"))
        form: dict[str, str] = {}
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        # Form bodies become request parameters: Tomcat parses them for POST, Spring Boot's
        # FormContentFilter for PUT/PATCH/DELETE (on by default); Nacos's own ITs PUT forms
        # (alibaba/nacos test/openapi-test/.../A2aAdminApiOpenApiITCase.java, putForm).  Spring Boot
        # forces UTF-8 on requests (server.servlet.encoding).  Any other body binds nothing.
        if content_type == "application/x-www-form-urlencoded" and body:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8"))
        call = NacosCall(http.command, unquote(raw_path), query, form, headers, body)
        status, payload, extra = self._dispatch(call)
        call.status = status
        if isinstance(payload, dict) and isinstance(payload.get("code"), int):
            call.code = payload["code"]
        with self._lock:
            self.calls.append(call)
        if isinstance(payload, str):
            data, ctype = payload.encode("utf-8"), "text/plain;charset=UTF-8"
        else:
            data, ctype = json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json"
        http.send_response(status)
        http.send_header("Content-Type", ctype)
        for name, value in extra.items():
            http.send_header(name, value)
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        http.wfile.write(data)

    def _dispatch(self, call: NacosCall) -> tuple[int, Any, dict[str, str]]:
        routes = {
            (LOGIN_V3, "POST"): ("login", self._login),
            (LOGIN_V1[0], "POST"): ("login-v1", self._login),
            (LOGIN_V1[1], "POST"): ("login-v1", self._login),
            # operationIds from [SWAGGER]; every one `x-nacos-api-since: 3.1.0`.
            (A2A_PATH, "POST"): ("registerAgent", self._register),
            (A2A_PATH, "PUT"): ("updateAgentCard", self._update),
            (A2A_PATH, "GET"): ("getAgentCard", self._get),
            (A2A_PATH, "DELETE"): ("deleteAgent", self._delete),
            (A2A_PATH + "/list", "GET"): ("listAgents", self._list),
            (A2A_PATH + "/version/list", "GET"): ("listAgentVersions", self._list_versions),
        }
        known_paths = {path for path, _ in routes}
        route = routes.get((call.path, call.method))
        if route is None:
            # Spring's own answers for an unmapped path / method [assumed: Spring Boot defaults].
            status, error = (405, "Method Not Allowed") if call.path in known_paths else (404, "Not Found")
            call.action = f"{call.method} {call.path}"
            return status, self._spring_error(status, error, "", call.path), {}
        call.action, handler = route
        if call.action == "login" and not self.v3_login:
            return 404, self._spring_error(404, "Not Found", "", call.path), {}
        try:
            if call.action.startswith("listAgent") or call.action in ("registerAgent", "updateAgentCard", "getAgentCard", "deleteAgent"):
                self._authorize(call)
                injected = self._take_injected(call.action)
                if injected is not None:
                    raise NacosApiError(*injected)
            with self._lock:
                return handler(call)
        except _Forbidden as denied:
            return 403, self._spring_error(403, "Forbidden", str(denied), call.path), {}
        except NacosApiError as error:
            return error.status, {"code": error.code, "message": error.message, "data": error.detail}, {}

    @staticmethod
    def _spring_error(status: int, error: str, message: str, path: str) -> dict[str, Any]:
        """Spring Boot's error JSON for ``sendError``; the message is included because Nacos sets
        ``server.error.include-message=ALWAYS`` [SRC-3.1.0 distribution/conf/application.properties]."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat()
        return {"timestamp": now, "status": status, "error": error, "message": message, "path": path}

    # -- authentication -----------------------------------------------------------------------------
    def _login(self, call: NacosCall) -> tuple[int, Any, dict[str, str]]:
        params = call.params
        if "username" not in params or "password" not in params:
            # @RequestParam String username, password: MissingServletRequestParameterException → 400 [SRC-3.1.0]
            return 400, self._spring_error(400, "Bad Request", "Required parameter 'username' or 'password' is not present.", call.path), {}
        if params["username"] != self.username or params["password"] != self.password:
            # AccessException(USER_NOT_FOUND_MESSAGE) [SRC-3.1.0 AbstractAuthenticationManager]; the console's
            # handler answers it 403 with the text [SRC-3.1.0 console/.../ConsoleExceptionHandler.java]; the
            # status on the server port is [assumed] the same.
            return 403, USER_NOT_FOUND, {}
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        # {accessToken, tokenTtl, globalAdmin, username}, not in the envelope, plus the
        # Authorization: Bearer header [DOC-AUTH; SRC-3.1.0 UserControllerV3.login].
        answer = {"accessToken": token, "tokenTtl": self.token_ttl, "globalAdmin": True, "username": self.username}
        return 200, answer, {"Authorization": f"Bearer {token}"}

    def _authorize(self, call: NacosCall) -> None:
        if self.access_key and self.secret_key:
            self._check_signature(call)
        if not self.auth:
            return
        # The token: header `accessToken` (swagger securityScheme apiKey/header), `Authorization:
        # Bearer`, or the `accessToken` parameter; raw username+password parameters also
        # authenticate [DOC-AUTH; SRC-3.1.0 auth/.../HttpIdentityContextBuilder.java, AbstractAuthenticationManager].
        bearer = call.headers.get("authorization", "")
        token = call.headers.get("accesstoken") or (bearer[7:] if bearer.startswith("Bearer ") else "") or call.params.get("accessToken", "")
        with self._lock:
            if token:
                if token not in self._tokens:
                    raise _Forbidden("token expired!")
                return
        params = call.params
        if params.get("username") == self.username and params.get("password") == self.password:
            return
        raise _Forbidden(USER_NOT_FOUND)

    def _check_signature(self, call: NacosCall) -> None:
        """Spas-Signature = base64(HMAC-SHA1(SK, "<namespace>+DEFAULT_GROUP+<Timestamp>")) [PY-SDK];
        the namespace signed is the client's configured one, empty when unset [PY-SDK; assumed server side]."""
        if call.headers.get("spas-accesskey") != self.access_key:
            raise _Forbidden("invalid access key")
        timestamp = call.headers.get("timestamp", "")
        if not timestamp.isdigit() or abs(int(timestamp) - time.time() * 1000) > 15 * 60 * 1000:
            raise _Forbidden("invalid Timestamp")
        signature = call.headers.get("spas-signature", "")
        namespace = self.signed_namespace
        expected = base64.b64encode(hmac.new(str(self.secret_key).encode(), f"{namespace}+DEFAULT_GROUP+{timestamp}".encode(), hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(signature, expected):
            raise _Forbidden("signature mismatch")

    # -- forms ----------------------------------------------------------------------------------------
    @staticmethod
    def _namespace(params: dict[str, str]) -> str:
        # AgentForm.fillDefaultNamespaceId: empty → "public" [SRC-3.1.0; AiConstants.A2a.A2A_DEFAULT_NAMESPACE]
        return params.get("namespaceId") or "public"

    @staticmethod
    def _agent_name(params: dict[str, str]) -> str:
        name = params.get("agentName", "")
        if not name:  # AgentForm.validate [SRC-3.1.0 ai/.../form/a2a/admin/AgentForm.java]
            raise NacosApiError(400, PARAMETER_MISSING, "Required parameter 'name' type String is not present")
        return name

    @staticmethod
    def _registration_type(params: dict[str, str], default: Optional[str]) -> Optional[str]:
        value = params.get("registrationType") or default
        # AgentCardForm.validateRegistrationType: exactly URL or SERVICE [SRC-3.1.0 AgentCardForm.java]
        if value is not None and value not in ("URL", "SERVICE"):
            raise NacosApiError(400, PARAMETER_VALIDATE_ERROR,
                                f"Required parameter 'registrationType' value should be `URL` or `SERVICE` but was `{value}`")
        return value

    @staticmethod
    def _parse_card(params: dict[str, str]) -> dict[str, Any]:
        text = params.get("agentCard", "")
        if not text:  # AgentCardForm.validate [SRC-3.1.0]
            raise NacosApiError(400, PARAMETER_MISSING, "Request parameter `agentCard` should not be `null` or empty.")
        try:
            card = json.loads(text)
        except ValueError:
            card = None
        if not isinstance(card, dict):  # AgentRequestUtil.parseAgentCard [SRC-3.1.0 ai/.../utils/AgentRequestUtil.java]
            raise NacosApiError(400, PARAMETER_VALIDATE_ERROR, "agentCard is invalid. Can't be parsed.")
        # AgentRequestUtil.validateAgentCard: these must be non-empty strings; the rest gets defaults.
        for name in ("name", "version", "protocolVersion", "preferredTransport", "url"):
            if not card.get(name):
                raise NacosApiError(400, PARAMETER_MISSING, f"Required parameter `agentCard.{name}` not present")
        card.setdefault("description", "")
        card.setdefault("capabilities", {})
        for name in ("defaultInputModes", "defaultOutputModes", "skills"):
            card.setdefault(name, [])
        return card

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    # -- A2A admin operations [SRC-3.1.0 ai/.../service/a2a/A2aServerOperationService.java] ---------------
    def _ok(self, data: Any = "ok") -> tuple[int, Any, dict[str, str]]:
        return 200, {"code": 0, "message": "success", "data": data}, {}  # Result.success [SWAGGER examples]

    def _find(self, namespace: str, name: str) -> _Agent:
        agent = self.agents.get((namespace, name))
        if agent is None:  # queryAgentCardVersionInfo
            raise NacosApiError(404, AGENT_NOT_FOUND, f"Agent not found: {name}")
        return agent

    def _register(self, call: NacosCall) -> tuple[int, Any, dict[str, str]]:
        params = call.params
        kind = self._registration_type(params, "URL")  # fillDefaultRegistrationType → URL
        card = self._parse_card(params)
        namespace, name = self._namespace(params), card["name"]  # the name comes from the card
        if (namespace, name) in self.agents:  # ConfigAlreadyExistsException → 409 RESOURCE_CONFLICT
            raise NacosApiError(409, RESOURCE_CONFLICT, f"AgentCard name {name} already exist")
        now = self._now_ms()
        agent = _Agent(name=name, registration_type=str(kind), latest=card["version"])
        agent.details.append({"version": card["version"], "createdAt": now, "updatedAt": now, "latest": True})
        agent.cards[card["version"]] = {**card, "registrationType": kind}
        self.agents[(namespace, name)] = agent
        return self._ok()

    def _update(self, call: NacosCall) -> tuple[int, Any, dict[str, str]]:
        params = call.params
        kind = self._registration_type(params, None)  # update fills no default: empty keeps the stored type
        card = self._parse_card(params)
        set_as_latest = params.get("setAsLatest", "false").lower() == "true"  # boolean, default false [SWAGGER]
        agent = self._find(self._namespace(params), card["name"])
        version, now = card["version"], self._now_ms()
        if not any(d["version"] == version for d in agent.details):
            agent.details.append({"version": version, "createdAt": now, "updatedAt": now, "latest": set_as_latest})
        if kind:
            agent.registration_type = kind
        agent.cards[version] = {**card, "registrationType": agent.registration_type}
        if set_as_latest:
            agent.latest = version
            for detail in agent.details:
                detail["latest"] = detail["version"] == version
                if detail["latest"]:
                    detail["updatedAt"] = now
        return self._ok()

    def _get(self, call: NacosCall) -> tuple[int, Any, dict[str, str]]:
        params = call.params
        name = self._agent_name(params)
        agent = self._find(self._namespace(params), name)
        version = params.get("version") or ""
        if not version:  # queryLatestVersion: the detail flagged latest
            latest = next((d["version"] for d in agent.details if d["latest"]), None)
            if latest is None:
                raise NacosApiError(404, AGENT_VERSION_NOT_FOUND, f"Agent {name} latest version not found")
            version = latest
        stored = agent.cards.get(version)
        if stored is None:  # queryTargetVersion
            raise NacosApiError(404, AGENT_VERSION_NOT_FOUND, f"Agent {name} version {version} not found.")
        if agent.latest is None:
            # queryTargetVersion calls getLatestPublishedVersion().equals(...), which is null once the
            # latest version was deleted: a NullPointerException, answered by handleOtherException as
            # 500 Result.failure(message) [SRC-3.1.0; unchanged at 3.2.0 and develop of 2026-04].
            raise NacosApiError(500, (SERVER_ERROR[0], 'Cannot invoke "String.equals(Object)" because the return value of '
                                 '"com.alibaba.nacos.api.ai.model.a2a.AgentCardVersionInfo.getLatestPublishedVersion()" is null'), None)
        return self._ok({**copy.deepcopy(stored), "latestVersion": version == agent.latest})

    def _delete(self, call: NacosCall) -> tuple[int, Any, dict[str, str]]:
        params = call.params
        namespace, name = self._namespace(params), self._agent_name(params)
        agent = self.agents.get((namespace, name))
        if agent is None:  # CONFIG_NOT_FOUND → return: success
            return self._ok()
        version = params.get("version") or ""
        if not version:  # no version: every version and the agent
            del self.agents[(namespace, name)]
            return self._ok()
        agent.cards.pop(version, None)
        if len(agent.details) == 1 and agent.details[0]["version"] == version:
            del self.agents[(namespace, name)]
        else:
            agent.details = [d for d in agent.details if d["version"] != version]
            if agent.latest == version:
                agent.latest = None
        return self._ok()

    def _list(self, call: NacosCall) -> tuple[int, Any, dict[str, str]]:
        params = call.params
        # AgentListForm.validate runs before PageForm.validate; search is compared ignoring case and
        # anything but accurate/blur (empty included) is refused [SRC-3.1.0 AgentListForm.java, PageForm.java].
        search = params.get("search", "").lower()
        if search not in ("blur", "accurate"):
            raise NacosApiError(400, PARAMETER_VALIDATE_ERROR, "Request parameter `search` should be `accurate` or `blur`.")
        numbers = {}
        for key in ("pageNo", "pageSize"):
            try:  # int fields: a missing one stays 0; text that is no number fails binding [assumed: 400/20002]
                numbers[key] = int(params.get(key) or 0)
            except ValueError:
                raise NacosApiError(400, PARAMETER_VALIDATE_ERROR, f"Failed to convert '{key}' to int") from None
            if numbers[key] < 1:
                raise NacosApiError(400, PARAMETER_VALIDATE_ERROR,
                                    f"Required parameter '{key}' should be positive integer, current is {numbers[key]}")
        page_no, page_size = numbers["pageNo"], numbers["pageSize"]
        namespace, wanted = self._namespace(params), params.get("agentName", "")
        items = [
            {"name": a.name, "latestPublishedVersion": a.latest, "registrationType": a.registration_type,
             "versionDetails": copy.deepcopy(a.details)}
            for (ns, _), a in sorted(self.agents.items()) if ns == namespace
            and (not wanted or (wanted in a.name if search == "blur" else wanted == a.name))
        ]
        start = (page_no - 1) * page_size
        pages = (len(items) + page_size - 1) // page_size
        return self._ok({"totalCount": len(items), "pageNumber": page_no, "pagesAvailable": pages,
                         "pageItems": items[start:start + page_size]})

    def _list_versions(self, call: NacosCall) -> tuple[int, Any, dict[str, str]]:
        params = call.params
        agent = self._find(self._namespace(params), self._agent_name(params))
        return self._ok(copy.deepcopy(agent.details))
