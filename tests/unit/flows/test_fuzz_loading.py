"""Fuzzing: whatever the input, ``load_flow`` returns a spec or raises ``SpecInvalid``."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkloom.flows.errors import SpecInvalid
from linkloom.flows.loading import check_flow, load_flow
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
        load_flow(source)
    except SpecInvalid as exc:
        problems = exc.problems
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
