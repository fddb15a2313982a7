"""The public loading API: load_flow, check_flow, canonical YAML, content hash, JSON Schema."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from linkloom.errors import InvalidInput
from linkloom.flows.errors import SpecInvalid
from linkloom.flows.loading import (
    check_flow,
    content_hash,
    load_flow,
    spec_json_schema,
    to_canonical_yaml,
)
from linkloom.flows.models import Policy
from linkloom.flows.spec import ConditionStep, FlowSpec

ROOT = Path(__file__).parents[3]
EXAMPLES = sorted((ROOT / "examples" / "flows").glob("*/flow.yaml"))


def make_spec_text(**overrides: str) -> str:
    parts = {
        "id": "demo",
        "steps": "  - {id: a, type: delay, duration: 1s}\n",
    } | overrides
    return f"id: {parts['id']}\nsteps:\n{parts['steps']}"


def test_load_flow_raises_spec_invalid_listing_every_problem():
    text = make_spec_text(
        steps="  - {id: a, type: delay, duration: 1s, depends_on: [x]}\n  - {id: a, type: nope}\n"
    )
    with pytest.raises(SpecInvalid) as caught:
        load_flow(text, filename="demo.yaml")
    error = caught.value
    assert isinstance(error, InvalidInput)
    assert {p.code for p in error.problems} == {
        "unknown-step",
        "duplicate-step-id",
        "unknown-step-type",
    }
    assert error.message.startswith("Flow spec demo.yaml is invalid: 3:")
    assert "(and 2 more)" in error.message
    assert error.to_dict()["problems"][0]["file"] == "demo.yaml"


def test_warnings_do_not_stop_a_spec_from_loading():
    text = (
        "id: w\ninputs: {spare: {type: string}}\nsteps:\n  - {id: a, type: delay, duration: 1s}\n"
    )
    result = check_flow(text)
    assert result.ok
    assert [p.code for p in result.warnings] == ["unused-input"]
    assert load_flow(text).id == "w"


def test_check_flow_returns_no_spec_when_there_are_errors():
    result = check_flow(make_spec_text(id="Not A Slug"))
    assert result.spec is None
    assert [(p.code, p.line, p.column) for p in result.errors] == [("invalid-id", 1, 5)]


def test_every_shape_of_the_same_flow_has_the_same_content_hash():
    canonical = """
id: same
name: same
steps:
  - id: fetch
    type: http
    method: GET
    url: https://crm.example.com/orders
  - id: save
    type: http
    depends_on: [fetch]
    url: https://erp.example.com/import
    body: "{{ steps.fetch.output }}"
"""
    linkloom = """
id: same
name: same
tasks:
  - {id: fetch, type: http, method: get, url: 'https://crm.example.com/orders'}
  - id: save
    type: http
    dependsOn: [fetch]
    url: https://erp.example.com/import
    body: "{{ .steps.fetch.output }}"
"""
    automata = """{"name": "same", "steps": [
  {"id": "fetch", "type": "http", "config": {"method": "GET", "url": "https://crm.example.com/orders"}},
  {"id": "save", "type": "http", "depends_on": ["fetch"],
   "config": {"url": "https://erp.example.com/import", "body": "{{ .steps.fetch.output }}"}}]}"""
    hashes = {content_hash(load_flow(text)) for text in (canonical, linkloom, automata)}
    assert len(hashes) == 1
    assert len(next(iter(hashes))) == 64


def test_content_hash_changes_when_the_meaning_changes():
    one = load_flow(make_spec_text())
    two = load_flow(make_spec_text(steps="  - {id: a, type: delay, duration: 2s}\n"))
    assert content_hash(one) != content_hash(two)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_flow_is_valid_without_warnings_and_round_trips(path):
    result = check_flow(path.read_bytes(), filename=str(path))
    assert result.problems == []
    assert result.spec is not None
    assert result.spec.id == path.parent.name
    assert load_flow(to_canonical_yaml(result.spec)) == result.spec


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_flow_declares_the_committed_schema_and_matches_it(path):
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../../docs/flow.schema.json"
    assert (path.parent / "../../../docs/flow.schema.json").resolve().is_file()
    jsonschema.Draft202012Validator(spec_json_schema()).validate(yaml.safe_load(path.read_text()))


def test_daily_report_example_is_the_demo_flow():
    spec = load_flow((ROOT / "examples/flows/daily-report/flow.yaml").read_bytes())
    assert [(s.id, s.depends_on) for s in spec.steps] == [
        ("fetch_data", []),
        ("process", ["fetch_data"]),
        ("send_email", ["process"]),
    ]
    assert all(s.url.startswith("http://127.0.0.1:8081/api/tasks/") for s in spec.steps)
    (schedule,) = spec.schedules
    assert (schedule.cron, schedule.timezone) == ("0 3 * * *", "Europe/Kyiv")


def test_json_schema_is_draft_2020_12_and_describes_steps_by_type():
    schema = spec_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    mapping = schema["properties"]["steps"]["items"]["discriminator"]["mapping"]
    assert set(mapping) >= {"http", "shell", "delay", "transform", "condition", "merge", "llm"}


def test_canonical_yaml_keeps_condition_else_and_multiline_text():
    text = """
id: cond
steps:
  - id: check
    type: condition
    condition: "{{ true }}"
    then: [yes_step]
    else: [no_step]
  - {id: yes_step, type: delay, duration: 1s, depends_on: [check]}
  - id: no_step
    type: transform
    depends_on: [check]
    template: |
      line one
      line two
