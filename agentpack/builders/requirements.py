"""Requirement files read the way pip reads them, parsed with ``packaging``.

Lines are PEP 508 requirements (extras, markers, ``name @ url``) or paths/URLs of wheels.
``-r`` and ``-c`` files nest and are found relative to the file that names them; ``${VAR}``
is taken from the environment.  Of pip's option lines, those that make sense for a wheel-only
install for another platform are kept and passed on (index URLs, find-links, ``--no-index``,
``--pre``, ``--trusted-host``, per-requirement ``--hash``, ``--require-hashes``); the rest —
editables, source builds, build options — fail with one line naming the file, the line and
the fix.  Markers are not left to pip (it would evaluate them for the Python running it):
``for_environment`` keeps the lines that apply to the target and strips their markers.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from agentpack._version import __version__
from agentpack.builders.errors import ProjectError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: agentpack dependencies only its command line and builder use; an artifact serves, it runs neither.
CLI_ONLY = frozenset({"typer", "rich", "httpx", "tomli", "packaging"})


@dataclass(frozen=True)
class RequirementLine:
    """One requirement and where it was written (``requirements.txt:3``), for messages."""

    requirement: Requirement
    origin: str
    #: ``--hash`` values (``sha256:<hex>``): the downloaded file must match one of them
    hashes: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)


@dataclass(frozen=True)
class PipOptions:
    """The option lines of requirement files that are passed on to pip."""

    index_url: str | None = field(default=None, repr=False)  # may carry a token
    extra_index_urls: tuple[str, ...] = field(default=(), repr=False)
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    pre: bool = False
    trusted_hosts: tuple[str, ...] = ()
    require_hashes: bool = False

    def args(self) -> list[str]:
        out: list[str] = []
        if self.index_url:
            out += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            out += ["--extra-index-url", url]
        for link in self.find_links:
            out += ["--find-links", link]
        for host in self.trusted_hosts:
            out += ["--trusted-host", host]
        if self.no_index:
            out.append("--no-index")
        if self.pre:
            out.append("--pre")
        return out

    def identity(self) -> list[object]:
        """What about these options decides pip's answer (a local find-links directory by its listing)."""
        links: list[object] = []
        for link in self.find_links:
            path = Path(link)
            if path.is_dir():
                links.append([link, sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file())])
            else:
                links.append(link)
        return [self.index_url, list(self.extra_index_urls), links, self.no_index, self.pre, list(self.trusted_hosts)]


@dataclass(frozen=True)
class Requirements:
    """What a project asks for: requirements, constraints, pip options, and where they came from."""

    requirements: tuple[RequirementLine, ...] = ()
    constraints: tuple[RequirementLine, ...] = ()
    options: PipOptions = field(default_factory=PipOptions)
    source: str = "none"


def applies(requirement: Requirement, environment: Mapping[str, str], extra: str = "") -> bool:
    """Whether ``requirement`` is wanted in ``environment`` (with ``extra`` requested)."""
    return requirement.marker is None or requirement.marker.evaluate({**environment, "extra": extra})


def without_marker(requirement: Requirement) -> Requirement:
    copy = Requirement(str(requirement))
    copy.marker = None
    return copy


def for_environment(lines: Iterable[RequirementLine], environment: Mapping[str, str]) -> list[RequirementLine]:
    """The lines that apply to ``environment``, markers evaluated and removed, duplicates dropped."""
    kept: dict[str, RequirementLine] = {}
    for line in lines:
        if applies(line.requirement, environment):
            stripped = replace(line, requirement=without_marker(line.requirement))
            kept.setdefault(str(stripped.requirement), stripped)
    return list(kept.values())


# -- agentpack's own requirements --------------------------------------------------------------
def agentpack_requirements() -> list[RequirementLine]:
    """agentpack's runtime dependencies (markers kept; agentpack itself is vendored, not installed)."""
    try:
        declared = metadata.requires("agentpack") or []
        origin = "agentpack's metadata"
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        declared, origin = _source_tree_requirements(), "agentpack's pyproject.toml"
    lines = [RequirementLine(Requirement(text), origin) for text in declared]
    return [line for line in lines if line.name not in CLI_ONLY]


def agentpack_extra(extra: str) -> list[RequirementLine]:
    """The requirements of one of agentpack's extras (e.g. ``redis``), without their
    ``extra == ...`` marker, so an artifact can carry what a setting needs."""
    lines = []
    for line in agentpack_requirements():
        marker = line.requirement.marker
        if marker is None or not marker.evaluate({"extra": extra}) or marker.evaluate({"extra": ""}):
            continue
        plain = Requirement(str(line.requirement).split(";", 1)[0].strip())
        lines.append(RequirementLine(plain, f"agentpack[{extra}]"))
    return lines


