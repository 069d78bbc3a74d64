"""The headers that name a run's session, shared by the app (which sets them), the platform
adapters (which read them to stop a run near a deadline), the emulators and deployers (FC's
session affinity keys on the request header) and the client (which sends it).

Ids are any Unicode text, so they travel percent-encoded (UTF-8, RFC 3986): ASCII letters,
digits and ``-._~`` stay as they are, everything else becomes ``%XX``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, unquote

SESSION_HEADER = "X-Agentpack-Session-Id"
USER_HEADER = "X-Agentpack-User-Id"

__all__ = ["SESSION_HEADER", "USER_HEADER", "encode_id", "run_session", "session_headers"]


def encode_id(value: str | None) -> str:
    """An id as a header value (percent-encoded UTF-8)."""
    return quote(value or "", safe="")


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
