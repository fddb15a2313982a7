"""Fuzzing: whatever the input, ``load_flow`` returns a spec or raises ``SpecInvalid``."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkloom.flows.errors import SpecInvalid
from linkloom.flows.loading import (
    check_flow,
    content_hash,
    dump_yaml,
    load_flow,
    to_canonical_yaml,
)
from linkloom.flows.spec import BUILTIN_STEP_TYPES, HttpStep, StepBase

FIELDS = sorted(
    {*StepBase.model_fields, *HttpStep.model_fields, "dependsOn", "config", "else", "then"}
    | {"condition", "duration", "model", "prompt", "command", "sources", "template", "operation"}
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.sampled_from(["a", "b", "c", "fetch", "n1", "A B", "", "x" * 70])
templates = st.sampled_from(
    [
        "{{ steps.a.output }}",
        "{{ .steps.b.outputs.x }}",
        "{{ inputs.q }}",
        "{{ item }}",
        "{{ (",
        "{% for x in steps %}{{ x }}{% endfor %}",
        "{{ steps[inputs.k].output }}",
        "{{ ''.__class__ }}",
        "http://{{ inputs.host }}/x",
        "0 3 * * *",
        "5m",
        "PT1H",
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    names,
    templates,
    st.sampled_from([*BUILTIN_STEP_TYPES, "HTTP", "DATA_ADAPTER", "GET", "post"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
steps = st.dictionaries(st.sampled_from(FIELDS), st.one_of(values, names, templates), max_size=7)
specs = st.fixed_dictionaries(
    {"steps": st.lists(steps, max_size=5)},
    optional={
        "id": names,
        "name": st.text(max_size=10),
        "inputs": st.dictionaries(names, values, max_size=3),
        "schedule": st.one_of(templates, values),
        "schedules": values,
        "outputs": values,
        "defaults": values,
        "tasks": st.lists(steps, max_size=3),
    },
)
mbflow = st.fixed_dictionaries(
    {
        "workflow": st.fixed_dictionaries(
            {
                "id": names,
                "nodes": st.lists(steps, max_size=4),
                "edges": st.lists(
                    st.dictionaries(st.sampled_from(["source", "target", "type"]), names | values),
                    max_size=4,
                ),
            }
        )
    }
)


def _only_spec_invalid(source: str | bytes) -> None:
    problems = None
    try:
        spec = load_flow(source)
    except SpecInvalid as exc:
        problems = exc.problems
    else:  # a spec that loads survives the round trip through canonical YAML
        assert content_hash(load_flow(to_canonical_yaml(spec))) == content_hash(spec)
    assert problems is None or problems, "SpecInvalid must list its problems"
    result = check_flow(source)
    assert "internal-error" not in {p.code for p in result.problems}, result.problems


@pytest.mark.slow
@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_bytes_only_raise_spec_invalid(data):
    _only_spec_invalid(data)


@pytest.mark.slow
@FUZZ
@given(st.text(max_size=300))
def test_fuzz_text_only_raises_spec_invalid(text):
    _only_spec_invalid(text)


@pytest.mark.slow
@FUZZ
@given(st.one_of(specs, mbflow), st.booleans())
def test_fuzz_spec_shaped_data_only_raises_spec_invalid(data, as_json):
    text = json.dumps(data) if as_json else yaml.safe_dump(data)
    _only_spec_invalid(text)


plain_text = st.text(max_size=12).filter(lambda t: "{" not in t)
plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), plain_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def valid_specs(draw):
    n = draw(st.integers(1, 8))
    steps = []
    for i in range(n):
        deps = (
            draw(st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True)) if i else []
        )
        kind = draw(st.sampled_from(["delay", "transform", "http", "merge"]))
        step = {"id": f"s{i}", "type": kind, "depends_on": deps}
        if kind == "delay":
            step["duration"] = draw(st.sampled_from(["1s", "5m", 90, "PT1H", 0.5]))
        elif kind == "transform":
            step["template"] = draw(
                st.one_of(
                    plain_values,
                    st.sampled_from([f"{{{{ steps.{d}.output }}}}" for d in deps] or ["x"]),
                )
            )
        elif kind == "http":
            step["url"] = draw(
                st.sampled_from(["http://127.0.0.1:8081/a", "https://x.example/{{ run.id }}"])
            )
            step["method"] = draw(st.sampled_from(["GET", "post", "PUT"]))
            if step["method"] != "GET":  # a GET request carries no body (body-not-sent)
                step["body"] = draw(plain_values)
        else:
            step["mode"] = draw(st.sampled_from(["object", "concat"]))
        if draw(st.booleans()):
            step["retry"] = {"max_attempts": draw(st.integers(1, 5)), "jitter": draw(st.booleans())}
        steps.append(step)
    spec = {"id": draw(st.sampled_from(["a", "flow-1", "x_y"])), "steps": steps}
    if draw(st.booleans()):
        spec["tags"] = draw(st.lists(plain_text))
    if draw(st.booleans()):
        spec["schedules"] = [{"cron": "0 3 * * *", "timezone": "Europe/Kyiv"}]
    return spec


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_fuzz_valid_specs_load_the_same_from_yaml_json_and_canonical_yaml(data):
    # Written as YAML 1.2 (the reader's rules): PyYAML's safe_dump follows YAML 1.1 and leaves
    # a string like "0E0" unquoted, which YAML 1.2 reads as a number.
    from_yaml = load_flow(dump_yaml(data))
    from_json = load_flow(json.dumps(data), filename="x.json")
    assert content_hash(from_yaml) == content_hash(from_json)
    assert content_hash(load_flow(to_canonical_yaml(from_yaml))) == content_hash(from_yaml)
