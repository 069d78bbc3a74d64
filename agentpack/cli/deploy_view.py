"""How the deployment commands look: progress lines while they work, a summary, tables for
lists, and one JSON object on the last line of stdout with ``--json``.

Every error ends in one of two exits (the two branches of ``agentpack.errors``): 2 with one
line naming the fix when the input or setup is wrong (a bad flag or setting, a missing
credential, region or secret, an unknown deployment), 1 when the operation failed (the
platform's code, message and request id; a build failure; an agent that refused a request or a
URL that does not answer).  Anything else is a bug and raises.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentpack.cli.errors import EXIT_FAILED, EXIT_USAGE, FlagError, err_console, parse_pairs, reported
from agentpack.cli.waiting import BUILD_STEPS, Waiting

if TYPE_CHECKING:
    from agentpack.deployers.request import DeployOptions


class View:
    """Console, progress and error handling shared by the commands."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(stderr=as_json, highlight=False, soft_wrap=True)
        self.waiting: Waiting | None = None

    def progress(self, step: str, detail: str) -> None:
        if step == "build":
            detail = BUILD_STEPS.get(detail, detail)  # the builder's own steps, in agentpack build's words
        self.console.print(f"[bold]{step:>9}[/] {escape(detail)}")
        if self.waiting is not None:
            self.waiting.started(detail)

    def waits(self) -> Waiting:
        """A :class:`Waiting` that says, in this view, what a quiet command is waiting for."""
        self.waiting = Waiting(lambda line: self.console.print(f"[dim]{'':>9} {escape(line)}[/]"))
        return self.waiting

    def emit(self, data: dict[str, Any]) -> None:
        print(json.dumps(data, ensure_ascii=False, default=str), flush=True)

    def guarded(self, work: Callable[[], int]) -> int:
        """Run ``work``; map every expected failure to its exit code and message (never a traceback).
        What is neither agentpack's error nor an agent's or a network's answer is a bug: it raises."""
        from agentpack.client import AgentAPIError

        try:
            return work()
        except AgentAPIError as exc:
            return self.fail(
                EXIT_FAILED,
                "the agent refused the request",
                str(exc),
                {"code": f"HTTP{exc.status_code}", "message": str(exc.detail)},
            )
        except OSError as exc:  # e.g. the URL does not answer
            return self.fail(EXIT_FAILED, "failed", str(exc), {"code": type(exc).__name__, "message": str(exc)})
        except Exception as exc:
            import httpx

            found = reported(exc)
            if found is not None:
                code, label, data = found
                return self.fail(code, label, str(exc), data)
            if isinstance(exc, httpx.HTTPError):
                message = f"{type(exc).__name__}: {exc}" + (f" ({exc.request.url})" if _has_request(exc) else "")
                return self.fail(EXIT_FAILED, "failed", message, {"code": type(exc).__name__, "message": str(exc)})
            raise

    def fail(self, code: int, label: str, message: str, data: dict[str, Any]) -> int:
        err_console.print(f"[bold red]{label}:[/] {escape(message)}")
        if self.as_json:
            self.emit({"error": data})
        return code


def _has_request(exc: Any) -> bool:
    try:
        return exc.request is not None
    except RuntimeError:
        return False


# -- deploy ------------------------------------------------------------------------------------------
def run_deploy(project: Path, target: str, options: DeployOptions, env_pairs: list[str], as_json: bool) -> int:
    """``agentpack deploy``: ``options`` from the flags, with ``--env KEY=VALUE`` pairs still to parse."""
    import dataclasses

    from agentpack.deployers import service

    view = View(as_json)

    def work() -> int:
        chosen = dataclasses.replace(options, env={**options.env, **parse_pairs(env_pairs)})
        with view.waits():
            outcome = service.deploy(project, target, chosen, progress=view.progress)
        result = service.describe(outcome)
        if as_json:
            view.emit(result)
        else:
            _show_deploy(view.console, result)
        for warning in result["warnings"]:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}")
        return 0

    return view.guarded(work)


def _show_deploy(console: Console, result: dict[str, Any]) -> None:
    where = f"{result['target']}/{result['name']}"
    if result["action"] == "unchanged":
        console.print(
            f"[bold green]unchanged[/] {where}: version {result['version']} already serves this artifact; "
            f"nothing uploaded ({result['seconds']:.2f} s)"
        )
    else:
        was = (
            f" (was {result['previous_version']})"
            if result["previous_version"] and result["previous_version"] != result["version"]
            else ""
        )
        console.print(
            f"[bold green]deployed[/] {where}: {result['action']}, version {result['version']}{was} in {result['seconds']:.2f} s"
        )
    console.print(f"  url   {escape(result['url'])}")
    console.print(f"  try   {escape(result['curl'])}")
    if result["env"]:
        console.print("  env   " + ", ".join(f"{k}={v}" for k, v in result["env"].items()))
    _show_key(console, result)


