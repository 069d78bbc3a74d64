"""The app the task benchmark drives: one trivial job, on Celery when AGENTPACK_BENCH_BROKER is set."""

import os

from agentpack import AgentApp

broker = os.environ.get("AGENTPACK_BENCH_BROKER")
app = AgentApp(app_name="task-bench", broker_url=broker, backend_url=os.environ.get("AGENTPACK_BENCH_BACKEND"))


@app.task("/echo", queue=os.environ.get("AGENTPACK_BENCH_QUEUE", "celery"))
def echo(body):
    return body
