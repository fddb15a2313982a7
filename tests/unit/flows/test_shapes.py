"""Rewriting the variant shapes into the canonical one, remembering where nodes came from."""

from __future__ import annotations

from linkloom.flows.loading import check_flow, load_flow
from linkloom.flows.shapes import normalise
from linkloom.flows.spec import ConditionStep


def test_linkloom_shape_maps_tasks_and_dependson_back_to_their_source():
    shaped = normalise(
        {"id": "x", "tasks": [{"id": "a", "dependsOn": ["b"]}], "schedule": "* * * * *"}
    )
    assert shaped.shape == "linkloom"
    assert shaped.value["steps"] == [{"id": "a", "depends_on": ["b"]}]
    assert shaped.value["schedules"] == [{"cron": "* * * * *"}]
    assert shaped.source_path(("steps", 0, "depends_on", 0)) == ("tasks", 0, "dependsOn", 0)
    assert shaped.source_path(("schedules", 0, "cron")) == ("schedule",)


def test_automata_shape_moves_config_and_remembers_it():
    shaped = normalise({"name": "Sync Orders!", "steps": [{"id": "a", "config": {"url": "u"}}]})
    assert shaped.shape == "automata"
    assert shaped.value["id"] == "sync-orders"
    assert shaped.value["steps"][0] == {"id": "a", "url": "u"}
    assert shaped.source_path(("steps", 0, "url")) == ("steps", 0, "config", "url")
    assert shaped.source_path(("id",)) == ("name",)


def test_shape_rewrite_does_not_mutate_its_input():
    raw = {"id": "x", "steps": [{"id": "a", "config": {"url": "u"}, "body": "{{ .x }}"}]}
    normalise(raw)
    assert raw == {"id": "x", "steps": [{"id": "a", "config": {"url": "u"}, "body": "{{ .x }}"}]}


def test_mbflow_conditional_edges_become_branches():
    text = """{"workflow": {"id": "wf-1", "nodes": [
      {"id": "check", "type": "CONDITIONAL", "config": {"expression": "{{ .inputs.go }}"}},
      {"id": "yes", "type": "DELAY", "config": {"duration": "1s"}},
      {"id": "no", "type": "DELAY", "config": {"duration": "1s"}}],
      "edges": [{"source": "check", "target": "yes", "type": "TRUE"},
                {"source": "check", "target": "no", "type": "FALSE"}]},
      "inputs": {"go": {"type": "boolean"}}}"""
    spec = load_flow(text)
    check = spec.steps[0]
    assert isinstance(check, ConditionStep)
    assert check.condition == "{{ inputs.go }}"
    assert (check.then, check.else_) == (["yes"], ["no"])
    assert spec.steps[1].depends_on == ["check"]


def test_a_field_both_on_the_step_and_in_config_is_reported_at_config():
    text = (
        '{"id": "x", "steps": [{"id": "a", "type": "delay", "duration": 1, '
        '"config": {"duration": 2}}]}'
    )
    (problem,) = check_flow(text).errors
    assert problem.code == "duplicate-field"
    assert problem.path == "$.steps[0].config.duration"
    assert (problem.line, problem.column) == (1, 78)
