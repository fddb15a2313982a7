"""The CLI's connection to a server: the SDK ``Client`` plus plain JSON calls for the endpoints
the SDK does not wrap (tokens, audit, dead letters, logs).

Server URL and token come from ``cli_config()`` (``LOOM_SERVER_URL``/``LOOM_TOKEN`` first, then
``loom config set``). Server errors arrive as ``LinkloomAPIError`` subclasses, which
``cli/main.py`` prints as one line with the category's exit code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from linkloom.cli.settings import cli_config

# httpx and the SDK are imported when a command connects, not when ``loom`` starts.
if TYPE_CHECKING:
    import httpx

    from linkloom.sdk import Client

API = "/api/v1"

# Tests point the CLI at an in-process app by setting a transport here.
transport_override: httpx.BaseTransport | None = None


class Connection:
    """One server, one token, for the length of a command."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.token = token
        self._transport = transport
        self._timeout = timeout
        self._sdk: Client | None = None
        headers = {"Accept": "application/json", "User-Agent": "loom-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=self.base_url + API,
            headers=headers,
            timeout=timeout,
            transport=transport,
            # Plain HTTP needs no certificates; loading them costs ~0.2 s per command.
            verify=self.base_url.startswith("https://"),
        )

    @property
    def sdk(self) -> Client:
        """The SDK client on the same server and token (created on first use)."""
        if self._sdk is None:
            from linkloom.sdk import Client

            self._sdk = Client(
                self.base_url, token=self.token, transport=self._transport, timeout=self._timeout
            )
        return self._sdk

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()
        self.http.close()

    def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        """One request; the decoded JSON (None for an empty body), or a ``LinkloomAPIError``."""
        import httpx

        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, path, params=clean or None, json=json)
        except httpx.TransportError as exc:
            from linkloom.sdk.errors import ServerUnreachable

            raise ServerUnreachable(
                base_url=self.base_url, reason=str(exc) or type(exc).__name__
            ) from exc
        if not response.is_success:
            # The SDK (pydantic models and all) is loaded only when there is an error to map.
            from linkloom.sdk.errors import LinkloomAPIError

            raise LinkloomAPIError.from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.call("POST", path, json=json)

    def pages(self, path: str, *, limit: int | None = None, **params: Any) -> Iterator[Any]:
        """Items of a paginated list, following ``next_cursor`` up to ``limit`` items."""
        cursor = None
        seen = 0
        while True:
            page_size = min(limit - seen, 500) if limit else 500
            page = self.get(path, limit=page_size, cursor=cursor, **params)
            for item in page.get("items", []):
                yield item
                seen += 1
                if limit and seen >= limit:
                    return
            cursor = page.get("next_cursor")
            if not cursor:
                return


@contextmanager
def connect() -> Iterator[Connection]:
    """A connection from the CLI configuration, closed afterwards."""
    config = cli_config()
    connection = Connection(config.server_url, token=config.token, transport=transport_override)
    try:
        yield connection
    finally:
        connection.close()
