"""How long a control-plane call may wait for its answer, for every cloud client.

An endpoint that accepts the connection and never answers (a proxy, a firewall that
black-holes, a wrong host) used to hold ``deploy`` silent for two to six minutes: the SDKs'
own read timeouts (120 s for Alibaba Cloud's, 60 s per attempt for botocore's).  One bound,
``AGENTPACK_API_TIMEOUT`` seconds, applies to both; connecting gets 5 s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agentpack.deployers.errors import DeployConfigError

#: Variable with the seconds a control-plane call may wait for its answer.
API_TIMEOUT_ENV = "AGENTPACK_API_TIMEOUT"
#: Default for it: long enough for a create with a 100 MB inline zip to be answered, short
#: enough that a silent endpoint fails the deploy within a few minutes at most.
DEFAULT_API_TIMEOUT = 60.0
#: Seconds to open the connection.
CONNECT_TIMEOUT = 5.0


def api_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a control-plane call may wait for its answer (``AGENTPACK_API_TIMEOUT``)."""
    raw = (os.environ if environ is None else environ).get(API_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_API_TIMEOUT
    except ValueError:
        raise DeployConfigError(f"{API_TIMEOUT_ENV}={raw!r}: give seconds, e.g. 60") from None
    if value <= 0:
        raise DeployConfigError(f"{API_TIMEOUT_ENV}={raw!r}: give a positive number of seconds")
    return value
