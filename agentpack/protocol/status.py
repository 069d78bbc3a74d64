"""Every status word agentpack puts on the wire, in one place.

Three objects have a status, and AgentScope Runtime spells each differently, so clients
check three vocabularies; they are kept as they are and only *defined* once, here, with
how they correspond:

================  =========================  ======================  ==================
run outcome       response ``status``        session state           background task
                  (:class:`RunStatus`)       (:class:`RunState`)     (:class:`TaskStatus`)
================  =========================  ======================  ==================
waiting           ``queued``                 —                       ``pending``
running           ``in_progress``            ``RUNNING``             ``running``
ended well        ``completed``              ``FINISHED``            ``finished``
stopped           ``canceled``               ``STOPPED``             ``canceled``
failed            ``failed``                 ``ERROR``               ``error``
================  =========================  ======================  ==================

(A background *agent* run that failed is still a ``finished`` task: the task did its job,
which was to produce a response — whose own status is ``failed``.)
"""

from __future__ import annotations

import enum

__all__ = ["RunState", "RunStatus", "TaskStatus", "session_state"]


class RunStatus:
    """Status of response, message and content objects.

    Plain string constants, so ``event["status"] == RunStatus.Completed`` holds for a
    decoded JSON event and the values serialise as themselves.  The capitalised names are
    AgentScope Runtime's; the upper-case ones are agentpack's earlier spellings.
    """

    Created = "created"
    InProgress = "in_progress"
    Completed = "completed"
    Canceled = "canceled"
    Failed = "failed"
    Rejected = "rejected"
    Unknown = "unknown"
    Queued = "queued"
    Incomplete = "incomplete"

    CREATED = Created
    IN_PROGRESS = InProgress
    COMPLETED = Completed
    CANCELED = Canceled
    FAILED = Failed
    REJECTED = Rejected
    UNKNOWN = Unknown
    QUEUED = Queued
    INCOMPLETE = Incomplete


class RunState(str, enum.Enum):
    """State of a session in the interrupt backend (``get_chat_state``)."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    FINISHED = "FINISHED"
    ERROR = "ERROR"


class TaskStatus:
    """Status of a background task on ``GET {path}/{task_id}``."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    ERROR = "error"
    CANCELED = "canceled"

    FINAL = frozenset({FINISHED, ERROR, CANCELED})


_SESSION_STATE = {
    RunStatus.Completed: RunState.FINISHED,
    RunStatus.Canceled: RunState.STOPPED,
    RunStatus.Failed: RunState.ERROR,
}


def session_state(status: str) -> RunState:
    """The state a run leaves its session in; a run cut short (client gone) counts as STOPPED."""
    return _SESSION_STATE.get(status, RunState.STOPPED)