def _source_tree_requirements() -> list[str]:
    import agentpack

    pyproject = Path(agentpack.__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        raise RuntimeError(
            "agentpack is neither installed nor run from its source tree; install it (pip install agentpack)"
        )
    return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])


def extra_requirements(texts: Iterable[str], origin: str) -> list[RequirementLine]:
    return [RequirementLine(Requirement(text), origin) for text in texts]


# -- the project's requirements ------------------------------------------------------------------
def project_requirements(project: Path, configured: str | None) -> Requirements:
    """The project's requirements: ``requirements`` from agentpack.toml, else requirements.txt,
    else ``[project].dependencies`` of pyproject.toml, else none.  ``agentpack`` itself is left out
    (the build packs the agentpack running it), after checking that it satisfies the pin."""
    if configured is not None:
        path = project / configured
        if not path.is_file():
            raise ProjectError(f"requirements = {configured!r}: {path} does not exist; fix the path in agentpack.toml")
        return read_requirements(path, project)
    if (project / "requirements.txt").is_file():
        return read_requirements(project / "requirements.txt", project)
    if (project / "pyproject.toml").is_file():
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        lines = []
        for index, text in enumerate(data.get("project", {}).get("dependencies", [])):
            origin = f"pyproject.toml [project].dependencies[{index}]"
            requirement = _parse_requirement(text, origin, project)
            if requirement is not None:
                lines.append(RequirementLine(requirement, origin))
        return Requirements(tuple(lines), source="pyproject.toml [project].dependencies")
    return Requirements()


def read_requirements(path: Path, root: Path | None = None) -> Requirements:
    """Parse a requirements file and everything it includes (``root`` only shortens names in messages)."""
    reader = _Reader(root or path.parent)
    reader.read(path, constraint=False, origin=None)
    options = reader.options()
    if options.require_hashes:
        unhashed = [line for line in reader.requirements if not line.hashes]
        if unhashed:
            raise ProjectError(
                f"{unhashed[0].origin}: --require-hashes is set but {unhashed[0].requirement} has no --hash; add its hashes"
            )
    return Requirements(tuple(reader.requirements), tuple(reader.constraints), options, reader.show(path))


_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")  # pip expands this form only
_COMMENT = re.compile(r"(^|\s+)#.*$")
_OPTION_NAMES = {
    "-r": "requirement", "--requirement": "requirement",
    "-c": "constraint", "--constraint": "constraint",
    "-e": "editable", "--editable": "editable",
    "-i": "index-url", "--index-url": "index-url",
    "--extra-index-url": "extra-index-url",
    "-f": "find-links", "--find-links": "find-links",
    "--no-index": "no-index",
    "--pre": "pre",
    "--trusted-host": "trusted-host",
    "--prefer-binary": "prefer-binary",
    "--only-binary": "only-binary",
    "--no-binary": "no-binary",
    "--require-hashes": "require-hashes",
    "--hash": "hash",
    "--use-feature": "use-feature",
    "--config-settings": "config-settings",
    "--global-option": "global-option",
    "--install-option": "install-option",
}  # fmt: skip
_TAKES_VALUE = {
    "requirement", "constraint", "editable", "index-url", "extra-index-url", "find-links", "trusted-host",
    "only-binary", "no-binary", "hash", "use-feature", "config-settings", "global-option", "install-option",
}  # fmt: skip
_REFUSED = {
    "editable": "editable installs cannot be packed: list the package by name, "
    "or build a wheel (pip wheel PATH -w wheels) and add --find-links wheels",
    "no-binary": "artifacts take wheels built for the target, and a source build here would make code for this host; remove it",
    "use-feature": "pip feature flags are not passed on; remove it",
    "config-settings": "build options do not apply: artifacts take prebuilt wheels only; remove it",
    "global-option": "build options do not apply: artifacts take prebuilt wheels only; remove it",
    "install-option": "build options do not apply: artifacts take prebuilt wheels only; remove it",
}


