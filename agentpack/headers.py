"""The headers that name a run's session, shared by the app (which sets them), the platform
adapters (which read them to stop a run near a deadline), the emulators and deployers (FC's
session affinity keys on the request header) and the client (which sends it).

Ids are any Unicode text, so they travel percent-encoded (UTF-8, RFC 3986): ASCII letters,
digits and ``-._~`` stay as they are, everything else becomes ``%XX``.  A percent-encoded id
does not fit Function Compute's rule for HeaderField affinity ids (1-64 characters of
``[A-Za-z0-9_][A-Za-z0-9_-]*``), so clients also send ``AFFINITY_HEADER``: a short hash of the
user and session that always fits, which the platform routes on while the app keeps reading
the full ids from the session headers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

SESSION_HEADER = "X-Agentpack-Session-Id"
USER_HEADER = "X-Agentpack-User-Id"
#: The header a platform's session affinity routes on (Function Compute's HeaderField affinity).
AFFINITY_HEADER = "X-Agentpack-Affinity"
#: Where a client sends an app's API key when a platform's request signing owns ``Authorization``.
API_KEY_HEADER = "X-Agentpack-Api-Key"

__all__ = [
    "AFFINITY_HEADER",
    "API_KEY_HEADER",
    "SESSION_HEADER",
    "USER_HEADER",
    "affinity_key",
    "encode_id",
    "run_session",
    "session_headers",
]


#: An id made only of what percent-encoding leaves as it is (RFC 3986's unreserved characters).
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def encode_id(value: str | None) -> str:
    """An id as a header value (percent-encoded UTF-8); most ids (the hex ones agentpack makes)
    need no encoding, which a match finds at a fraction of ``quote``'s cost."""
    if not value:
        return ""
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


def affinity_key(session_id: str, user_id: str | None = None) -> str:
    """The affinity id of a session: 32 hex digits of SHA-256 over user and session (the user
    defaults to the session, as in ``session_headers``), so a run and its stop pin alike."""
    user = user_id or session_id
    return hashlib.sha256(f"{user}\x00{session_id}".encode()).hexdigest()[:32]


def session_headers(session_id: str | None, user_id: str | None = None) -> dict[str, str]:
    """Both headers for a session (the user defaults to the session, as for requests)."""
    headers = {SESSION_HEADER: encode_id(session_id)}
    if user_id or session_id:
        headers[USER_HEADER] = encode_id(user_id or session_id)
    return headers


def run_session(raw_headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """``(user_id, session_id)`` named by ASGI response headers, decoded; None without them."""
    names = {name.lower(): value for name, value in raw_headers}
    session = names.get(SESSION_HEADER.lower().encode())
    if session is None:
        return None
    user = names.get(USER_HEADER.lower().encode(), session)
    return unquote(user.decode("latin-1")), unquote(session.decode("latin-1"))
