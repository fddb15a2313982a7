"""Fixture cases: building from a production run, scrubbing, YAML round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from linkloom.engine.models import RunStatus, StepStatus
from linkloom.sandbox import fixtures
from linkloom.sandbox.errors import InvalidFixture
from linkloom.sandbox.scrub import REDACTED, Scrubber, sensitive_key

# Attribute-style records shaped like linkloom.engine.records (Run, StepRun, ExchangeRecord).
Run = StepRun = ExchangeRecord = SimpleNamespace

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def _run() -> Run:
    return Run(
        id="r1",
        flow_id="daily-report",
        version=3,
        status=RunStatus.SUCCEEDED,
        trigger="schedule",
        inputs={"date": "2026-11-21", "password": "hunter22"},
        outputs={"sent": True},
        created_at=T0,
        started_at=T0,
    )


def _steps() -> list[StepRun]:
    return [
        StepRun(
            id="s1",
            run_id="r1",
            step_id="fetch",
            status=StepStatus.SUCCEEDED,
            output={"rows": 3, "note": "key sk-live-abcdef used"},
        ),
        StepRun(id="s2", run_id="r1", step_id="fetch", item_index=0, status=StepStatus.SUCCEEDED),
    ]


def _exchanges() -> list[ExchangeRecord]:
    return [
        ExchangeRecord(
            id="e1",
            run_id="r1",
            step_id="fetch",
            attempt=1,
            seq=0,
            method="post",
            url="https://api.example.com/data?api_key=sk-live-abcdef&page=1",
            request={
                "headers": {"Authorization": "Bearer sk-live-abcdef"},
                "body": {"date": "2026-11-21", "token": "tok-123456"},
            },
            response={
                "headers": {"Content-Type": "application/json", "Set-Cookie": "s=1"},
                "body": {"rows": 3, "total_tokens": 12},
            },
            status=200,
            created_at=T0,
        )
    ]


def test_fixtures_case_from_run_scrubs_secrets_and_auth() -> None:
    case = fixtures.case_from_run(
        run=_run(), steps=_steps(), exchanges=_exchanges(), secrets=["sk-live-abcdef"]
    )
    assert case.name == "run-r1"
    assert case.flow_id == "daily-report"
    assert case.source == {"run_id": "r1", "flow_version": 3}
    assert case.recorded_at == T0
    assert case.inputs == {"date": "2026-11-21", "password": REDACTED}
    ex = case.exchanges[0]
    assert ex.method == "POST"
    assert "sk-live-abcdef" not in ex.url
    assert "page=1" in ex.url
    assert ex.request_body == {"date": "2026-11-21", "token": REDACTED}
    assert ex.response_headers == {"content-type": "application/json", "set-cookie": REDACTED}
    assert ex.response_body == {"rows": 3, "total_tokens": 12}
    assert case.expected["fetch"].output == {"rows": 3, "note": f"key {REDACTED} used"}
    assert case.expected["fetch"].status == "SUCCEEDED"
    assert case.run_status == "SUCCEEDED"
    assert "sk-live-abcdef" not in fixtures.dumps(case)
    assert "hunter22" not in fixtures.dumps(case)


def test_fixtures_yaml_round_trip(tmp_path: Path) -> None:
    case = fixtures.case_from_run(run=_run(), steps=_steps(), exchanges=_exchanges())
    path = fixtures.save(case, tmp_path / "fixtures")
    assert path.name == "run-r1.yaml"
    assert fixtures.load(path) == case
    assert fixtures.load_dir(tmp_path / "fixtures") == [case]


def test_fixtures_accept_plain_dicts_with_flat_exchanges() -> None:
    case = fixtures.case_from_run(
        run={"id": "r2", "flow_id": "f", "inputs": {}, "created_at": "2026-01-01T00:00:00Z"},
        steps=[{"step_id": "a", "status": "FAILED", "error": {"message": "boom"}}],
        exchanges=[
            {"method": "GET", "url": "http://x/y", "status": 500, "response_body": "oops"},
        ],
        name="hand",
    )
    assert case.name == "hand"
    assert case.recorded_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert case.expected["a"].error == "boom"
    assert case.exchanges[0].response_body == "oops"


def test_fixtures_invalid_yaml_names_the_case() -> None:
    with pytest.raises(InvalidFixture, match="broken"):
        fixtures.loads("name: [", name="broken")
    with pytest.raises(InvalidFixture, match="no 'name'"):
        fixtures.loads("inputs: {}")


def test_scrub_key_rules_keep_ordinary_words() -> None:
    assert sensitive_key("api_key")
    assert sensitive_key("apiKey")
    assert sensitive_key("access_token")
    assert sensitive_key("Authorization")
    assert not sensitive_key("monkey")
    assert not sensitive_key("keyboard_layout")
    assert Scrubber.with_secrets(["abc"]).text("abc") == "abc"  # too short to be a secret


def test_fixtures_cases_from_repo_texts() -> None:
    case = fixtures.case_from_run(run=_run(), steps=_steps(), exchanges=_exchanges())
    texts = {
        "b-case": fixtures.dumps(case).replace("name: run-r1", "name: b-case"),
        "a-case": "name: a-case\nrecorded_at: '2026-01-01T00:00:00Z'\n",
    }
    parsed = fixtures.cases_from_texts(texts)
    assert [c.name for c in parsed] == ["a-case", "b-case"]
    assert parsed[1].exchanges == case.exchanges
