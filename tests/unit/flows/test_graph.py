"""Cycles, order and upstream sets of the step graph, without recursion."""

from __future__ import annotations

from linkloom.flows.graph import StepGraph


def test_cycles_are_reported_once_in_run_order_from_the_first_step():
    graph = StepGraph(
        ids=["a", "b", "c", "d"], deps={"a": ["c"], "b": ["a"], "c": ["b"], "d": ["d"]}
    )
    assert graph.cycles() == [["a", "b", "c", "a"], ["d", "d"]]


def test_topological_order_leaves_out_steps_on_or_after_a_cycle():
    graph = StepGraph(ids=["x", "a", "b", "z"], deps={"a": ["b"], "b": ["a"], "z": ["a"]})
    assert graph.topological() == ["x"]


def test_upstream_bitsets_are_transitive():
    graph = StepGraph(ids=["a", "b", "c", "d"], deps={"b": ["a"], "c": ["b"], "d": []})
    bits = graph.upstream()
    assert graph.is_upstream(bits, step="a", of="c") is True
    assert graph.is_upstream(bits, step="c", of="a") is False
    assert graph.is_upstream(bits, step="d", of="c") is False


def test_a_long_chain_needs_no_recursion():
    n = 50_000
    ids = [f"s{i}" for i in range(n)]
    graph = StepGraph(ids=ids, deps={f"s{i}": [f"s{i - 1}"] for i in range(1, n)})
    assert graph.cycles() == []
    assert len(graph.topological()) == n
