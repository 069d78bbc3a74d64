"""An app with background tasks, for the task tests (embedded and Celery).

``make_app`` builds it for a given broker; the module-level ``app`` (what
``agentpack worker tests/nodes/task_app.py`` loads) takes the broker from
AGENTPACK_TEST_BROKER / AGENTPACK_TEST_BACKEND and the queue from AGENTPACK_TEST_QUEUE.
"""

import asyncio
import os

from agentpack import AgentApp


def make_app(broker=None, backend=None, queue="celery", **kwargs):
    app = AgentApp(app_name="tasks", broker_url=broker, backend_url=backend, **kwargs)

    @app.task("/square", queue=queue)
    def square(body):
        return {"result": body["x"] ** 2}

    @app.task("/async_square", queue=queue)
    async def async_square(body):
        await asyncio.sleep(0)
        return {"result": body["x"] ** 2}

    @app.task("/ping", queue=queue)
    def ping():
        return "pong"

    @app.task("/fail", queue=queue)
    def fail(body):
        return body["missing"]  # KeyError

    @app.task("/slow", queue=queue)
    async def slow(body):
        await asyncio.sleep(float(body.get("seconds", 60)))
        return "woke up"

    @app.task("/unserializable", queue=queue)
    def unserializable(body):
        return {"handle": object()}

    @app.query(framework="text")
    async def agent(msgs, request):
        yield "background "
        if getattr(request, "hang", False):
            await asyncio.Event().wait()
        yield "answer"

    return app


app = make_app(
    os.environ.get("AGENTPACK_TEST_BROKER"),
    os.environ.get("AGENTPACK_TEST_BACKEND"),
    os.environ.get("AGENTPACK_TEST_QUEUE", "celery"),
    enable_stream_task=True,
    stream_task_queue=os.environ.get("AGENTPACK_TEST_QUEUE", "celery"),
    interrupt_redis_url=os.environ.get("AGENTPACK_TEST_INTERRUPTS"),
)