def _show_key(console: Console, result: dict[str, Any]) -> None:
    """What the deploy did with the API key (docs/deploy.md#api-keys); a new key's value, once."""
    from agentpack.deployers.api_key import CLIENT_VARIABLE, VARIABLE

    source, name, where = result.get("api_key_source"), result["name"], f"{result['target']}/{result['name']}"
    if result.get("api_key"):
        made = "generated" if source == "generated" else "replaced (the old key no longer works)"
        console.print(f"  key   export {CLIENT_VARIABLE}={escape(result['api_key'])}")
        console.print(
            f"        ^ the API key of {where}, {made}; shown this once and kept nowhere but the platform's "
            f"environment ({VARIABLE}). Callers send it as Authorization: Bearer <key> (or X-Agentpack-Api-Key: <key>); "
            f"`agentpack invoke` and `stop` send ${CLIENT_VARIABLE}, or read it from the "
            f"platform; `agentpack status {name} --show-api-key` prints it again"
        )
    elif source in ("kept", "given"):
        console.print(
            f"  key   the API key in {VARIABLE} is unchanged (`agentpack status {name} --show-api-key` prints it; "
            "--rotate-api-key replaces it)"
        )
    elif source == "yours":
        console.print(f"  key   your own {VARIABLE} (from env, secrets or --env) guards the URL")
    elif source == "removed":
        console.print(f"  key   removed {VARIABLE}: the app asks for no API key any more")


# -- list / status -------------------------------------------------------------------------------------
def run_list(project: Path, as_json: bool) -> int:
    from agentpack.deployers import service

    view = View(as_json)

    def work() -> int:
        deployments = service.list_deployments(project)
        if as_json:
            view.emit(
                {"deployments": [{**d.to_json(), "env": d.masked_env(), "deploy_id": d.deploy_id} for d in deployments]}
            )
            return 0
        if not deployments:
            view.console.print(f"no deployments in {project.resolve()} yet; `agentpack deploy --target T` makes one")
            return 0
        # Readable at 80 columns: the short facts in a table, each URL on a line of its own (a URL
        # in a table cell wraps over many lines and cannot be copied whole).
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for column in ("name", "target", "version", "status", "region", "deployed"):
            table.add_column(column, overflow="fold")
        for d in deployments:
            version = str(d.version or "")
            table.add_row(
                d.name, d.target, version if len(version) <= 14 else version[:12] + "…", d.status,
                d.region or "", d.deployed_at.replace("T", " ")[:16],
            )  # fmt: skip
        view.console.print(table)
        view.console.print()
        for d in deployments:
            view.console.print(f"{d.target}/{d.name}", style="bold", end=" ")
            view.console.out(d.url or "(no URL)", highlight=False)
        return 0

    return view.guarded(work)


