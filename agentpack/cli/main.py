"""Command definitions.  Each command calls one function of the layers below."""

from __future__ import annotations

from typing import Any

import typer

from agentpack._version import __version__
from agentpack.cli.errors import usage_error

app = typer.Typer(
    name="agentpack",
    help="Run a FastAPI-based agent anywhere: locally, on Function Compute, on AgentRun or behind a Lambda handler.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[targets.T]" is a TOML table, not markup
)


def _target_names() -> str:
    from agentpack.targets import target_names

    return target_names()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentpack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """agentpack command line."""


#: The agent's API key for the commands that call it (docs/auth.md); never echoed.
_API_KEY_OPTION = typer.Option(
    None,
    "--api-key",
    envvar="AGENTPACK_API_KEY",
    show_default=False,
    help="The agent's API key, sent as Authorization: Bearer (env AGENTPACK_API_KEY).",
)


def _served_key() -> str | None:
    """For `run --ask`: the first of AGENTPACK_API_KEYS, the keys the served app itself reads."""
    import os

    keys = [k.strip() for k in os.environ.get("AGENTPACK_API_KEYS", "").split(",") if k.strip()]
    return keys[0] if keys else None


@app.command()
def run(
    app_spec: str = typer.Argument(..., metavar="APP", help="path/to/file.py[:attr] or package.module:attr"),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8090, "--port", help="Port to listen on."),
    reload: bool = typer.Option(False, "--reload", help="Restart when source files change (development)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    ask: str | None = typer.Option(None, "--ask", help="Once serving, send this message and stream the reply."),
    once: bool = typer.Option(False, "--once", help="With --ask: stop serving after the reply."),
    grace: float = typer.Option(
        10.0,
        "--timeout-graceful-shutdown",
        help="On SIGTERM/Ctrl+C, seconds open streams get to finish before they are ended with a canceled event.",
    ),
    ui: bool = typer.Option(False, "--ui", help="Also serve the chat page at /ui (sets AGENTPACK_UI=1 for the app)."),
    api_key: str | None = _API_KEY_OPTION,
) -> None:
    """Serve an agent app with uvicorn."""
    from agentpack.loader import AppLoadError, load_app

    if not 0 <= port <= 65535:
        raise usage_error(f"--port {port} is not a TCP port; use 1-65535")
    if grace < 0:
        raise usage_error(f"--timeout-graceful-shutdown {grace}: give 0 or more seconds")
    _check_port_free(host, port)
    if ui:
        from agentpack.cli.ui_view import ask_for_ui

        ask_for_ui()  # before the app is imported: it installs its routes as it is built
    try:
        asgi_app, spec = load_app(app_spec)
    except AppLoadError as exc:
        raise usage_error(str(exc)) from None
    except Exception as exc:  # the app's own code failed as it was imported
        raise _app_failed(exc, app_spec) from None
    if ui:
        from agentpack.cli.ui_view import announce_page

        announce_page(asgi_app, host, port)
    if once and not ask:
        raise usage_error("--once needs --ask MESSAGE (it stops serving after that reply)")
    if reload and ask:
        raise usage_error("--reload and --ask cannot be combined; drop one of them")
    import uvicorn

    from agentpack.addresses import announce_serving
    from agentpack.serve import log_config

    announce_serving(host, port)
    if reload:
        app_dir = str(spec.app_dir or ".")
        uvicorn.run(
            spec.import_string,
            host=host,
            port=port,
            reload=True,
            app_dir=app_dir,
            reload_dirs=[app_dir],
            log_level=log_level,
            log_config=log_config(log_level),  # the reloading child is configured with it too
        )
        return
    if ask is None:
        # uvicorn annotates the grace as int; it is a timeout, and a float works
        options: dict[str, Any] = {"log_config": log_config(log_level), "timeout_graceful_shutdown": grace}
        uvicorn.run(asgi_app, host=host, port=port, log_level=log_level, **options)
        return
    from agentpack.cli.ask import serve_and_ask

    raise typer.Exit(serve_and_ask(asgi_app, host, port, log_level, ask, once, grace, api_key or _served_key()))


