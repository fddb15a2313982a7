"""The spec shapes of the design documents load verbatim into the one canonical model."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkloom.flows.loading import check_flow, load_flow, to_canonical_yaml
from linkloom.flows.spec import HttpStep, TransformStep

SEEDS = Path(__file__).parents[2] / "fixtures" / "specs" / "seeds"


def _load(name: str):
    return load_flow((SEEDS / name).read_bytes(), filename=name)


@pytest.mark.parametrize(
    ("name", "middle"),
    [("daily-report-linkloom.yaml", "process"), ("daily-report-linkloom-v2.yaml", "process_data")],
)
def test_linkloom_daily_report_loads_tasks_dependson_and_schedule(name, middle):
    spec = _load(name)
    assert spec.id == "daily-report"
    assert [s.id for s in spec.steps] == ["fetch_data", middle, "send_email"]
    assert [s.depends_on for s in spec.steps] == [[], ["fetch_data"], [middle]]
    assert all(isinstance(s, HttpStep) and s.method == "POST" for s in spec.steps)
    assert spec.steps[0].url == "http://user-backend:8080/api/tasks/fetch-data"
    assert [(s.cron, s.timezone) for s in spec.schedules] == [("0 3 * * *", "UTC")]


def test_automata_sync_orders_loads_config_timeout_sec_and_go_templates():
    spec = _load("automata-sync-orders.json")
    assert spec.id == "sync-orders"
    assert spec.name == "sync-orders"
    assert spec.inputs["source_id"].type == "string"
    assert spec.inputs["source_id"].required is True
    assert spec.defaults.timeout == 300
    assert spec.defaults.retry.max_attempts == 3
    assert spec.defaults.retry.backoff == "exponential"
    fetch, save = spec.steps
    assert isinstance(fetch, HttpStep)
    assert isinstance(save, HttpStep)
    assert (fetch.method, fetch.url) == ("GET", "https://crm.example.com/orders")
    assert fetch.outputs == {"orders": "{{ response.body.data }}"}
    assert save.depends_on == ["fetch"]
    assert (save.method, save.url) == ("POST", "https://erp.example.com/import")
    assert save.body == "{{ steps.fetch.outputs.orders }}"


def test_mbflow_workflow_loads_nodes_and_edges():
    spec = _load("mbflow-wf-123.json")
    assert spec.id == "wf-123"
    assert spec.name == "Process User Data"
    n1, n2 = spec.steps
    assert isinstance(n1, HttpStep)
    assert isinstance(n2, TransformStep)
    assert (n1.name, n1.method, n1.url) == (
        "Fetch from API",
        "GET",
        "https://api.example.com/users",
    )
    assert n2.name == "Transform Data"
    assert (n2.operation, n2.mapping) == ("map", {"username": "name"})
    assert n2.depends_on == ["n1"]


@pytest.mark.parametrize("path", sorted(SEEDS.iterdir()), ids=lambda p: p.name)
def test_seed_converts_to_canonical_yaml_that_loads_to_the_same_spec(path):
    spec = load_flow(path.read_bytes(), filename=path.name)
    again = load_flow(to_canonical_yaml(spec))
    assert again == spec


@pytest.mark.parametrize("path", sorted(SEEDS.iterdir()), ids=lambda p: p.name)
def test_seed_checks_without_errors(path):
    result = check_flow(path.read_bytes(), filename=path.name)
    assert result.errors == []
