"""What ``agentpack deploy`` remembers per project: ``.agentpack/deployments.json``.

One record per deployment, keyed ``<target>/<name>``: where it lives (region, the platform's
resource ids), what serves now (version, artifact sha256, URL), what came before (the
versions this project deployed, newest last, for ``rollback``) and when.  Never a secret and
never an environment value: ``env_keys`` lists the names of the variables set on the platform,
so every output can show them masked.

Writes are atomic (a temporary file renamed over the old one) and made under an exclusive
lock on ``.agentpack/deployments.lock``, so two deploys of one project — in two shells or two
CI jobs — never lose each other's records.  Commands that change a deployment also hold a lock
of their own (``operation_lock``), so two deploys of the *same* deployment wait for each other
instead of racing on the platform.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from agentpack.errors import UserError

STATE_DIR = ".agentpack"
STATE_FILE = "deployments.json"
FORMAT = 1
#: Versions remembered per deployment (for rollback); older ones are forgotten, not deleted.
HISTORY = 20


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Release:
    """One version this project deployed: the platform's version id and the artifact behind it."""

    version: str
    sha256: str
    deployed_at: str = field(default_factory=now)


@dataclass
class Deployment:
    """A deployment as the state file keeps it (see the module doc)."""

    target: str
    name: str
    url: str = ""
    region: str | None = None
    #: the version serving now (FC/Lambda alias target, AgentRun endpoint target, local code dir)
    version: str | None = None
    #: sha256 of the artifact serving now
    sha256: str = ""
    #: versions deployed from this project, oldest first; the current one is among them
    releases: list[Release] = field(default_factory=list)
    #: the platform's own ids and facts a later command needs (function name, runtime id, pid…)
    resource: dict[str, Any] = field(default_factory=dict)
    #: how requests to ``url`` authenticate: "anonymous", "function" (FC signature), "AWS_IAM", …
    auth: str = "anonymous"
    env_keys: list[str] = field(default_factory=list)
    python: str = ""
    arch: str = ""
    status: str = "deployed"
    deployed_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    @property
    def key(self) -> str:
        return f"{self.target}/{self.name}"

    @property
    def deploy_id(self) -> str:
        """The id the Python API returns: stable across redeploys of one deployment."""
        return f"{self.target}:{self.name}"

    def release(self, version: str | None) -> Release | None:
        return next((r for r in reversed(self.releases) if r.version == version), None)

    def previous_release(self) -> Release | None:
        """The release deployed before the one serving now (what ``rollback`` goes back to)."""
        versions = [r.version for r in self.releases]
        if self.version not in versions:
            return self.releases[-1] if self.releases else None
        index = len(versions) - 1 - versions[::-1].index(self.version)
        return self.releases[index - 1] if index > 0 else None

    def remember(self, version: str, sha256: str) -> None:
        """Record ``version`` as serving now (kept once, moved to the end)."""
        self.releases = [r for r in self.releases if r.version != version]
        self.releases.append(Release(version, sha256))
        del self.releases[:-HISTORY]
        self.version, self.sha256 = version, sha256

    def masked_env(self) -> dict[str, str]:
        return dict.fromkeys(self.env_keys, "***")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["releases"] = [
            Release(**{k: v for k, v in r.items() if k in ("version", "sha256", "deployed_at")})
            for r in data.get("releases") or []
        ]
        return cls(**values)


class StateError(UserError):
    """The state file cannot be read (corrupt JSON, another format): the message names the file and the fix."""


class DeploymentStore:
    """``<project>/.agentpack/deployments.json`` (see the module doc)."""

    def __init__(self, project: Path) -> None:
        self.project = Path(project).resolve()
        self.directory = self.project / STATE_DIR
        self.path = self.directory / STATE_FILE

    # -- locks -----------------------------------------------------------------------------------
    def _ensure_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            # unpacked local deployments and lock files are this machine's business
            (self.directory / ".gitignore").write_text("local/\nlocks/\n*.lock\n")

    @contextlib.contextmanager
    def _locked(self, path: Path, blocking: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        self._ensure_directory()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not blocking:
                    raise
                if on_wait is not None:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def operation_lock(
        self, target: str, name: str, on_wait: Callable[[], None] | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Held while one command changes one deployment (deploy, rollback, destroy, stop)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{target}-{name}")
        return self._locked(self.directory / "locks" / f"{safe}.lock", on_wait=on_wait)

    # -- reading -------------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"format": FORMAT, "deployments": {}}
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateError(
                f"{self.path}: not valid JSON ({exc}); fix it or move it away (the platform keeps the deployments themselves)"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("deployments"), dict):
            raise StateError(f"{self.path}: not an agentpack deployments file; move it away")
        if data.get("format", FORMAT) > FORMAT:
            raise StateError(
                f"{self.path} was written by a newer agentpack (format {data['format']}); upgrade agentpack"
            )
        return data

    def all(self) -> list[Deployment]:
        return [Deployment.from_json(record) for _, record in sorted(self._read()["deployments"].items())]

    def get(self, target: str, name: str) -> Deployment | None:
        record = self._read()["deployments"].get(f"{target}/{name}")
        return Deployment.from_json(record) if record is not None else None

    def find(self, name: str, target: str | None = None) -> list[Deployment]:
        """Deployments called ``name`` (of ``target`` only, when given)."""
        return [d for d in self.all() if d.name == name and (target is None or d.target == target)]

    # -- writing -------------------------------------------------------------------------------------
    def _write(self, data: dict[str, Any]) -> None:
        self._ensure_directory()
        handle, temp = tempfile.mkstemp(dir=self.directory, prefix=f".{STATE_FILE}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True, ensure_ascii=False)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def update(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Read, change and write the whole file under the state lock."""
        with self._locked(self.directory / "deployments.lock"):
            data = self._read()
            change(data["deployments"])
            data["format"] = FORMAT
            self._write(data)

    def put(self, deployment: Deployment) -> None:
        deployment.updated_at = now()
        self.update(lambda records: records.__setitem__(deployment.key, deployment.to_json()))

    def remove(self, target: str, name: str) -> None:
        self.update(lambda records: records.pop(f"{target}/{name}", None))