def run_status(project: Path, name: str, target: str | None, as_json: bool, show_api_key: bool = False) -> int:
    from agentpack.deployers import service

    view = View(as_json)

    def work() -> int:
        if show_api_key:
            deployment, key = service.deployed_api_key(project, name, target)
            if as_json:
                view.emit({"deploy_id": deployment.deploy_id, "api_key": key})
            else:
                view.console.out(key, highlight=False)
            return 0
        found = service.status(project, name, target)
        data = found.to_json()
        if as_json:
            view.emit(data)
        else:
            d = found.deployment
            view.console.print(
                f"[bold]{d.target}/{d.name}[/] — recorded: version {d.version}, {d.url}, deployed {d.deployed_at}"
            )
            platform = found.platform
            if platform.get("exists"):
                shown = {k: v for k, v in platform.items() if k not in ("exists", "env") and v not in (None, "")}
                view.console.print("  platform: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
                if platform.get("env"):
                    view.console.print("  env: " + ", ".join(f"{k}=***" for k in platform["env"]))
            for line in found.drift:
                view.console.print(f"  [yellow]drift:[/] {line}")
        return 0 if found.platform.get("exists") else EXIT_FAILED

    return view.guarded(work)


# -- invoke / stop ----------------------------------------------------------------------------------------
def _not_running(project: Path, name: str | None, target: str | None) -> str | None:
    """Why a known deployment refused the connection, when its platform says it is not running
    (a stopped local deployment) -- not "Connection refused"; None otherwise."""
    from agentpack.deployers import service

    if name is None or target is None:
        return None
    try:
        found = service.status(project, name, target)
    except Exception:  # the status cannot be had: the connection error stands
        return None
    if found.platform.get("exists", True):
        return None
    detail = found.platform.get("detail") or "it is not running"
    return f"{target}/{name} is {found.platform.get('state') or 'not running'}: {detail}"


def warn_key_problem(where: Any) -> None:
    """Say, on stderr, why a deployment's API key could not be read (the request goes without one)."""
    if where.key_problem:
        from agentpack.deployers.api_key import CLIENT_VARIABLE

        err_console.print(
            f"[yellow]warning:[/] could not read the deployment's API key ({escape(where.key_problem)}); "
            f"sending none: give --api-key or {CLIENT_VARIABLE}"
        )


def run_invoke(
    project: Path,
    name_or_url: str,
    text: str,
    session: str | None,
    user: str | None,
    target: str | None,
    timeout: float,
    as_json: bool,
    api_key: str | None = None,
) -> int:
    from agentpack.client import agent_paths, build_request, delta_text, key_headers, session_headers, stream_events
    from agentpack.deployers import service

    view = View(as_json)

    def work() -> int:
        import httpx

        where = service.endpoint(project, name_or_url, target, key=api_key)
        warn_key_problem(where)
        try:
            return ask(where)
        except httpx.ConnectError:
            not_running = _not_running(project, where.name, where.target)
            if not_running is None:
                raise
            return view.fail(EXIT_FAILED, "not running", not_running, {"code": "NotRunning", "message": not_running})

    def ask(where: Any) -> int:
        paths = agent_paths(where.url, where.auth)
        url = where.url + paths["process"]
        if not as_json:
            from agentpack.cli.ask import render_stream

            return render_stream(
                url, text, session_id=session, user_id=user, auth=where.auth, timeout=timeout, api_key=where.api_key
            )
        final: dict[str, Any] = {}
        pieces = []
        for event in stream_events(
            url,
            build_request(text, session, user),
            timeout=timeout,
            headers={**session_headers(session, user), **key_headers(where.api_key, where.auth is not None)} or None,
            auth=where.auth,
        ):
            piece = delta_text(event)
            if piece:
                pieces.append(piece)
            if event.get("object") == "response":
                final = event
        view.emit(
            {
                "url": url,
                "status": final.get("status"),
                "text": "".join(pieces),
                "error": final.get("error"),
                "response_id": final.get("id"),
            }
        )
        return 0 if final.get("status") == "completed" else EXIT_FAILED

    return view.guarded(work)


def run_stop(
    project: Path,
    name_or_url: str,
    session: str | None,
    user: str | None,
    target: str | None,
    as_json: bool,
    api_key: str | None = None,
) -> int:
    from agentpack.client import agent_paths, stop_run
    from agentpack.deployers import service

    view = View(as_json)

    def work() -> int:
        if session is None:
            if user is not None:
                raise FlagError("--user needs --session: a run is stopped by its session (and user)")
            if name_or_url.startswith(("http://", "https://")):
                raise FlagError("give --session (and --user) to stop a run at a URL")
            deployment, stopped = service.stop_service(project, name_or_url, target)
            if as_json:
                view.emit({"deploy_id": deployment.deploy_id, "stopped": stopped, "status": deployment.status})
            else:
                verb = "stopped" if stopped else "was not running:"
                view.console.print(
                    f"{verb} {deployment.target}/{deployment.name}; `agentpack deploy --target {deployment.target}` starts it again"
                )
            return 0
        where = service.endpoint(project, name_or_url, target, key=api_key)
        warn_key_problem(where)
        paths = agent_paths(where.url, where.auth)
        answer = stop_run(where.url + paths["stop"], session, user, auth=where.auth, api_key=where.api_key)
        if as_json:
            view.emit({"url": where.url, **answer})
        elif answer.get("stopped"):
            view.console.print(f"stopped the run of session {session}" + (f" (user {user})" if user else ""))
        else:
            view.console.print(f"no run of session {session} was going" + (f" (user {user})" if user else ""))
        return 0

    return view.guarded(work)


# -- logs / rollback / destroy ----------------------------------------------------------------------------
def run_logs(project: Path, name: str, target: str | None, follow: bool, since: float) -> int:
    from agentpack.deployers import service

    view = View(False)

    def work() -> int:
        try:
            for line in service.logs(project, name, target, since_seconds=since, follow=follow):
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
        return 0

    return view.guarded(work)


def run_rollback(project: Path, name: str, target: str | None, to: str | None, as_json: bool) -> int:
    from agentpack.deployers import service

    view = View(as_json)

    def work() -> int:
        deployment, left = service.rollback(project, name, target, to, progress=view.progress)
        if as_json:
            view.emit(
                {
                    "deploy_id": deployment.deploy_id,
                    "url": deployment.url,
                    "version": deployment.version,
                    "previous_version": left,
                    "sha256": deployment.sha256,
                }
            )
        else:
            view.console.print(
                f"[bold green]rolled back[/] {deployment.target}/{deployment.name}: version {left} → {deployment.version}"
            )
            view.console.print(f"  url   {deployment.url}")
        return 0

    return view.guarded(work)


def run_destroy(project: Path, name: str, target: str | None, yes: bool, as_json: bool) -> int:
    from agentpack.deployers import service

    view = View(as_json)

    def work() -> int:
        deployment = service.find(project, name, target)
        if not yes and sys.stdin.isatty():
            import typer

            if not typer.confirm(
                f"remove {deployment.target}/{deployment.name} and everything agentpack created for it?"
            ):
                view.console.print("kept it")
                return EXIT_USAGE
        deployment, existed = service.destroy(project, name, deployment.target, progress=view.progress)
        if as_json:
            view.emit({"deploy_id": deployment.deploy_id, "destroyed": True, "existed": existed})
        else:
            note = "" if existed else " (it was already gone on the platform)"
            view.console.print(f"[bold green]destroyed[/] {deployment.target}/{deployment.name}{note}")
        return 0

    return view.guarded(work)
