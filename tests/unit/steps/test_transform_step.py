from __future__ import annotations

from linkloom.engine.steps.transform import TransformExecutor
from tests.support.step_context import make_context

USERS = [
    {"name": "Ann", "age": 31, "address": {"city": "Kyiv"}, "active": True},
    {"name": "Bo", "age": 17, "address": {"city": "Lviv"}, "active": False},
]


async def run(step, **kw):
    return await TransformExecutor().execute(make_context(step={"type": "transform", **step}, **kw))


async def test_transform_template_builds_json_structure():
    result = await run(
        {"template": {"count": "{{ input | length }}", "first": "{{ input[0].name }}"}},
        upstream={"fetch": USERS},
    )
    assert result.ok
    assert result.output == {"count": 2, "first": "Ann"}


async def test_transform_default_input_of_several_dependencies_is_a_dict():
    result = await run(
        {"depends_on": ["a", "b"], "template": "{{ input.a + input.b }}"},
        upstream={"a": [1], "b": [2]},
    )
    assert result.output == [1, 2]


async def test_transform_jmespath_on_rendered_input():
    result = await run(
        {"input": "{{ steps.fetch.output }}", "jmespath": "[?age > `18`].name"},
        upstream={"fetch": USERS},
    )
    assert result.output == ["Ann"]


async def test_transform_map_reads_new_from_old_like_mbflow():
    result = await run(
        {
            "operation": "map",
            "mapping": {"username": "name", "city": "address.city", "tag": "{{ item.name }}!"},
        },
        upstream={"fetch": USERS},
    )
    assert result.output == [
        {"username": "Ann", "city": "Kyiv", "tag": "Ann!"},
        {"username": "Bo", "city": "Lviv", "tag": "Bo!"},
    ]


async def test_transform_rename_keeps_other_fields():
    result = await run(
        {"operation": "rename", "mapping": {"username": "name"}}, upstream={"fetch": USERS[0]}
    )
    assert result.output == {
        "username": "Ann",
        "age": 31,
        "address": {"city": "Kyiv"},
        "active": True,
    }


async def test_transform_filter_with_template_and_bare_expression():
    for where in ("{{ item.age >= 18 }}", "item.active and index == 0"):
        result = await run({"operation": "filter", "where": where}, upstream={"fetch": USERS})
        assert [u["name"] for u in result.output] == ["Ann"], where


async def test_transform_pick_fields():
    result = await run({"operation": "pick", "fields": ["name", "nope"]}, upstream={"f": USERS})
    assert result.output == [{"name": "Ann"}, {"name": "Bo"}]


async def test_transform_bad_template_is_a_template_failure():
    result = await run({"template": "{{ input.missing.x }}"}, upstream={"f": {}})
    assert result.error is not None
    assert result.error.kind == "template"
    assert not result.error.retryable


async def test_transform_operation_on_wrong_shape_is_a_config_failure():
    result = await run({"operation": "pick", "fields": ["a"]}, upstream={"f": [1, 2]})
    assert result.error is not None
    assert result.error.kind == "config"


async def test_transform_invalid_jmespath_fails_cleanly():
    result = await run({"jmespath": "[?"}, upstream={"f": USERS})
    assert result.error is not None
    assert result.error.kind == "config"
