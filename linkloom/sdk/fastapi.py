"""FastAPI adapter: ``LoomRouter``, an ``APIRouter`` whose ``@router.task(path)`` endpoints speak
the Link Loom task protocol (signature check, typed request, response format, de-duplication,
async steps). Only this module imports FastAPI.

    router = LoomRouter(signing_key=os.environ["LOOM_SECURITY__SIGNING_KEY"],
                        idempotency=SqliteIdempotencyStore("loom-idempotency.db"))

    @router.task("/api/tasks/fetch-data")
    async def fetch_data(task: TaskRequest) -> list[dict]:
        task.log("Fetched 3 records")
        return [...]

    app.include_router(router)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from linkloom import signing
from linkloom.sdk.callbacks import CallbackSender
from linkloom.sdk.handlers import Handler, TaskDispatcher, TaskRoute
from linkloom.sdk.idempotency import IdempotencyStore

_TASK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "The Link Loom task envelope, or the step's own body.",
                    "properties": {
                        "run_id": {"type": "string"},
                        "flow_id": {"type": "string"},
                        "flow_version": {"type": "integer"},
                        "step_id": {"type": "string"},
                        "attempt": {"type": "integer"},
                        "idempotency_key": {"type": "string"},
                        "inputs": {"type": "object"},
                        "upstream": {"type": "object"},
                        "item": {},
                        "index": {"type": ["integer", "null"]},
                        "callback": {"type": ["object", "null"]},
                    },
                }
            }
        },
    }
}


class LoomRouter(APIRouter):
    """An ``APIRouter`` for task endpoints; extra keyword arguments go to ``APIRouter``."""

    def __init__(
        self,
        *,
        signing_key: str | bytes | None = None,
        verify_signatures: bool = True,
        tolerance: float = signing.DEFAULT_TOLERANCE,
        idempotency: IdempotencyStore | None = None,
        claim_ttl: float = 300.0,
        heartbeat_interval: float = 10.0,
        callbacks: CallbackSender | None = None,
        dispatcher: TaskDispatcher | None = None,
        **router_kwargs: Any,
    ) -> None:
        super().__init__(**router_kwargs)
        self.dispatcher = dispatcher or TaskDispatcher(
            signing_key=signing_key,
            verify_signatures=verify_signatures,
            tolerance=tolerance,
            idempotency=idempotency,
            claim_ttl=claim_ttl,
            heartbeat_interval=heartbeat_interval,
            callbacks=callbacks,
        )

    def task(
        self, path: str, *, async_task: bool = False, name: str | None = None, **route_kwargs: Any
    ) -> Callable[[Handler], Handler]:
        """Register ``POST path`` as a task endpoint.

        The handler takes a ``TaskRequest`` (or nothing) and returns a value, a ``TaskResult`` or
        a ``Deferred``; it may be sync (run in a thread) or async. With ``async_task=True`` a
        ``mode: async`` step is answered 202 at once and the handler runs in the background.
        """

        def register(handler: Handler) -> Handler:
            route = TaskRoute(handler=handler, async_task=async_task, name=name or handler.__name__)
            dispatcher = self.dispatcher

            async def endpoint(request: Request) -> Response:
                body = await request.body()
                reply = await dispatcher.dispatch(route, body=body, headers=request.headers)
                return JSONResponse(
                    reply.body, status_code=reply.status_code, headers=reply.headers
                )

            endpoint.__doc__ = handler.__doc__
            self.add_api_route(
                path,
                endpoint,
                methods=["POST"],
                name=route.name,
                response_model=None,
                openapi_extra=route_kwargs.pop("openapi_extra", _TASK_OPENAPI),
                **route_kwargs,
            )
            return handler

        return register
