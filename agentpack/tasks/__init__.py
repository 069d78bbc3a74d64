"""Background tasks: ``@app.task`` on Celery, or on an embedded queue when no broker is set."""

from agentpack.tasks.base import BrokerUnavailable, TaskInfo, TaskQueue, TaskSpec, TaskStatus

__all__ = ["BrokerUnavailable", "TaskInfo", "TaskQueue", "TaskSpec", "TaskStatus"]
