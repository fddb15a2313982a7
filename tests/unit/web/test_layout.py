"""The DAG layout: longest-path layers, crossing reduction, coordinates and arrow paths."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence

import pytest

from linkloom.web import layout
from linkloom.web.layout import BOX_HEIGHT, BOX_WIDTH, CycleError

Point = tuple[float, float]


def overlaps(a: layout.Box, b: layout.Box) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def test_layers_are_longest_paths_from_the_sources() -> None:
    edges = [("a", "b"), ("b", "c"), ("a", "c"), ("c", "d"), ("x", "d")]
    assert layout.layers(["a", "b", "c", "d", "x"], edges) == {
        "a": 0,
        "b": 1,
        "c": 2,
        "d": 3,
        "x": 0,
    }


def test_layers_reject_a_cycle() -> None:
    with pytest.raises(CycleError):
        layout.layers(["a", "b"], [("a", "b"), ("b", "a")])


def test_layout_chain_goes_left_to_right_on_one_line() -> None:
    result = layout.layout(
        ["fetch", "process", "send"], [("fetch", "process"), ("process", "send")]
    )
    boxes = [result.box(n) for n in ("fetch", "process", "send")]
    assert [b.layer for b in boxes] == [0, 1, 2]
    assert boxes[0].x < boxes[1].x < boxes[2].x
    assert len({b.y for b in boxes}) == 1
    assert result.width >= boxes[2].x + BOX_WIDTH
    assert result.crossings == 0


def test_layout_top_to_bottom_stacks_layers_vertically() -> None:
    result = layout.layout(["a", "b"], [("a", "b")], direction="TB")
    a, b = result.box("a"), result.box("b")
    assert a.x == b.x
    assert b.y >= a.y + BOX_HEIGHT
    start, end = result.arrows[0].points[0], result.arrows[0].points[-1]
    assert start == (a.cx, a.y + a.height)  # leaves the bottom of a
    assert end == (b.cx, b.y)  # enters the top of b


def test_layout_reorders_a_layer_to_remove_crossings() -> None:
    # In spec order the second layer is (y, x), which crosses a→x and b→y; ordering fixes it.
    nodes = ["a", "b", "y", "x"]
    edges = [("a", "x"), ("b", "y")]
    naive = layout.crossings([["a", "b"], ["y", "x"]], {"a": ["x"], "b": ["y"]})
    assert naive == 1
    result = layout.layout(nodes, edges)
    assert result.crossings == 0
    assert (result.box("a").y < result.box("b").y) == (result.box("x").y < result.box("y").y)


def test_layout_boxes_never_overlap_in_a_wide_fan_out() -> None:
    nodes = ["root", *[f"item{i}" for i in range(12)], "merge"]
    edges = [("root", f"item{i}") for i in range(12)] + [(f"item{i}", "merge") for i in range(12)]
    result = layout.layout(nodes, edges)
    boxes = list(result.boxes)
    assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert all(b.y + b.height <= result.height for b in boxes)
    merge = result.box("merge")
    middle = [result.box(f"item{i}").cy for i in range(12)]
    assert min(middle) <= merge.cy <= max(middle)  # the join sits among its parents


def test_layout_long_edges_bend_through_the_layers_they_skip() -> None:
    result = layout.layout(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")])
    long = next(arrow for arrow in result.arrows if (arrow.source, arrow.target) == ("a", "d"))
    assert len(long.points) == 6  # start, a lane through each skipped layer (b and c), end
    assert long.path.startswith("M")
    assert long.path.count("C") == 5
    for x, y in long.points[1:-1]:
        bend = layout.Box(
            id="", label="", sublabel="", x=x - 1, y=y - 1, width=2, height=2, layer=0, order=0
        )
        assert not any(overlaps(bend, box) for box in result.boxes)


def test_layout_ignores_edges_to_unknown_nodes_and_duplicates() -> None:
    result = layout.layout(["a", "b"], [("a", "b"), ("a", "b"), ("a", "ghost"), ("a", "a")])
    assert [(x.source, x.target) for x in result.arrows] == [("a", "b")]


def test_layout_of_an_empty_graph_is_empty() -> None:
    result = layout.layout([], [])
    assert result.boxes == ()
    assert result.arrows == ()


def test_layout_keeps_a_step_without_neighbours_next_to_the_others() -> None:
    nodes = ["lonely", "root", *[f"c{i}" for i in range(6)]]
    edges = [("root", f"c{i}") for i in range(6)]
    result = layout.layout(nodes, edges)
    lonely, root = result.box("lonely"), result.box("root")
    assert lonely.layer == root.layer == 0
    assert abs(lonely.y - root.y) <= BOX_HEIGHT + layout.NODE_GAP + 1  # adjacent, no gap


def test_layout_bends_of_long_arrows_take_less_room_than_boxes() -> None:
    # a→d skips two layers that each hold one box: the bend squeezes in beside them.
    result = layout.layout(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")])
    assert result.height < 2 * BOX_HEIGHT + layout.NODE_GAP + 2 * layout.MARGIN


def test_layout_of_a_long_chain_does_not_recurse() -> None:
    nodes = [f"s{i}" for i in range(3000)]
    result = layout.layout(nodes, list(itertools.pairwise(nodes)))
    assert result.box("s2999").layer == 2999


def _along(points: Sequence[tuple[float, float]], direction: str, n: int = 32) -> Iterator[Point]:
    """Points along the cubic segments ``layout._path`` draws through ``points``."""
    for (ax, ay), (bx, by) in itertools.pairwise(points):
        if direction == "LR":
            mid = (ax + bx) / 2
            c1, c2 = (mid, ay), (mid, by)
        else:
            mid = (ay + by) / 2
            c1, c2 = (ax, mid), (bx, mid)
        for i in range(n + 1):
            t = i / n
            u = 1 - t
            yield (
                u**3 * ax + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t**3 * bx,
                u**3 * ay + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t**3 * by,
            )


@pytest.mark.parametrize("direction", ["LR", "TB"])
def test_layout_arrows_never_run_under_a_box_they_do_not_join(direction: str) -> None:
    """200 random DAGs: every point of every drawn arrow stays out of the other boxes."""
    rng = random.Random(7)
    for _ in range(200):
        nodes = [f"s{i}" for i in range(rng.randint(4, 12))]
        edges = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :] if rng.random() < 0.3]
        result = layout.layout(nodes, edges, direction=direction)
        for arrow in result.arrows:
            others = [b for b in result.boxes if b.id not in (arrow.source, arrow.target)]
            for x, y in _along(arrow.points, direction):
                inside = [
                    b.id
                    for b in others
                    if b.x + 1 < x < b.x + b.width - 1 and b.y + 1 < y < b.y + b.height - 1
                ]
                assert not inside, f"{arrow.source}->{arrow.target} runs under {inside}: {edges}"
