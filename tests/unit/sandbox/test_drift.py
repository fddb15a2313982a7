"""Fixture drift against recent production exchanges."""

from __future__ import annotations

from datetime import UTC, datetime

from linkloom.sandbox.drift import check_drift
from linkloom.sandbox.fixtures import FixtureCase, RecordedExchange


def _case() -> FixtureCase:
    return FixtureCase(
        name="c1",
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        exchanges=(
            RecordedExchange(
                step_id="a",
                method="POST",
                url="http://b/a",
                request_body={"n": 1},
                status=200,
                response_body={"v": 1},
            ),
            RecordedExchange(
                step_id="b", method="GET", url="http://b/b", status=200, response_body={"v": 2}
            ),
            RecordedExchange(step_id="c", method="GET", url="http://b/gone", status=200),
        ),
    )


def test_drift_reports_changed_responses_and_unseen_requests() -> None:
    recent = [
        {
            "run_id": "old",
            "method": "POST",
            "url": "http://b/a",
            "request_body": {"n": 1},
            "status": 200,
            "response_body": {"v": 1},
        },
        {
            "run_id": "new",
            "method": "POST",
            "url": "http://b/a",
            "request": {"body": {"n": 1, "run_id": "zz"}},
            "status": 200,
            "response": {"body": {"v": 99}},
        },
        {
            "run_id": "new",
            "method": "GET",
            "url": "http://b/b",
            "status": 200,
            "response_body": {"v": 2},
        },
    ]
    report = check_drift(_case(), recent)
    assert report.checked == 3
    assert not report.ok
    assert [
        (d.step_id, d.recorded_body, d.production_body, d.production_run_id) for d in report.drifted
    ] == [("a", {"v": 1}, {"v": 99}, "new")]
    assert report.unseen == ("GET http://b/gone",)
    assert report.to_dict()["ok"] is False


def test_drift_is_ok_when_production_answers_the_same() -> None:
    recent = [
        {
            "method": "POST",
            "url": "http://b/a",
            "request_body": {"n": 1},
            "status": 200,
            "response_body": {"v": 1},
        },
    ]
    assert check_drift(_case(), recent).ok
