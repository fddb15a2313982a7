"""Errors the engine and its run service raise on purpose.

LinkloomError
├── NotFound
│   ├── FlowNotFound            no such flow (or it was deleted)
│   ├── FlowVersionNotFound     the flow exists but not that version
│   ├── RunNotFound             no such run
│   ├── DeadLetterNotFound      no such dead letter
│   └── CallbackNotFound        the callback token names no waiting step
├── InvalidInput
│   ├── InputsInvalid           trigger inputs do not match the flow's declared inputs
│   └── CallbackTokenInvalid    a callback token that this server did not sign
└── Conflict
    ├── InvalidTransition       the run is not in a state that allows this
    ├── DuplicateRun            a run for this (flow, schedule, fire time) already exists
    ├── CallbackAlreadyUsed     a second callback for the same attempt
    │   └── CallbackDeadlinePassed  a callback or heartbeat after the attempt's deadline
    ├── FlowChanged             the flow's current version changed while a run was created
    └── FlowPaused              the flow is paused and cannot be triggered
"""

from __future__ import annotations

# Re-exported: engine code raises the shared categories as ``errors.Conflict`` and so on.
from linkloom.errors import Conflict as Conflict
from linkloom.errors import InvalidInput as InvalidInput
from linkloom.errors import NotFound as NotFound


class FlowNotFound(NotFound):
    """Flow {flow_id!r} not found; list flows with 'loom flow list'."""

    code = "flow_not_found"


class FlowVersionNotFound(NotFound):
    """Flow {flow_id!r} has no version {version}; list versions with 'loom flow history'."""

    code = "flow_version_not_found"


class RunNotFound(NotFound):
    """Run {run_id!r} not found; list runs with 'loom run list'."""

    code = "run_not_found"


class DeadLetterNotFound(NotFound):
    """Dead letter {dead_letter_id!r} not found; list them with 'loom deadletter list'."""

    code = "dead_letter_not_found"


class CallbackNotFound(NotFound):
    """No step is waiting for this callback; it may have timed out or been cancelled."""

    code = "callback_not_found"


class InputsInvalid(InvalidInput):
    """Invalid inputs for flow {flow_id!r}: {summary}."""

    code = "inputs_invalid"

    def __init__(self, *, flow_id: str, problems: list[str]) -> None:
        super().__init__(flow_id=flow_id, problems=problems, summary="; ".join(problems))


class CallbackTokenInvalid(InvalidInput):
    """The callback token is malformed or not signed by this server."""

    code = "callback_token_invalid"


class InvalidTransition(Conflict):
    """Run {run_id!r} is {status}; cannot {action} it."""

    code = "invalid_transition"


class DuplicateRun(Conflict):
    """A run of flow {flow_id!r} for schedule {schedule_id!r} at {fire_time} already exists."""

    code = "duplicate_run"


class CallbackAlreadyUsed(Conflict):
    """This attempt already received its result; a callback is accepted once."""

    code = "callback_already_used"


class CallbackDeadlinePassed(CallbackAlreadyUsed):
    """This attempt's callback deadline passed at {deadline}: the attempt timed out and its late result is refused."""  # noqa: E501  -- the message is one line on purpose


class FlowChanged(Conflict):
    """Flow {flow_id!r} changed while the run was being created; trigger it again."""

    code = "flow_changed"


class FlowPaused(Conflict):
    """Flow {flow_id!r} is paused; resume it with 'loom flow resume {flow_id}'."""

    code = "flow_paused"


class WorkerNotRegistered(NotFound):
    """Worker {worker_id!r} is not registered; register it with POST /api/v1/workers first."""

    code = "worker_not_registered"
