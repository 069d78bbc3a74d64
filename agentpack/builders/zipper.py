"""Reproducible zips: same inputs, same bytes — whatever the files' mtimes or the working directory.

Entries get a fixed timestamp (``SOURCE_DATE_EPOCH`` if set, else 1980-01-01), fixed
permissions (0644, or 0755 for executables), Unix attributes and one compression level, in
a deterministic order.  The dependency part of an artifact is built once per dependency
layer and reused: an artifact is a copy of that zip with the project's files appended.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

COMPRESSION = zipfile.ZIP_DEFLATED
LEVEL = 6


def fixed_date() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        stamp = time.gmtime(max(int(epoch), 315532800))  # zip cannot go before 1980
        return stamp[:6]
    return (1980, 1, 1, 0, 0, 0)


def _info(name: str, executable: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=fixed_date())
    info.compress_type = COMPRESSION
    info.create_system = 3  # Unix, so the permissions below are honoured on extraction
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    return info


Data = bytes | Path


def add_entries(archive: zipfile.ZipFile, entries: Iterable[tuple[str, Data, bool]]) -> None:
    """Write ``(name, bytes or path, executable)`` entries, in the order given."""
    for name, data, executable in entries:
        content = data.read_bytes() if isinstance(data, Path) else data
        archive.writestr(_info(name, executable), content, compress_type=COMPRESSION, compresslevel=LEVEL)


def write_zip(path: Path, entries: Iterable[tuple[str, Data, bool]]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        add_entries(archive, entries)


def append_zip(path: Path, entries: Iterable[tuple[str, Data, bool]]) -> None:
    with zipfile.ZipFile(path, "a") as archive:
        add_entries(archive, entries)
