"""Server-sent-event encoding of protocol events.

Events are encoded to bytes here, once, so the response class only has to write them:
``data: <compact json>`` followed by a blank line, exactly what Agent API clients parse.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode

#: Characters that JSON leaves as they are but that split lines for many readers (Python's
#: ``str.splitlines``, which httpx's ``iter_lines`` uses; JavaScript before ES2019): escaped, a
#: ``data:`` line stays one line for every client.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def _safe_lines(text: str) -> str:
    """``text`` with :data:`_LINE_BREAKS` escaped.  The check comes first because it is nearly
    free (``isascii`` reads a flag the string already has; ASCII holds none of the three) while
    ``translate`` maps every character through a dict: on every frame it cost about a tenth of
    the server CPU of a whole stream."""
    if text.isascii() or ("\u2028" not in text and "\u2029" not in text and "\x85" not in text):
        return text
    return text.translate(_LINE_BREAKS)


def _dumps(value: Any) -> str:
    return _safe_lines(_encode(value))


def encode_json(value: Any) -> str:
    """Compact JSON with non-ASCII text kept as is (what AgentScope Runtime clients expect), but
    for the few characters that other readers take for line breaks."""
    return _dumps(value)


def encode_json_bytes(value: Any) -> bytes:
    """:func:`encode_json` as UTF-8 bytes.

    Text a handler produced may hold a lone surrogate (half of a UTF-16 pair), which UTF-8
    cannot carry; such a value is sent with ``\\uXXXX`` escapes instead, which every JSON
    parser reads back, rather than failing and cutting the stream.
    """
    try:
        return _dumps(value).encode("utf-8")
    except UnicodeEncodeError:
        return _dumps_ascii(value).encode("ascii")


def encode_event(event: Any) -> bytes:
    """One SSE frame carrying ``event`` as a single ``data:`` line."""
    if type(event) is dict and event.get("delta") is True and event.get("type") == "text" and len(event) == 9:
        try:
            return _text_delta(event)
        except (UnicodeEncodeError, TypeError):  # a lone surrogate; a value of another type
            pass
    return b"data: " + encode_json_bytes(event) + b"\n\n"


#: The most frequent frame by far, with the builder's keys in the builder's order.
_TEXT_DELTA = (
    'data: {"sequence_number":%d,"object":"content","status":%s,"error":null,"type":"text",'
    '"index":%d,"delta":true,"msg_id":%s,"text":%s}\n\n'
)


def _text_delta(event: dict[str, Any]) -> bytes:
    """A text delta written from a template rather than by walking the dict.

    Byte for byte what the generic encoder produces for a text delta built by
    :class:`~agentpack.protocol.events.ResponseBuilder` (same keys, same order): the strings
    go through the encoder's own C function, and the line breaks are escaped once over the
    whole frame (the template is ASCII, so they can only be in the strings).  A value of
    another type than the builder's raises ``TypeError`` and the generic encoder takes over.
    """
    sequence, index = event["sequence_number"], event["index"]
    if type(sequence) is not int or type(index) is not int:
        raise TypeError("not the builder's numbers")
    frame = _TEXT_DELTA % (
        sequence,
        encode_basestring(event["status"]),
        index,
        encode_basestring(event["msg_id"]),
        encode_basestring(event["text"]),
    )
    return _safe_lines(frame).encode("utf-8")


#: Headers every agent stream carries: no caching, and no proxy buffering (nginx, FC gateways).
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