class _Reader:
    """Reads one requirements file tree, collecting requirements, constraints and options."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.requirements: list[RequirementLine] = []
        self.constraints: list[RequirementLine] = []
        self._stack: list[Path] = []
        self._index_url: tuple[str, str] | None = None  # (url, origin)
        self._extra_index: list[str] = []
        self._find_links: list[str] = []
        self._trusted: list[str] = []
        self._flags: set[str] = set()

    def show(self, path: Path) -> str:
        resolved = path.resolve()
        return resolved.relative_to(self.root).as_posix() if resolved.is_relative_to(self.root) else str(resolved)

    def options(self) -> PipOptions:
        return PipOptions(
            index_url=self._index_url[0] if self._index_url else None,
            extra_index_urls=tuple(dict.fromkeys(self._extra_index)),
            find_links=tuple(dict.fromkeys(self._find_links)),
            no_index="no-index" in self._flags,
            pre="pre" in self._flags,
            trusted_hosts=tuple(dict.fromkeys(self._trusted)),
            require_hashes="require-hashes" in self._flags,
        )

    def read(self, path: Path, constraint: bool, origin: str | None) -> None:
        resolved = path.resolve()
        if resolved in self._stack:
            raise ProjectError(
                f"{origin}: {self.show(path)} includes itself (through {' -> '.join(self.show(p) for p in self._stack)}); remove the loop"
            )
        try:
            text = resolved.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ProjectError(
                f"{origin}: {self.show(path)} does not exist; fix the path (relative to the file naming it)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ProjectError(f"{origin or self.show(path)}: cannot be read ({exc})") from None
        self._stack.append(resolved)
        try:
            for number, line in _logical_lines(text):
                self._line(line, f"{self.show(path)}:{number}", resolved, constraint)
        finally:
            self._stack.pop()

    def _line(self, line: str, origin: str, path: Path, constraint: bool) -> None:
        line = _ENV_VAR.sub(lambda m: _env_value(m.group(1), origin), line)
        spec, option_text = _split_options(line)
        try:
            options = _parse_options(shlex.split(option_text), origin) if option_text else []
        except ValueError as exc:  # shlex: unbalanced quotes
            raise ProjectError(f"{origin}: {exc}; fix the quoting") from None
        if not spec:
            for name, value in options:
                self._option(name, value, origin, path)
            return
        hashes = set()
        for name, value in options:
            if name in _REFUSED:
                raise ProjectError(f"{origin}: {name_of(name)}: {_REFUSED[name]}")
            if name != "hash":
                raise ProjectError(
                    f"{origin}: {name_of(name)} cannot follow a requirement; only --hash can (put other options on their own line)"
                )
            hashes.add(_hash_value(value, origin))
        requirement = _parse_requirement(spec, origin, path.parent)
        if requirement is None:
            return
        (self.constraints if constraint else self.requirements).append(
            RequirementLine(requirement, origin, frozenset(hashes))
        )

    def _option(self, name: str, value: str, origin: str, path: Path) -> None:
        if name in _REFUSED:
            raise ProjectError(f"{origin}: {name_of(name)} {value}: {_REFUSED[name]}".replace(" : ", ": "))
        if name == "hash":
            raise ProjectError(f"{origin}: --hash belongs on a requirement's line (name==version --hash=sha256:...)")
        if name in ("requirement", "constraint"):
            if "://" in value:
                raise ProjectError(
                    f"{origin}: {name_of(name)} {value}: remote files are not read; download it next to this file and name it by path"
                )
            self.read(path.parent / value, constraint=name == "constraint", origin=origin)
        elif name == "index-url":
            if self._index_url and self._index_url[0] != value:
                raise ProjectError(
                    f"{origin}: --index-url {redact(value)} conflicts with --index-url {redact(self._index_url[0])} ({self._index_url[1]}); "
                    "keep one (add others with --extra-index-url)"
                )
            self._index_url = (value, origin)
        elif name == "extra-index-url":
            self._extra_index.append(value)
        elif name == "find-links":
            self._find_links.append(_find_links(value, origin, path.parent))
        elif name == "trusted-host":
            self._trusted.append(value)
        elif name in ("no-index", "pre", "require-hashes"):
            self._flags.add(name)
        # prefer-binary and only-binary change nothing: artifacts take wheels only already


def redact(url: str) -> str:
    """``url`` without its password (index URLs often carry a token)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    host += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def name_of(option: str) -> str:
    return f"--{option}"


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line): ``\\`` continuations joined, then comments removed, as pip does."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.endswith("\\") and not _COMMENT.match(raw):
            if not pending:
                start = number
            pending.append(raw.strip("\\"))
            continue
        if _COMMENT.match(raw):
            raw = " " + raw  # a comment line ends a continuation and is dropped whole
        line = _COMMENT.sub("", "".join([*pending, raw])).strip()
        first = start if pending else number
        pending = []
        if line:
            yield first, line
    if pending:
        line = _COMMENT.sub("", "".join(pending)).strip()
        if line:
            yield start, line


