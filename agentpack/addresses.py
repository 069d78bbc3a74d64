"""Where this process serves, said once for the code that must tell others (an agent card, a
registry).

``AGENTPACK_SERVE_URL`` is set by whatever starts the server — ``app.run()``, ``agentpack run``,
the artifacts' server — and ``AGENTPACK_PUBLIC_URL`` by whatever puts a front before it (the
emulators; a user for a custom domain).  Environment variables, because the app is often
imported by a process that knows nothing of it (a platform's bootstrap).
"""

from __future__ import annotations

import os
import socket

SERVE_URL = "AGENTPACK_SERVE_URL"
PUBLIC_URL = "AGENTPACK_PUBLIC_URL"
_WILDCARDS = {"0.0.0.0", "::", ""}


def reachable_host(host: str) -> str:
    """A host others can reach for one the server listens on: a wildcard becomes this machine's
    first non-loopback address (loopback when it has none)."""
    if host not in _WILDCARDS:
        return host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
            address: str = probe.getsockname()[0]
            return address
    except OSError:
        return "127.0.0.1"


def announce_serving(host: str, port: int, scheme: str = "http") -> str:
    """Record (in this process's environment) the URL the server about to start will answer on."""
    shown = reachable_host(host)
    url = f"{scheme}://{f'[{shown}]' if ':' in shown else shown}:{port}"
    os.environ[SERVE_URL] = url
    return url


__all__ = ["PUBLIC_URL", "SERVE_URL", "announce_serving", "reachable_host"]
