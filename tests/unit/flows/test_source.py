"""Reading YAML and JSON into data that remembers every node's line and column."""

from __future__ import annotations

import math

import pytest

from linkloom.flows.source import plain_is_string, read_source


def test_yaml_positions_of_values_and_keys_are_one_based():
    doc = read_source("id: x\nsteps:\n  - id: a\n    depends_on: [b, c]\n")
    assert doc.problems == []
    assert doc.position(("steps", 0, "depends_on", 1)) == (4, 21)
    assert doc.position(("steps", 0, "depends_on"), key=True) == (4, 5)
    assert doc.position(("steps", 0, "missing", "deeper")) == (3, 5)


def test_json_positions_count_tabs_as_one_column():
    doc = read_source('{\n\t"steps": [\n\t\t{"id": "a"}\n\t]\n}')
    assert doc.format == "json"
    assert doc.value == {"steps": [{"id": "a"}]}
    assert doc.position(("steps", 0, "id")) == (3, 10)
    assert doc.position(("steps",), key=True) == (2, 2)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: no", "no"),
        ("a: yes", "yes"),
        ("a: True", True),
        ("a: ~", None),
        ("a: 0x1F", 31),
        ("a: 1e3", 1000.0),
        ("a: '12'", "12"),
        ("a: !!str 12", "12"),
        ("a: 2024-01-01", "2024-01-01"),
        ("a: .inf", math.inf),
    ],
)
def test_yaml_scalars_resolve_by_the_yaml_1_2_core_schema(text, value):
    assert read_source(text).value == {"a": value}


def test_mapping_keys_are_always_text():
    assert read_source("200: ok\ntrue: x\n").value == {"200": "ok", "true": "x"}


def test_anchors_and_aliases_share_values():
    doc = read_source("base: &b {retry: 3}\nstep: *b\n")
    assert doc.value == {"base": {"retry": 3}, "step": {"retry": 3}}
    assert doc.position(("step",)) == (2, 7)


def test_a_json_looking_yaml_flow_mapping_is_read_as_yaml():
    doc = read_source("{id: x,\n steps: []}\n")
    assert doc.problems == []
    assert doc.value == {"id": "x", "steps": []}
    strict = read_source("{id: x,\n steps: []}\n", json_only=True)
    assert [p.code for p in strict.problems] == ["json-syntax"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("abc", True), ("1e3", False), ("yes", True), ("null", False), ("", False), ("0o17", False)],
)
def test_plain_is_string_matches_the_reader(text, expected):
    assert plain_is_string(text) is expected
    if expected:
        assert read_source(f"a: {text}").value == {"a": text}