def _split_options(line: str) -> tuple[str, str]:
    """Split ``spec --opt ...`` as pip does: the requirement ends at the first word starting with '-'."""
    words = line.split(" ")
    for index, word in enumerate(words):
        if word.startswith("-"):
            return " ".join(words[:index]).strip(), " ".join(words[index:]).strip()
    return line.strip(), ""


def _parse_options(tokens: list[str], origin: str) -> list[tuple[str, str]]:
    parsed: list[tuple[str, str]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        value: str | None = None
        if token.startswith("--"):
            flag, equals, rest = token.partition("=")
            value = rest if equals else None
        elif token.startswith("-") and len(token) > 2:
            flag, value = token[:2], token[2:]
        else:
            flag = token
        name = _OPTION_NAMES.get(flag)
        if name is None:
            raise ProjectError(f"{origin}: {flag} is not a requirements-file option agentpack passes to pip; remove it")
        if name in _TAKES_VALUE and value is None:
            index += 1
            if index >= len(tokens):
                raise ProjectError(f"{origin}: {flag} needs a value")
            value = tokens[index]
        parsed.append((name, value or ""))
        index += 1
    return parsed


def _env_value(name: str, origin: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ProjectError(f"{origin}: ${{{name}}} is not set; set it in the shell that runs the build")
    return value


def _hash_value(value: str, origin: str) -> str:
    algorithm, _, digest = value.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise ProjectError(
            f"{origin}: --hash={value}: give sha256:<64 hex digits> (the form pip-compile --generate-hashes writes)"
        )
    return f"sha256:{digest.lower()}"


def _find_links(value: str, origin: str, base: Path) -> str:
    """A find-links URL as is; a path relative to the file that names it, which must exist."""
    if "://" in value:
        return value
    path = Path(value.removeprefix("file:")).expanduser()
    path = path if path.is_absolute() else (base / path)
    if not path.exists():
        raise ProjectError(
            f"{origin}: --find-links {value}: {path} does not exist; fix the path (relative to this file)"
        )
    return str(path.resolve())


_NOT_A_WHEEL = "agentpack packs wheels only: build one (pip wheel {spec} -w wheels), then list --find-links wheels and the package's name"


def _parse_requirement(spec: str, origin: str, base: Path) -> Requirement | None:
    """A PEP 508 requirement, or a wheel given by path or URL (as ``name @ url``); None for agentpack itself."""
    named = " @ " in spec
    head, _, marker = spec.partition(";") if not named else (spec, "", "")
    target = head.strip()
    if not named and target.endswith(".whl"):
        requirement = _wheel_requirement(target, origin, base, marker)
    elif not named and _looks_like_path_or_url(target):
        raise ProjectError(f"{origin}: {target} is a path or URL but not a wheel; {_NOT_A_WHEEL.format(spec=target)}")
    else:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            raise ProjectError(f"{origin}: {spec!r} is not a valid requirement ({reason}); fix the line") from None
        if requirement.url and not requirement.url.split("#")[0].endswith(".whl"):
            raise ProjectError(
                f"{origin}: {requirement.name} @ {requirement.url} is not a wheel; {_NOT_A_WHEEL.format(spec=requirement.url)}"
            )
    if canonicalize_name(requirement.name) == "agentpack":
        if requirement.specifier and not requirement.specifier.contains(Version(__version__), prereleases=True):
            raise ProjectError(
                f"{origin}: {requirement} but the build packs the agentpack running it, {__version__}; install a matching agentpack or relax the pin"
            )
        return None
    return requirement


def _looks_like_path_or_url(text: str) -> bool:
    return (
        "://" in text
        or text.startswith((".", "/", "~"))
        or os.sep in text
        or (sys.platform == "win32" and "\\" in text)
    )


def _wheel_requirement(target: str, origin: str, base: Path, marker: str) -> Requirement:
    filename = target.rsplit("/", 1)[-1]
    try:
        name, _version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise ProjectError(f"{origin}: {target}: not a valid wheel file name ({exc}); fix the name") from None
    if "://" in target:
        url = target
    else:
        path = Path(target).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ProjectError(f"{origin}: {target}: {path} does not exist; fix the path (relative to this file)")
        url = path.resolve().as_uri()
    return Requirement(f"{name} @ {url}" + (f" ; {marker.strip()}" if marker.strip() else ""))