"""
    spec = load_flow(text)
    assert isinstance(spec.steps[0], ConditionStep)
    assert spec.steps[0].else_ == ["no_step"]
    out = to_canonical_yaml(spec)
    assert "    else: [no_step]\n" in out
    assert "template: |" in out
    assert load_flow(out) == spec


def test_canonical_yaml_quotes_strings_that_would_read_as_other_types():
    spec = FlowSpec.model_validate(
        {
            "id": "q",
            "tags": ["yes", "123", "null", "1e3"],
            "steps": [{"id": "a", "type": "delay", "duration": 1}],
        }
    )
    assert load_flow(to_canonical_yaml(spec)).tags == ["yes", "123", "null", "1e3"]


def test_yaml_reads_only_true_and_false_as_booleans():
    with pytest.raises(SpecInvalid, match="valid string"):
        load_flow(make_spec_text() + "tags: [true]\n")
    assert load_flow(make_spec_text() + "tags: [no, yes, on, off]\n").tags == [
        "no",
        "yes",
        "on",
        "off",
    ]


def test_policy_requires_a_literal_host_when_hosts_are_restricted():
    text = make_spec_text(
        steps="  - {id: a, type: http, url: 'https://{{ inputs.host }}/x'}\n"
    ).replace("steps:", "inputs: {host: {type: string}}\nsteps:")
    assert check_flow(text).ok
    result = check_flow(text, policy=Policy(allowed_hosts=["api.example.com"]))
    assert [p.code for p in result.errors] == ["policy-host"]


def test_for_each_steps_may_read_item_and_index():
    text = make_spec_text(
        steps="  - id: a\n    type: transform\n    for_each: [1, 2]\n"
        "    template: '{{ item }}-{{ index }}'\n"
    )
    assert check_flow(text).problems == []


def test_a_transform_template_reads_its_input_and_a_mapping_reads_each_item():
    """What engine/steps/transform.py provides: ``input`` in ``template``, ``item``/``index``
    in ``mapping`` and ``where``."""
    text = make_spec_text(
        steps="  - {id: a, type: transform, input: [{first: A, last: B}]}\n"
        "  - id: count\n    type: transform\n    depends_on: [a]\n"
        "    template: {n: '{{ input | length }}', first: '{{ input[0].first }}'}\n"
        "  - id: names\n    type: transform\n    depends_on: [a]\n    operation: map\n"
        "    mapping: {full: '{{ item.first }} {{ item.last }}', at: '{{ index }}'}\n"
    )
    assert check_flow(text).problems == []


def test_input_is_unknown_outside_a_transform_template():
    text = make_spec_text(
        steps="  - {id: a, type: transform, input: '{{ input }}'}\n"
        "  - {id: b, type: http, url: 'http://x.example/{{ input }}'}\n"
    )
    assert [(p.code, p.path) for p in check_flow(text).errors] == [
        ("unknown-reference", "$.steps[0].input"),
        ("unknown-reference", "$.steps[1].url"),
    ]


def test_a_bare_expression_condition_is_checked_not_taken_for_a_constant():
    """``condition: inputs.amount > 100`` is evaluated at run time (templates.evaluate): no
    "constant condition" warning, and its references are checked like a template's."""
    steps = (
        "  - {id: c, type: condition, condition: 'inputs.amount > 100', then: [a], else: [b]}\n"
        "  - {id: a, type: delay, duration: 1s, depends_on: [c]}\n"
        "  - {id: b, type: delay, duration: 1s, depends_on: [c], when: 'inputs.amont > 1'}\n"
    )
    text = make_spec_text(steps=steps).replace("steps:", "inputs: {amount: {type: number}}\nsteps:")
    assert [(p.code, p.path, p.hint) for p in check_flow(text).problems] == [
        ("unknown-input", "$.steps[2].when", "did you mean 'amount'?")
    ]


@pytest.mark.parametrize(("word", "branch"), [("yes", "else"), ("off", "then"), ("TRUE", "else")])
def test_a_constant_condition_warns_that_one_branch_never_runs(word: object, branch: str):
    steps = (
        f"  - {{id: c, type: condition, condition: {word!r}, then: [a], else: [b]}}\n"
        "  - {id: a, type: delay, duration: 1s, depends_on: [c]}\n"
        "  - {id: b, type: delay, duration: 1s, depends_on: [c]}\n"
    )
    [problem] = check_flow(make_spec_text(steps=steps)).problems
    assert problem.code == "unreachable"
    assert f"its '{branch}' branch never runs" in problem.message


def test_the_validators_boolean_words_are_the_engines():
    from linkloom.flows import references, templates

    for word in references.TRUE_WORDS | references.FALSE_WORDS:
        assert templates.evaluate(word, {}) is (word in references.TRUE_WORDS)
    with pytest.raises(templates.TemplateError):
        templates.evaluate("maybe", {})  # not a word: a bare expression reading 'maybe'


def test_a_template_may_read_an_ancestor_two_steps_up():
    text = make_spec_text(
        steps="  - {id: a, type: transform, template: 1}\n"
        "  - {id: b, type: transform, template: 2, depends_on: [a]}\n"
        "  - {id: c, type: transform, template: '{{ steps.a.output }}', depends_on: [b]}\n"
    )
    assert check_flow(text).problems == []
