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
    "FCStandIn", "OSSStandIn", "crc64_xz", "make_zip",
]


def make_zip(files: dict[str, str]) -> bytes:
    """A small zip of text files, e.g. ``{"bootstrap": "#!/bin/sh\\n"}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in sorted(files.items()):
            archive.writestr(name, text)
    return buffer.getvalue()
