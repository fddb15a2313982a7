"""A server on 127.0.0.1 that answers every request with a line that is not HTTP (aiohttp cannot
read the answer: the http step's attempt fails as an internal error)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

ANSWER = b"NOT HTTP AT ALL\r\n\r\n"


async def _garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(ANSWER)
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def not_http_server() -> AsyncIterator[int]:
    """The port it listens on, while the block runs."""
    server = await asyncio.start_server(_garble, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
