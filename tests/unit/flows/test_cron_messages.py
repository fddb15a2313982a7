"""An invalid cron expression is explained by the field that is wrong and the range it takes."""

from __future__ import annotations

import pytest

from linkloom.flows.checks import cron_problem
from linkloom.flows.loading import check_flow


@pytest.mark.parametrize(
    ("expression", "problem", "hint"),
    [
        ("61 * * * *", "minute 61 is out of range", "the minute field (field 1 of 5) takes 0-59"),
        ("0 24 * * *", "hour 24 is out of range", "the hour field (field 2 of 5) takes 0-23"),
        ("0 3 0 * *", "day-of-month 0 is out of range", "(field 3 of 5) takes 1-31"),
        ("0 3 1-32 * *", "day-of-month 32 is out of range", "(field 3 of 5) takes 1-31"),
        ("0 3 * 13 *", "month 13 is out of range", "(field 4 of 5) takes 1-12"),
        ("0 3 * * 8", "day-of-week 8 is out of range", "(field 5 of 5) takes 0-7"),
        ("0 3 * smarch *", "'smarch' is not a month", "takes 1-12 or jan-dec"),
        ("*/0 * * * *", "the minute field's step '0' is not a whole number", "'*/15'"),
        ("every day", "it has 2 field(s)", "use five fields"),
    ],
)
def test_cron_problem_names_the_field_and_its_range(
    expression: str, problem: str, hint: str
) -> None:
    found, told = cron_problem(expression)
    assert found is not None
    assert problem in found
    assert hint in told


def test_an_out_of_range_cron_field_is_reported_where_the_expression_is() -> None:
    spec = (
        "id: c\nschedules:\n  - cron: '61 * * * *'\n"
        "steps:\n  - {id: a, type: delay, duration: 1s}\n"
    )
    (problem,) = check_flow(spec, filename="c.yaml").problems
    assert problem.format() == (
        "c.yaml:3:11: error: invalid cron expression '61 * * * *': minute 61 is out of range\n"
        "    hint: the minute field (field 1 of 5) takes 0-59"
    )
