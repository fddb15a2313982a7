"""Posting results and heartbeats of async steps back to the Link Loom server.

A step declared ``mode: async`` carries a single-use callback URL and a heartbeat URL. The
backend answers 202 at once, then POSTs heartbeats while it works (each extends the step's
deadline by its ``heartbeat_timeout``) and finally POSTs the result in the response format.
Every POST is signed with the shared key. Connection errors and 5xx answers are retried with
backoff; a 409 means the attempt was already completed (by an earlier callback) — stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import httpx

from linkloom import signing
from linkloom.sdk.tasks import TaskResult, as_result

log = logging.getLogger("linkloom.sdk")


class CallbackOutcome(StrEnum):
    DELIVERED = "delivered"  # the server accepted the result (2xx)
    ALREADY_COMPLETED = "already_completed"  # 409: this attempt already has its result
    REJECTED = "rejected"  # another 4xx: bad signature, unknown or expired token
    GAVE_UP = "gave_up"  # connection errors or 5xx after every retry


class CallbackSender:
    """Signs and POSTs callbacks and heartbeats, retrying what can be retried.

    Pass ``client=`` from ``session()`` to reuse connections; without it a call opens its own
    short-lived client, so the sender works from any event loop (the Flask adapter runs
    background work on threads with their own loops).
    """

    def __init__(
        self,
        *,
        signing_key: str | bytes | None,
        retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.signing_key = signing_key
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._transport = transport

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[httpx.AsyncClient]:
        """One HTTP client for the heartbeats and the result of a job (connections reused)."""
        async with httpx.AsyncClient(
            transport=self._transport, timeout=self.timeout, verify=_ssl_context()
        ) as client:
            yield client

    async def complete(
        self,
        url: str,
        result: TaskResult | dict[str, Any] | Any,
        *,
        logs: list[str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> CallbackOutcome:
        """POST the final result of an attempt to its callback URL.

        ``result`` is a ``TaskResult``, a body already in the response format, or a plain output.
        """
        body = as_result(result).to_wire(extra_logs=logs or [])
        outcome = await self._post(url, body, attempts=self.retries + 1, client=client)
        log.info("loom_callback_%s", outcome.value, extra={"url": _redact(url)})
        return outcome

    async def heartbeat(
        self, url: str, *, client: httpx.AsyncClient | None = None
    ) -> CallbackOutcome:
        """POST one heartbeat. Retried briefly: the next heartbeat will come anyway."""
        return await self._post(url, {}, attempts=2, client=client)

    async def _post(
        self, url: str, body: dict[str, Any], *, attempts: int, client: httpx.AsyncClient | None
    ) -> CallbackOutcome:
        if client is None:
            async with self.session() as own:
                return await self._post(url, body, attempts=attempts, client=own)
        raw = json.dumps(body).encode()
        delay = self.backoff
        for attempt in range(1, attempts + 1):
            headers = {"Content-Type": "application/json"}
            if self.signing_key is not None:
                headers.update(signing.sign(self.signing_key, raw))  # fresh timestamp per try
            try:
                response = await client.post(url, content=raw, headers=headers)
            except httpx.TransportError as exc:
                log.warning(
                    "loom_callback_connection_error: %s (try %d/%d)", exc, attempt, attempts
                )
            else:
                if response.is_success:
                    return CallbackOutcome.DELIVERED
                if response.status_code == 409:
                    return CallbackOutcome.ALREADY_COMPLETED
                if response.status_code < 500 and response.status_code != 429:
                    log.error(
                        "loom_callback_rejected: HTTP %d %s",
                        response.status_code,
                        response.text[:200],
                    )
                    return CallbackOutcome.REJECTED
                log.warning(
                    "loom_callback_server_error: HTTP %d (try %d/%d)",
                    response.status_code,
                    attempt,
                    attempts,
                )
            if attempt < attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        return CallbackOutcome.GAVE_UP


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Loading CA certificates takes milliseconds: do it once per process."""
    return ssl.create_default_context()


def _redact(url: str) -> str:
    """Callback URLs carry a bearer-like token: keep it out of logs."""
    head, _, _ = url.rpartition("/callbacks/")
    return f"{head}/callbacks/…" if head else url