def _check_port_free(host: str, port: int) -> None:
    """Refuse a busy ``--port`` in one line before the app starts (uvicorn would start it, then
    print its bind error and exit 3).  Bound as uvicorn binds (SO_REUSEADDR), then released."""
    import errno
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return  # a host uvicorn will report itself
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise usage_error(f"--port {port} is in use on {host}; pass another --port") from None
            if exc.errno == errno.EACCES:
                raise usage_error(f"--port {port} on {host} needs privileges here; use a port above 1023") from None
            raise


def _app_failed(error: Exception, app_spec: str) -> typer.Exit:
    """The app's own frames of ``error`` and one summary line; exit 1 (its code failed)."""
    from rich.markup import escape

    from agentpack.app_errors import describe
    from agentpack.cli.errors import EXIT_FAILED, err_console

    trace, summary = describe(error, f"importing {app_spec.partition(':')[0]}")
    if trace:
        err_console.out(trace, end="", highlight=False)
    err_console.print(f"[bold red]error:[/] {escape(summary)}")
    return typer.Exit(EXIT_FAILED)


@app.command()
def worker(
    app_spec: str = typer.Argument(..., metavar="APP", help="path/to/file.py[:attr] or package.module:attr"),
    queues: str | None = typer.Option(
        None, "--queues", "-Q", help="Comma-separated queues (default: every queue the app's tasks use)."
    ),
    concurrency: int = typer.Option(2, "--concurrency", "-c", help="Worker processes (or threads)."),
    pool: str = typer.Option("prefork", "--pool", "-P", help="Celery pool: prefork, threads or solo."),
    log_level: str = typer.Option("info", "--log-level", help="Celery log level."),
    hostname: str | None = typer.Option(
        None,
        "--hostname",
        "-n",
        help="Worker node name, e.g. worker1@%h (needed when several workers run on one host).",
    ),
) -> None:
    """Start a Celery worker that runs the app's @app.task jobs (needs broker_url)."""
    from agentpack.loader import AppLoadError, load_app

    if concurrency < 1:
        raise usage_error(f"--concurrency {concurrency}: give at least 1")
    if pool not in ("prefork", "threads", "solo"):
        raise usage_error(f"--pool {pool}: choose prefork, threads or solo")
    try:
        agent_app, _ = load_app(app_spec)
    except AppLoadError as exc:
        raise usage_error(str(exc)) from None
    celery_app = getattr(agent_app, "celery_app", None)
    if celery_app is None:
        raise usage_error(
            f"{app_spec} has no broker: pass broker_url= (and backend_url=) to AgentApp to run tasks on workers"
        )
    names = (
        [q.strip() for q in queues.split(",") if q.strip()]
        if queues
        else sorted({s.queue for s in agent_app.task_queue.specs.values()})
    )
    argv = [
        "worker",
        f"--loglevel={log_level}",
        "-Q",
        ",".join(names or ["celery"]),
        "-c",
        str(concurrency),
        "-P",
        pool,
    ]
    if hostname:
        argv += ["-n", hostname]
    celery_app.worker_main(argv)


@app.command()
def build(
    project_dir: str = typer.Argument(".", metavar="[PROJECT_DIR]", help="The project (with agentpack.toml)."),
    target: str = typer.Option(..., "--target", "-t", help=f"{_target_names()}."),
    out: str | None = typer.Option(None, "--out", "-o", help="Output directory (default: PROJECT_DIR/dist)."),
    arch: str | None = typer.Option(None, "--arch", help="CPU architecture (lambda: x86_64 or arm64)."),
    python: str | None = typer.Option(None, "--python", help="Target Python version, e.g. 3.12."),
    slim: bool = typer.Option(
        False, "--slim", help="Strip caches, tests and docs of dependencies (keeps *.dist-info)."
    ),
    no_bytecode: bool = typer.Option(
        False, "--no-bytecode", help="Ship sources only (no .pyc compiled by the target's Python)."
    ),
    ui: bool | None = typer.Option(
        None,
        "--ui/--no-ui",
        help="Pack the chat page (served at /ui where AGENTPACK_UI=1), or not; default: the ui setting (off).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the result."),
) -> None:
    """Pack the project and its dependencies into one reproducible artifact for a target."""
    from pathlib import Path

    from agentpack.builders.build import BuildOptions
    from agentpack.cli.build_view import run_build

    options = BuildOptions(
        out_dir=Path(out) if out else None, arch=arch, python=python, slim=slim,
        bytecode_enabled=False if no_bytecode else None,  # None: the project's setting (on by default)
        ui=ui,
    )  # fmt: skip
    raise typer.Exit(run_build(Path(project_dir), target, options, as_json))


