"""Flow runs whose http steps meet encoded answers and failed calls, through the production port
(aiohttp) against real local servers, on SQLite and PostgreSQL.

Bodies are decoded as httpx decoded them: gzip and deflate; any other encoding (``br``,
``zstd``: neither package is installed) passes through as it came. A failed call's error names
the scheme, host, port and path it went to and why it failed, never the query string or
userinfo, where a value derived from a secret may travel.
"""

from __future__ import annotations

import gzip
import io
import socket
import zlib
from collections.abc import AsyncIterator, Iterator

import pytest
from engine_harness import FAST_RETRY, SECRET, Engine, Reply, step

from linkloom import logs
from linkloom.engine.models import RunStatus
from tests.support.not_http import not_http_server

WORDS = "plain words " * 100


async def test_gzip_and_deflate_answers_are_decoded_and_br_passes_through(engine: Engine) -> None:
    b = engine.backend
    text = {"Content-Type": "text/plain"}
    b.on(
        "/gzip",
        Reply(body=gzip.compress(WORDS.encode()), headers={**text, "Content-Encoding": "gzip"}),
    )
    b.on(
        "/deflate",
        Reply(body=zlib.compress(WORDS.encode()), headers={**text, "Content-Encoding": "deflate"}),
    )
    b.on("/br", Reply(body=b"opaque br bytes", headers={**text, "Content-Encoding": "br"}))
    await engine.apply(
        {"id": "encoded", "steps": [step("gzip", b), step("deflate", b), step("br", b)]}
    )  # fmt: skip
    run = await engine.run("encoded")
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert steps["gzip"].output == WORDS
    assert steps["deflate"].output == WORDS
    assert steps["br"].output == "opaque br bytes"  # not decoded, as httpx did without brotli
    exchanges = {x.step_id: x for x in await engine.runs.list_exchanges(run.id)}
    assert exchanges["br"].response["headers"]["content-encoding"] == "br"


async def test_a_body_that_does_not_decode_fails_the_attempt_unretried(engine: Engine) -> None:
    b = engine.backend
    b.on("/bad", Reply(body=b"not gzip at all", headers={"Content-Encoding": "gzip"}))
    await engine.apply({"id": "badgzip", "steps": [step("bad", b, retry=FAST_RETRY)]})
    run = await engine.run("badgzip")
    assert run.status is RunStatus.FAILED
    [bad] = await engine.runs.list_steps(run.id)
    assert bad.error is not None
    assert bad.error["kind"] == "bad_response"
    assert bad.error["message"] == (
        "the backend's answer could not be read: its body does not decode as its "
        "Content-Encoding says (Error -3 while decompressing data: incorrect header check)"
    )
    assert len(b.calls_to("/bad")) == 1


@pytest.fixture
async def garbler() -> AsyncIterator[int]:
    async with not_http_server() as port:
        yield port


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line, rendered as production renders it, with the harness's secret registered
    for masking (a value derived from it is not)."""
    out = io.StringIO()
    logs.configure(fmt="json", level="DEBUG", stream=out)
    logs.register_secret(SECRET)
    yield out
    logs.reset()


async def test_a_failed_call_names_host_and_cause_but_no_secret_in_its_url(
    engine: Engine, garbler: int, captured_logs: io.StringIO
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    token = "?token={{ secrets.api_token | upper }}"
    once = {"max_attempts": 1}
    await engine.apply(
        {
            "id": "leaky",
            "steps": [
                {"id": "refused", "type": "http", "retry": once,
                 "url": f"http://127.0.0.1:{closed}/orders{token}"},
                # a path aiohttp writes percent-encoded: its text is no longer the URL sent,
                # so masking the URL by value cannot find it
                {"id": "garbled", "type": "http", "retry": once,
                 "url": f"http://127.0.0.1:{garbler}/new orders{token}"},
            ],
        }
    )  # fmt: skip
    run = await engine.run("leaky")
    assert run.status is RunStatus.FAILED
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    attempts = await engine.runs.list_attempts(run.id)
    exchanges = await engine.runs.list_exchanges(run.id)
    events = await engine.runs.events(run.id)

    refused, garbled = steps["refused"].error, steps["garbled"].error
    assert refused is not None
    assert garbled is not None
    assert refused["kind"] == "connection"
    assert refused["message"].startswith(
        f"connection to http://127.0.0.1:{closed}/orders failed: "
        "could not connect (connection refused)"
    )
    assert garbled["kind"] == "bad_response"
    assert garbled["message"].startswith(
        "the backend's answer could not be read: Bad status line: "
    )
    recorded = {e.step_id: e.error for e in exchanges}
    assert recorded["refused"] == refused["message"].removesuffix(" (gave up after 1 attempts)")
    assert recorded["garbled"] == garbled["message"].removesuffix(" (gave up after 1 attempts)")
    stored = repr((steps, attempts, exchanges, events))
    logged = captured_logs.getvalue()
    assert "executor_crashed" not in logged  # the backend's fault, not the engine's
    for text in (stored, logged):
        assert SECRET not in text
        assert SECRET.upper() not in text
        assert "token=" not in text
