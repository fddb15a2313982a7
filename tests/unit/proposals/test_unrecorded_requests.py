"""In the sandbox, a request with no recording fails its step once, without retries."""

from __future__ import annotations

import httpx

from linkloom.engine.steps.http import HttpExecutor
from linkloom.sandbox.replay import Replayer
from tests.support.step_context import make_context, make_services


async def test_unrecorded_request_fails_the_step_as_not_retryable() -> None:
    replayer = Replayer([])
    async with httpx.AsyncClient(transport=replayer.transport()) as http:
        ctx = make_context(
            step={"type": "http", "url": "http://backend.test/api/tasks/audit"},
            services=make_services(http=http),
        )
        result = await HttpExecutor().execute(ctx)
    assert result.error is not None
    assert result.error.retryable is False
    assert result.error.kind == "unrecorded"
    assert result.error.message == "unrecorded request: POST http://backend.test/api/tasks/audit"
    assert [c.describe() for c in replayer.unrecorded] == [
        "POST http://backend.test/api/tasks/audit"
    ]
