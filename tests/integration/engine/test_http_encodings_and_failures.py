"""Flow runs whose http steps meet encoded answers, through the production port (aiohttp)
against real local servers, on SQLite and PostgreSQL.

Bodies are decoded as httpx decoded them: gzip and deflate; any other encoding (``br``,
``zstd``: neither package is installed) passes through as it came.
"""

from __future__ import annotations

import gzip
import zlib

from engine_harness import FAST_RETRY, Engine, Reply, step

from linkloom.engine.models import RunStatus

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
    assert bad.error["kind"] == "internal"
    assert bad.error["message"] == (
        "DecodingError: Error -3 while decompressing data: incorrect header check"
    )
    assert len(b.calls_to("/bad")) == 1