@app.command()
def emulate(
    source: str = typer.Argument(
        ".", metavar="[PROJECT_DIR | ARTIFACT.zip]", help="A project (built first, with the cache) or a built artifact."
    ),
    target: str | None = typer.Option(
        None, "--target", "-t", help=f"{_target_names()} (an artifact's own target by default)."
    ),
    port: int = typer.Option(
        8090, "--port", "-p", help="Port of the emulated trigger / function URL on 127.0.0.1 (0: any free port)."
    ),
    instances: int = typer.Option(
        1,
        "--instances",
        "-i",  # not -n: -n names things (deploy --name, worker --hostname)
        help="Instances (execution environments) to run; each request goes to the least busy one.",
    ),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE for the function's environment (repeatable)."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="The function timeout in seconds (default: the project's setting)."
    ),
    ask: str | None = typer.Option(None, "--ask", help="Once ready, send this message and stream the reply."),
    once: bool = typer.Option(False, "--once", help="With --ask: stop after the reply."),
    ui: bool = typer.Option(
        False, "--ui", help="Serve the chat page at /ui (a project is built with it; its instances get AGENTPACK_UI=1)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object (URL, cold start, instances) once ready."
    ),
) -> None:
    """Run the built artifact locally, exactly as the target platform would (no Docker)."""
    from pathlib import Path

    from agentpack.cli.emulate_view import run_emulate
    from agentpack.emulators.emulation import EmulationOptions

    if not 0 <= port <= 65535:
        raise usage_error(f"--port {port} is not a TCP port; use 1-65535 (or 0 for any free port)")
    if instances < 1:
        raise usage_error(f"--instances {instances}: give 1 or more")
    if timeout is not None and timeout <= 0:
        raise usage_error(f"--timeout {timeout}: give a positive number of seconds")
    options = EmulationOptions(port=port, instances=instances, timeout=timeout, ui=ui)
    raise typer.Exit(run_emulate(Path(source), target, options, env, as_json, ask, once))


_PROJECT_HELP = "The project whose .agentpack/deployments.json names the deployment (default: the current directory)."
_TARGET_HELP = "The deployment's target, when the name is deployed to more than one."


@app.command()
def deploy(
    project_dir: str = typer.Argument(".", metavar="[PROJECT_DIR]", help="The project (with agentpack.toml)."),
    target: str = typer.Option(..., "--target", "-t", help=f"{_target_names()}."),
    name: str | None = typer.Option(
        None,
        "--name",
        "-n",
        help="The function / runtime name (default: the target's name setting, else the project's name).",
    ),
    env: list[str] = typer.Option(
        [], "--env", "-e", help="KEY=VALUE set on the platform for this deploy, over [targets.T] env (repeatable)."
    ),
    allow_anonymous: bool | None = typer.Option(
        None,
        "--allow-anonymous/--require-auth",
        help="A public URL (no signed requests), or not; default: the allow_anonymous setting (off).",
    ),
    wait: float = typer.Option(
        900.0, "--wait", help="Seconds to wait for the platform to report the deployment ready."
    ),
    force: bool = typer.Option(
        False, "--force", help="Upload and publish a new version even when nothing changed (restarts instances)."
    ),
    no_api_key: bool = typer.Option(
        False,
        "--no-api-key",
        help="Give a public URL no generated API key (AGENTPACK_API_KEYS), and remove one made before.",
    ),
    rotate_api_key: bool = typer.Option(
        False, "--rotate-api-key", help="Replace the deployment's generated API key with a new one (printed once)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the result."),
) -> None:
    """Build the project and publish it to a target; prints the URL where the agent answers."""
    from pathlib import Path

    from agentpack.cli.deploy_view import run_deploy
    from agentpack.deployers.request import DeployOptions

    if wait <= 0:
        raise usage_error(f"--wait {wait}: give a positive number of seconds")
    options = DeployOptions(
        name=name,
        allow_anonymous=allow_anonymous,
        wait_seconds=wait,
        force=force,
        api_key=False if no_api_key else None,
        rotate_api_key=rotate_api_key,
    )
    raise typer.Exit(run_deploy(Path(project_dir), target, options, env, as_json))


