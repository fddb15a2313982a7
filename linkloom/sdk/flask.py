"""Flask adapter: ``loom_blueprint()`` returns a ``Blueprint`` whose ``@bp.task(path)`` endpoints
speak the Link Loom task protocol, like ``LoomRouter`` does for FastAPI. Only this module
imports Flask. Background work of async steps runs on daemon threads, each with its own loop.

    bp = loom_blueprint(signing_key=os.environ["LOOM_SECURITY__SIGNING_KEY"])

    @bp.task("/api/tasks/fetch-data")
    def fetch_data(task: TaskRequest) -> list[dict]:
        return [...]

    app.register_blueprint(bp)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from linkloom import signing
from linkloom.sdk.callbacks import CallbackSender
from linkloom.sdk.handlers import Handler, TaskDispatcher, TaskRoute
from linkloom.sdk.idempotency import IdempotencyStore


class LoomBlueprint(Blueprint):
    """A Flask ``Blueprint`` with a ``task`` decorator; build it with ``loom_blueprint``."""

    dispatcher: TaskDispatcher

    def task(
        self, path: str, *, async_task: bool = False, name: str | None = None
    ) -> Callable[[Handler], Handler]:
        """Register ``POST path`` as a task endpoint (same semantics as ``LoomRouter.task``)."""

        def register(handler: Handler) -> Handler:
            route = TaskRoute(handler=handler, async_task=async_task, name=name or handler.__name__)
            dispatcher = self.dispatcher

            def view() -> Response:
                reply = dispatcher.dispatch_blocking(
                    route, body=request.get_data(), headers=dict(request.headers.items())
                )
                return Response(
                    json.dumps(reply.body),
                    status=reply.status_code,
                    headers=reply.headers,
                    mimetype="application/json",
                )

            view.__doc__ = handler.__doc__
            self.add_url_rule(path, endpoint=route.name, view_func=view, methods=["POST"])
            return handler

        return register


def loom_blueprint(
    name: str = "loom_tasks",
    import_name: str = __name__,
    *,
    signing_key: str | bytes | None = None,
    verify_signatures: bool = True,
    tolerance: float = signing.DEFAULT_TOLERANCE,
    idempotency: IdempotencyStore | None = None,
    claim_ttl: float = 300.0,
    heartbeat_interval: float = 10.0,
    callbacks: CallbackSender | None = None,
    dispatcher: TaskDispatcher | None = None,
    **blueprint_kwargs: Any,
) -> LoomBlueprint:
    """A blueprint for task endpoints; extra keyword arguments go to ``Blueprint``."""
    blueprint = LoomBlueprint(name, import_name, **blueprint_kwargs)
    blueprint.dispatcher = dispatcher or TaskDispatcher(
        signing_key=signing_key,
        verify_signatures=verify_signatures,
        tolerance=tolerance,
        idempotency=idempotency,
        claim_ttl=claim_ttl,
        heartbeat_interval=heartbeat_interval,
        callbacks=callbacks,
    )
    return blueprint
