"""Loopback stand-ins for Alibaba Cloud control planes (FC 3.0, AgentRun) and OSS, driven by the real SDKs.

See README.md in this folder for the API facts they check and where those facts come from.
"""

from __future__ import annotations

import io
import zipfile

from .acs import TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_SECRET, AcsStandIn, ApiError, Call, crc64_xz
from .agentrun import AgentRunStandIn
from .fc import FCStandIn
from .oss import OSSStandIn

__all__ = [
    "TEST_ACCESS_KEY_ID", "TEST_ACCESS_KEY_SECRET", "AcsStandIn", "AgentRunStandIn", "ApiError", "Call",
    "FCStandIn", "OSSStandIn", "RecordingHook", "crc64_xz", "make_zip",
]


def make_zip(files: dict[str, str]) -> bytes:
    """A small zip of text files, e.g. ``{"bootstrap": "#!/bin/sh\\n"}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in sorted(files.items()):
            archive.writestr(name, text)
    return buffer.getvalue()


class RecordingHook:
    """An ``on_code`` hook that records what the stand-in was given to run and hands out a
    made-up URL per upload (for tests that check requests, not the deployed code)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict]] = []

    def __call__(self, name: str, zip_bytes: bytes, config: dict) -> str:
        self.calls.append((name, zip_bytes, config))
        return f"http://127.0.0.1:1/{name}/upload-{len(self.calls)}"