@app.command(name="list")
def list_(
    project: str = typer.Option(".", "--project", "-C", help=_PROJECT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the deployments."),
) -> None:
    """List the project's deployments (from .agentpack/deployments.json)."""
    from pathlib import Path

    from agentpack.cli.deploy_view import run_list

    raise typer.Exit(run_list(Path(project), as_json))


@app.command()
def status(
    name: str = typer.Argument(..., help="The deployment's name."),
    target: str | None = typer.Option(None, "--target", "-t", help=_TARGET_HELP),
    project: str = typer.Option(".", "--project", "-C", help=_PROJECT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    show_api_key: bool = typer.Option(
        False, "--show-api-key", help="Print the deployment's API key, read from the platform's environment."
    ),
) -> None:
    """Ask the platform how a deployment is doing (and where it differs from what was deployed)."""
    from pathlib import Path

    from agentpack.cli.deploy_view import run_status

    raise typer.Exit(run_status(Path(project), name, target, as_json, show_api_key))


@app.command()
def invoke(
    name_or_url: str = typer.Argument(
        ..., metavar="NAME|URL", help="A deployment's name, or a URL where an agent answers."
    ),
    text: str = typer.Argument(..., help="The message to send."),
    session: str | None = typer.Option(None, "--session", "-s", help="Session id (a later `agentpack stop` names it)."),
    user: str | None = typer.Option(None, "--user", "-u", help="User id."),
    target: str | None = typer.Option(None, "--target", "-t", help=_TARGET_HELP),
    project: str = typer.Option(".", "--project", "-C", help=_PROJECT_HELP),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the whole reply."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the reply instead of streaming it."),
    api_key: str | None = _API_KEY_OPTION,
) -> None:
    """Send a message to a deployed agent and stream the reply into the terminal as it arrives."""
    from pathlib import Path

    from agentpack.cli.deploy_view import run_invoke

    if timeout <= 0:
        raise usage_error(f"--timeout {timeout}: give a positive number of seconds")
    raise typer.Exit(run_invoke(Path(project), name_or_url, text, session, user, target, timeout, as_json, api_key))


@app.command()
def stop(
    name_or_url: str = typer.Argument(
        ..., metavar="NAME|URL", help="A deployment's name, or a URL where an agent answers."
    ),
    session: str | None = typer.Option(
        None, "--session", "-s", help="Stop the run of this session (wherever it runs)."
    ),
    user: str | None = typer.Option(
        None, "--user", "-u", help="The run's user id (default: the session id, as the app assumes)."
    ),
    target: str | None = typer.Option(None, "--target", "-t", help=_TARGET_HELP),
    project: str = typer.Option(".", "--project", "-C", help=_PROJECT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    api_key: str | None = _API_KEY_OPTION,
) -> None:
    """Interrupt a running session (--session); without it, end a local deployment's process."""
    from pathlib import Path

    from agentpack.cli.deploy_view import run_stop

    raise typer.Exit(run_stop(Path(project), name_or_url, session, user, target, as_json, api_key))


@app.command()
def ui(
    name_or_url: str = typer.Argument(
        ..., metavar="NAME|URL", help="A deployment's name, or a URL where an agent answers."
    ),
    target: str | None = typer.Option(None, "--target", "-t", help=_TARGET_HELP),
    project: str = typer.Option(".", "--project", "-C", help=_PROJECT_HELP),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Interface to serve the page on (keep loopback: requests go out signed with your credentials).",
    ),
    port: int = typer.Option(8091, "--port", "-p", help="Port to serve the page on (0: any free port)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds a reply may take."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object (the page's URL, the deployment's) once serving."
    ),
    api_key: str | None = _API_KEY_OPTION,
) -> None:
    """Open the chat page for a deployed agent: served here, its requests signed and forwarded as `invoke` sends them."""
    from pathlib import Path

    from agentpack.cli.ui_view import run_ui

    if not 0 <= port <= 65535:
        raise usage_error(f"--port {port} is not a TCP port; use 1-65535 (or 0 for any free port)")
    if timeout <= 0:
        raise usage_error(f"--timeout {timeout}: give a positive number of seconds")
    raise typer.Exit(run_ui(Path(project), name_or_url, target, host, port, timeout, as_json, api_key))


@app.command()
def logs(
    name: str = typer.Argument(..., help="The deployment's name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines as they come (Ctrl+C ends)."),
    since: float = typer.Option(3600.0, "--since", help="Seconds of history to show (where the platform keeps it)."),
    target: str | None = typer.Option(None, "--target", "-t", help=_TARGET_HELP),
    project: str = typer.Option(".", "--project", "-C", help=_PROJECT_HELP),
) -> None:
    """Print a deployment's logs, where the platform offers them (local, lambda)."""
    from pathlib import Path

    from agentpack.cli.deploy_view import run_logs

    raise typer.Exit(run_logs(Path(project), name, target, follow, since))


@app.command()
def rollback(
    name: str = typer.Argument(..., help="The deployment's name."),
    to: str | None = typer.Option(
        None, "--to", help="The version to serve (default: the one before the version serving now)."
    ),
    target: str | None = typer.Option(None, "--target", "-t", help=_TARGET_HELP),
    project: str = typer.Option(".", "--project", "-C", help=_PROJECT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Serve the previous version again (moves the alias / endpoint; nothing is rebuilt or uploaded)."""
    from pathlib import Path

    from agentpack.cli.deploy_view import run_rollback

    raise typer.Exit(run_rollback(Path(project), name, target, to, as_json))


@app.command()
def destroy(
    name: str = typer.Argument(..., help="The deployment's name."),
    target: str | None = typer.Option(None, "--target", "-t", help=_TARGET_HELP),
    project: str = typer.Option(".", "--project", "-C", help=_PROJECT_HELP),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Do not ask for confirmation (it is asked only in a terminal)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Remove everything the deploys of NAME created (function or runtime, versions, routes, process) and forget it."""
    from pathlib import Path

    from agentpack.cli.deploy_view import run_destroy

    raise typer.Exit(run_destroy(Path(project), name, target, yes, as_json))


@app.command()
def init(
    project_dir: str = typer.Argument(".", metavar="[PROJECT_DIR]", help="Where to create the project."),
    name: str | None = typer.Option(None, "--name", help="Project name (default: the directory's name)."),
    target: list[str] | None = typer.Option(
        None,
        "--target",
        "-t",
        # the help text is built once, from the targets table
        help=f"Write a [targets.T] table listing every setting of T ({_target_names()}); repeatable. Default: fc and lambda.",  # noqa: B008
    ),
) -> None:
    """Scaffold a project: agentpack.toml, app.py and requirements.txt."""
    from pathlib import Path

    from agentpack.builders.errors import ProjectError
    from agentpack.builders.scaffold import scaffold

    try:
        created = scaffold(Path(project_dir), name, target)
    except ProjectError as exc:
        raise usage_error(str(exc)) from None
    for path in created:
        typer.echo(f"created {path}")


def main() -> None:
    from agentpack.errors import AgentpackError

    try:
        app()
    except AgentpackError as exc:  # one no command reported itself: one line and its exit code, no traceback
        from agentpack.cli.errors import exit_for

        raise SystemExit(exit_for(exc)) from None
