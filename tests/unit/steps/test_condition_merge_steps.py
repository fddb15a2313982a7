from __future__ import annotations

import pytest

from linkloom.engine.steps.condition import ConditionExecutor
from linkloom.engine.steps.merge import MergeExecutor
from tests.support.step_context import make_context


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{{ inputs.amount > 100 }}", True),
        ("inputs.amount > 1000", False),
        ("{{ 'false' }}", False),
        ("{{ steps.check.output.ok }}", True),
        ("{% if inputs.amount %}yes{% endif %}", True),
        ("{{ [] }}", False),
    ],
)
async def test_condition_chooses_branch(condition, expected):
    ctx = make_context(
        step={"type": "condition", "condition": condition, "then": ["a"], "else": ["b"]},
        inputs={"amount": 150},
        upstream={"check": {"ok": True}},
    )
    result = await ConditionExecutor().execute(ctx)
    assert result.ok
    assert result.output == {"result": expected, "branch": "then" if expected else "else"}


async def test_condition_template_error_fails_step():
    ctx = make_context(step={"type": "condition", "condition": "{{ nope.x }}"})
    result = await ConditionExecutor().execute(ctx)
    assert result.error is not None
    assert result.error.kind == "template"


async def test_merge_object_deep_merges_in_depends_on_order():
    ctx = make_context(
        step={"type": "merge", "depends_on": ["a", "b"]},
        upstream={"a": {"x": 1, "n": {"p": 1, "q": 1}}, "b": {"y": 2, "n": {"q": 2}}},
    )
    result = await MergeExecutor().execute(ctx)
    assert result.output == {"x": 1, "y": 2, "n": {"p": 1, "q": 2}}


async def test_merge_sources_order_wins_and_skipped_are_left_out():
    ctx = make_context(
        step={"type": "merge", "depends_on": ["a", "b", "c"], "sources": ["b", "a", "c"]},
        upstream={
            "a": {"k": "a"},
            "b": {"k": "b"},
            "c": {"status": "SKIPPED", "output": None, "outputs": {}},
        },
    )
    result = await MergeExecutor().execute(ctx)
    assert result.output == {"k": "a"}


async def test_merge_concat_lists():
    ctx = make_context(
        step={"type": "merge", "mode": "concat", "depends_on": ["a", "b"]},
        upstream={"a": [1, 2], "b": [3]},
    )
    result = await MergeExecutor().execute(ctx)
    assert result.output == [1, 2, 3]


async def test_merge_object_of_a_list_is_a_config_failure():
    ctx = make_context(step={"type": "merge", "depends_on": ["a"]}, upstream={"a": [1]})
    result = await MergeExecutor().execute(ctx)
    assert result.error is not None
    assert result.error.kind == "config"
    assert "concat" in result.error.message
