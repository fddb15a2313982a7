"""Signed inbound calls that carry no token: webhooks that start runs, and the callbacks and
heartbeats of async steps.

* ``POST /api/v1/webhooks/{flow_id}/{trigger_id}``: verified by the scheduler
  (``scheduler.webhooks``): a bad or missing signature is a 401 and creates nothing; a stale
  timestamp is a 401; a replayed delivery is a 409.
* ``POST /api/v1/callbacks/{token}``: the result of an async step, signed with the shared key
  (``linkloom.signing``); a second callback for the same attempt is a 409.
* ``POST /api/v1/callbacks/{token}/heartbeat``: extends the step's deadline. Heartbeats are not
  audited: they keep a step alive and change nothing anyone decided.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from linkloom import signing
from linkloom.api.deps import Audit, Services, get_services
from linkloom.api.schemas.access import AcceptedOut
from linkloom.api.schemas.common import problem_responses
from linkloom.api.schemas.runs import RunOut
from linkloom.errors import InvalidInput, NotAuthenticated, Unavailable

router = APIRouter(prefix="/api/v1", tags=["inbound"])

MAX_CALLBACK_BYTES = 20_000_000
_SIGNED = {
    "parameters": [
        {"name": signing.TIMESTAMP_HEADER, "in": "header", "schema": {"type": "string"}},
        {"name": signing.SIGNATURE_HEADER, "in": "header", "schema": {"type": "string"}},
    ],
    "requestBody": {
        "content": {"application/json": {"schema": {"type": "object"}}},
        "required": False,
    },
}


class SignatureRejected(NotAuthenticated):
    """Callback signature rejected: {reason}. Sign the body with the server's signing key."""

    code = "signature_rejected"


@router.post(
    "/webhooks/{flow_id}/{trigger_id}",
    summary="Start a run from a signed webhook",
    description="Sign with `X-Loom-Timestamp` + `X-Loom-Signature` (v1) or GitHub's "
    "`X-Hub-Signature-256` + `X-GitHub-Delivery`. The trigger's `inputs` templates map the JSON "
    "payload to the flow's inputs.",
    status_code=201,
    openapi_extra=_SIGNED,
    responses=problem_responses(401, 404, 409, 422, 503),
)
async def webhook(
    flow_id: str, trigger_id: str, request: Request, audit: Audit, services: Services
) -> RunOut:
    scheduler = services.scheduler
    if scheduler is None:
        raise Unavailable("webhooks need the scheduler, which this server does not run")
    body = await request.body()
    created = await scheduler.receive_webhook(
        flow_id, trigger_id, body=body, headers=request.headers
    )  # the headers themselves, not a dict: a signature header sent twice is refused
    await audit(
        "run.trigger",
        "run",
        created.id,
        flow_id=flow_id,
        trigger="webhook",
        webhook=trigger_id,
        actor=f"webhook:{trigger_id}",
    )
    return RunOut.from_domain(await services.runs.get_run(created.id))


@router.post(
    "/callbacks/{token}",
    summary="Complete an async step with its result (signed)",
    description="Body: `{status: SUCCESS|FAILED, output, logs, error}`. A second callback for the "
    "same attempt answers 409.",
    openapi_extra=_SIGNED,
    responses=problem_responses(401, 404, 409, 422),
)
async def callback(token: str, request: Request, services: Services, audit: Audit) -> AcceptedOut:
    body, _signed = await _verified_body(request)
    await services.runs.complete_callback(token, _json(body))
    step_run_id = token.split(".", 1)[0]
    await audit("step.callback", "step", step_run_id, actor="backend")
    return AcceptedOut(accepted=True)


@router.post(
    "/callbacks/{token}/heartbeat",
    summary="Extend an async step's deadline by its heartbeat_timeout (signed)",
    openapi_extra=_SIGNED,
    responses=problem_responses(401, 404, 409, 422),
)
async def heartbeat(token: str, request: Request, services: Services) -> AcceptedOut:
    _body, signed = await _verified_body(request)
    deadline = await services.runs.heartbeat(token, signed_at=signed.timestamp)
    return AcceptedOut(accepted=True, deadline=deadline)


async def _verified_body(request: Request) -> tuple[bytes, signing.Signed]:
    """The body and what its signature proved. A callback needs no replay store: its token
    names one attempt, whose second result is a 409; a replayed heartbeat changes nothing
    (``extend_deadline``)."""
    body = await request.body()
    if len(body) > MAX_CALLBACK_BYTES:
        raise InvalidInput(f"the callback body is larger than {MAX_CALLBACK_BYTES} bytes")
    keys = get_services(request).settings.verification_keys
    reason = "no key configured"
    for key in keys:
        try:
            return body, signing.check(key, body, request.headers)
        except signing.SignatureError as exc:
            reason = str(exc)
    raise SignatureRejected(reason=reason)


def _json(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the callback body is not JSON; send the task response format") from None
