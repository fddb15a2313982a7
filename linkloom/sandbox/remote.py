"""The ``remote`` sandbox backend: bundles run by a sandbox service (``loom sandbox serve``).

Where the server cannot start containers or namespaces itself (Kubernetes), a separate service
runs the bundles: a Deployment with no network egress, a read-only root filesystem, no
credentials. The wire format is what the other backends already speak:

* ``POST {url}/v1/bundles``: the body is ``SandboxBundle.to_json()``, signed with the shared
  ``sandbox.remote_key`` (``linkloom.signing`` v1: ``X-Loom-Timestamp``, ``X-Loom-Signature``);
* the answer is ``SandboxResult.to_dict()`` as JSON: what the service's own backend (``process``:
  the entry point's line protocol, read back with ``runner.collect``) produced.

``url`` is ``http(s)://host:port`` or ``unix:///path/to/socket`` (a service in another network
namespace on the same host). A service that cannot be reached, refuses the signature or fails
raises ``SandboxUnavailable``, like Docker being down; the flow's own failures are results.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar

import httpx

from linkloom import signing
from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.errors import SandboxUnavailable
from linkloom.sandbox.runner import SandboxResult

BUNDLES_PATH = "/v1/bundles"
UNIX_PREFIX = "unix://"
# The service's own wall clock ends a bundle; this only bounds a service that stopped answering.
ANSWER_MARGIN_SECONDS = 30.0


def client_for(url: str, *, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for the service at ``url`` (``unix:///path`` connects to that socket)."""
    if url.startswith(UNIX_PREFIX):
        transport = httpx.AsyncHTTPTransport(uds=url[len(UNIX_PREFIX) :])
        return httpx.AsyncClient(transport=transport, base_url="http://sandbox", timeout=timeout)
    return httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout)


class RemoteRunner:
    """A ``SandboxRunner`` that sends the bundle to a sandbox service and reads its result."""

    name: ClassVar[str] = "remote"

    def __init__(self, *, url: str, key: str, wall_clock: float = 60.0) -> None:
        if not url:
            raise SandboxUnavailable(
                backend="remote", reason="set LOOM_SANDBOX__REMOTE_URL to the sandbox service"
            )
        if not key:
            raise SandboxUnavailable(
                backend="remote",
                reason="set LOOM_SANDBOX__REMOTE_KEY (the key the sandbox service checks)",
            )
        self.url = url
        self.key = key
        self.wall_clock = wall_clock

    async def run(self, bundle: SandboxBundle) -> SandboxResult:
        body = bundle.to_json().encode()
        headers = {"Content-Type": "application/json", **signing.sign(self.key, body)}
        started = time.perf_counter()
        timeout = self.wall_clock + ANSWER_MARGIN_SECONDS
        try:
            async with client_for(self.url, timeout=timeout) as client:
                answer = await client.post(BUNDLES_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SandboxUnavailable(
                backend="remote",
                reason=f"the sandbox service at {self.url} did not answer ({exc!r}); "
                "is `loom sandbox serve` running?",
            ) from exc
        if answer.status_code == 401:
            raise SandboxUnavailable(
                backend="remote",
                reason="the sandbox service refused the bundle's signature: "
                "LOOM_SANDBOX__REMOTE_KEY differs between the server and the service",
            )
        if answer.status_code != 200:
            raise SandboxUnavailable(
                backend="remote",
                reason=f"the sandbox service answered {answer.status_code}: {answer.text[:300]}",
            )
        try:
            data: dict[str, Any] = answer.json()
            result = SandboxResult.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise SandboxUnavailable(
                backend="remote", reason=f"the sandbox service's answer is not a result: {exc}"
            ) from exc
        return replace(
            result,
            backend=self.name,
            duration_ms=(time.perf_counter() - started) * 1000,
            isolation=(*result.isolation, f"service: {self.url} ({result.backend} backend)"),
        )
