"""Stubs: a proposal's answers for requests production never made."""

from __future__ import annotations

import httpx
import pytest

from linkloom.engine.models import Exchange
from linkloom.sandbox import stubs
from linkloom.sandbox.errors import InvalidFixture
from linkloom.sandbox.fixtures import RecordedExchange
from linkloom.sandbox.replay import Replayer, UnrecordedRequest

STUBS = """
stubs:
  - name: audit
    method: POST
    url: https://api.example.com/audit*
    response:
      status: 201
      body: {ok: true, seen: "{{ request.body.gross }}", region: "{{ request.query.region }}"}
  - url: https://api.example.com/ping
    response: {body: pong}
"""


def test_stubs_file_parses_and_matches_method_and_url_glob() -> None:
    audit, ping = stubs.loads(STUBS)
    assert audit.label == "audit"
    assert audit.matches("POST", "https://api.example.com/audit/v2?region=eu")
    assert not audit.matches("GET", "https://api.example.com/audit")
    assert ping.method == "*"
    assert ping.matches("GET", "https://api.example.com/ping?x=1")  # query ignored
    assert not ping.matches("GET", "https://api.example.com/pings")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stubs: [{response: {}}]", "needs 'url'"),
        ("stubs: [{url: x, answer: 1}]", "unknown stub field"),
        ("stubs: [{url: x, response: {status: 999}}]", "status must be 100–599"),
        ("stubs: [{url: x, method: FETCH}]", "unknown method"),
        ("stubs: [{url: x, response: {body: '{{ request.body.x '}}]", "stub body"),
        ("stubz: []", "unknown key"),
        ("stubs: {url: x}", "must be a list"),
    ],
)
def test_bad_stubs_are_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidFixture, match=message):
        stubs.loads(text)


async def test_replay_prefers_recordings_then_stubs_then_fails_loudly() -> None:
    recorded = RecordedExchange(
        method="POST",
        url="https://api.example.com/audit",
        request_body={"gross": 1},
        status=200,
        response_body={"from": "recording"},
    )
    replayer = Replayer([recorded], stubs=stubs.loads(STUBS))
    async with httpx.AsyncClient(transport=replayer.transport()) as client:
        first = await client.post("https://api.example.com/audit", json={"gross": 1})
        stubbed = await client.post(
            "https://api.example.com/audit?region=eu",
            json={"gross": 12.5},
            extensions={
                "loom.record": {
                    "record": Exchange(
                        method="POST",
                        url="https://api.example.com/audit?region=eu",
                        request_body={"gross": 12.5},
                    ),
                    "step_id": "audit",
                    "item_index": None,
                }
            },
        )
        with pytest.raises(UnrecordedRequest, match="unrecorded request: POST https://other"):
            await client.post("https://other.example.com/x", json={})
    assert first.json() == {"from": "recording"}
    assert stubbed.status_code == 201
    assert stubbed.json() == {"ok": True, "seen": 12.5, "region": "eu"}
    assert [(r.step_id, r.answer, r.stub) for r in replayer.requests] == [
        (None, "recording", None),
        ("audit", "stub", "audit"),
        (None, "unrecorded", None),
    ]
