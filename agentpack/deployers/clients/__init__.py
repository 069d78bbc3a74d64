"""The cloud clients the deployers drive: each wraps one platform's real SDK.

``alibaba`` (credentials, endpoints, errors and retries, waits, what the Alibaba Cloud clients
share), ``fc`` (Function Compute 3.0), ``agentrun`` (AgentRun), ``oss`` (Object Storage, for FC
code over 100 MB), ``aws`` (Lambda and CloudWatch Logs, over boto3) and ``signing`` (signing
requests to a deployed agent whose URL is not public).  A client knows its platform's API and
nothing of the deploy pipeline: it never imports the deployers or the command line (an
import-linter contract in pyproject.toml says so), and raises the two errors of
``agentpack.deployers.errors``.  The SDKs are imported when a client is first used.
"""
