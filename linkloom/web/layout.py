"""DAG layout for the UI, computed in Python: steps become boxes, dependencies arrows.

A small Sugiyama-style pipeline:

1. **Layering** by longest path: a step sits one layer after its deepest dependency.
2. **Dummy nodes** break every edge that spans several layers into one-layer hops, so long
   arrows take part in ordering and bend around boxes instead of crossing them: through a
   layer it skips, an arrow runs straight in its own lane, and it bends only between layers.
3. **Ordering** by barycenter sweeps (down, then up, repeated), keeping the order with the
   fewest crossings seen; the spec's own order is the starting point and breaks ties.
4. **Coordinates**: each box is pulled towards the mean position of its neighbours in the
   previous layer, then pushed apart so no two overlap; arrows are smooth cubic paths through
   their dummy points.

``layout(nodes, edges, direction="LR")`` lays layers out left to right (wide screens);
``direction="TB"`` top to bottom (phones). The result is plain data the SVG template draws.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BOX_WIDTH = 168.0
BOX_HEIGHT = 44.0
LAYER_GAP = 64.0  # between layers, along the flow direction
NODE_GAP = 20.0  # between boxes of one layer
DUMMY_GAP = 12.0  # between a bend of a long arrow and its neighbours
MARGIN = 12.0
SWEEPS = 8


class CycleError(ValueError):
    """The graph has a cycle, so it has no layering (specs are validated acyclic before this)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Box:
    id: str
    label: str
    sublabel: str
    x: float  # top-left corner
    y: float
    width: float
    height: float
    layer: int
    order: int  # position within its layer

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrow:
    source: str
    target: str
    points: tuple[tuple[float, float], ...]  # start, bends (dummy nodes), end
    path: str  # SVG path data


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    width: float
    height: float
    direction: str  # LR | TB
    crossings: int  # arrow crossings between adjacent layers, after ordering

    def box(self, node_id: str) -> Box:
        for box in self.boxes:
            if box.id == node_id:
                return box
        raise KeyError(node_id)


def layers(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layer of every node (sources are layer 0); iterative, so a 10,000-step
    chain is as safe as a short one.

    Raises:
        CycleError: when the edges form a cycle.
    """
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    indegree = dict.fromkeys(nodes, 0)
    for src, dst in edges:
        if src in succ and dst in succ:
            succ[src].append(dst)
            indegree[dst] += 1
    layer = dict.fromkeys(nodes, 0)
    ready = deque(n for n in nodes if indegree[n] == 0)
    done = 0
    while ready:
        node = ready.popleft()
        done += 1
        for nxt in succ[node]:
            layer[nxt] = max(layer[nxt], layer[node] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if done < len(indegree):
        stuck = next(n for n, d in indegree.items() if d > 0)
        raise CycleError(f"cycle through {stuck!r}")
    return layer


def crossings(ranks: Sequence[Sequence[str]], succ: Mapping[str, Sequence[str]]) -> int:
    """Edge crossings between each pair of adjacent ranks (orders)."""
    total = 0
    for upper, lower in itertools.pairwise(ranks):
        position = {n: i for i, n in enumerate(lower)}
        pairs = [
            (i, position[t]) for i, n in enumerate(upper) for t in succ.get(n, ()) if t in position
        ]
        for a in range(len(pairs)):
            for b in range(a + 1, len(pairs)):
                (u1, l1), (u2, l2) = pairs[a], pairs[b]
                if (u1 - u2) * (l1 - l2) < 0:
                    total += 1
    return total


def layout(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    *,
    labels: Mapping[str, str] | None = None,
    sublabels: Mapping[str, str] | None = None,
    direction: str = "LR",
) -> Layout:
    """Lay out a DAG; ``edges`` go from a dependency to the step that depends on it."""
    if direction not in ("LR", "TB"):
        raise ValueError("direction must be 'LR' or 'TB'")
    labels = labels or {}
    sublabels = sublabels or {}
    known = set(nodes)
    edges = [(s, t) for s, t in dict.fromkeys(edges) if s in known and t in known and s != t]
    layer = layers(nodes, edges)
    ranks, succ, pred, chains = _with_dummies(nodes, edges, layer)
    ranks = _order(ranks, succ, pred)
    lr = direction == "LR"
    along_size, across_size = (BOX_WIDTH, BOX_HEIGHT) if lr else (BOX_HEIGHT, BOX_WIDTH)
    across = _positions(ranks, pred, succ, size=across_size)

    def point(node: str, depth: int) -> tuple[float, float]:
        """A box's top-left corner."""
        a = MARGIN + depth * (along_size + LAYER_GAP)
        c = MARGIN + across[node] - across_size / 2
        return (a, c) if direction == "LR" else (c, a)

    boxes = []
    for depth, rank in enumerate(ranks):
        for order, node in enumerate(rank):
            if node in known:
                x, y = point(node, depth)
                w, h = (BOX_WIDTH, BOX_HEIGHT)
                boxes.append(
                    Box(
                        id=node,
                        label=labels.get(node, node),
                        sublabel=sublabels.get(node, ""),
                        x=x,
                        y=y,
                        width=w,
                        height=h,
                        layer=depth,
                        order=order,
                    )
                )
    by_id = {b.id: b for b in boxes}
    depth_of = {n: d for d, rank in enumerate(ranks) for n in rank}
    arrows = []
    for (src, dst), chain in chains.items():
        start, end = by_id[src], by_id[dst]
        pts = [_exit(start, direction)]
        for dummy in chain:
            # Through a layer it skips, an arrow runs straight along its own lane (kept clear of
            # that layer's boxes); it bends only in the gaps between layers, where no box is.
            pts += _lane(point(dummy, depth_of[dummy]), direction)
        pts.append(_entry(end, direction))
        arrows.append(Arrow(source=src, target=dst, points=tuple(pts), path=_path(pts, direction)))
    span_along = MARGIN * 2 + len(ranks) * along_size + max(len(ranks) - 1, 0) * LAYER_GAP
    span_across = MARGIN * 2 + max(
        (across[n] + (0 if _is_dummy(n) else across_size / 2) for n in across), default=0
    )
    width, height = (span_along, span_across) if direction == "LR" else (span_across, span_along)
    return Layout(
        boxes=tuple(boxes),
        arrows=tuple(arrows),
        width=round(width, 1),
        height=round(height, 1),
        direction=direction,
        crossings=crossings(ranks, succ),
    )


def _with_dummies(
    nodes: Sequence[str], edges: Sequence[tuple[str, str]], layer: Mapping[str, int]
) -> tuple[
    list[list[str]], dict[str, list[str]], dict[str, list[str]], dict[tuple[str, str], list[str]]
]:
    depth = max(layer.values(), default=-1) + 1
    ranks: list[list[str]] = [[] for _ in range(depth)]
    for node in nodes:
        ranks[layer[node]].append(node)
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    pred: dict[str, list[str]] = {n: [] for n in nodes}
    chains: dict[tuple[str, str], list[str]] = {}
    for src, dst in edges:
        chain: list[str] = []
        prev = src
        for level in range(layer[src] + 1, layer[dst]):
            dummy = f"\x00{src}\x00{dst}\x00{level}"
            ranks[level].append(dummy)
            succ[dummy], pred[dummy] = [], []
            succ[prev].append(dummy)
            pred[dummy].append(prev)
            chain.append(dummy)
            prev = dummy
        succ[prev].append(dst)
        pred[dst].append(prev)
        chains[(src, dst)] = chain
    return ranks, succ, pred, chains


def _order(
    ranks: list[list[str]], succ: Mapping[str, Sequence[str]], pred: Mapping[str, Sequence[str]]
) -> list[list[str]]:
    best = [list(r) for r in ranks]
    best_count = crossings(best, succ)
    current = [list(r) for r in ranks]
    for sweep in range(SWEEPS):
        if best_count == 0:
            break
        if sweep % 2 == 0:
            for i in range(1, len(current)):
                current[i] = _by_barycenter(current[i], current[i - 1], pred)
        else:
            for i in range(len(current) - 2, -1, -1):
                current[i] = _by_barycenter(current[i], current[i + 1], succ)
        count = crossings(current, succ)
        if count < best_count:
            best, best_count = [list(r) for r in current], count
    return best


def _by_barycenter(
    rank: list[str], fixed: Sequence[str], neighbours: Mapping[str, Sequence[str]]
) -> list[str]:
    position = {n: i for i, n in enumerate(fixed)}

    def key(item: tuple[int, str]) -> tuple[float, int]:
        index, node = item
        linked = [position[n] for n in neighbours.get(node, ()) if n in position]
        return (sum(linked) / len(linked) if linked else float(index), index)

    return [node for _, node in sorted(enumerate(rank), key=key)]


def _is_dummy(node: str) -> bool:
    return node.startswith("\x00")


def _positions(
    ranks: Sequence[Sequence[str]],
    pred: Mapping[str, Sequence[str]],
    succ: Mapping[str, Sequence[str]],
    *,
    size: float,
) -> dict[str, float]:
    """Centre of every node across the flow direction (boxes start at 0).

    Boxes keep ``NODE_GAP`` apart; the bends of long arrows (dummies) take no room of their own
    but ``DUMMY_GAP``, so skipped layers stay compact. Sweeps pull each node towards the mean
    of its neighbours: down by predecessors, up by successors, down again.
    """

    def half(node: str) -> float:
        return 0.0 if _is_dummy(node) else size / 2

    def gap(a: str, b: str) -> float:
        return DUMMY_GAP if _is_dummy(a) or _is_dummy(b) else NODE_GAP

    def pack(rank: Sequence[str], wanted: Sequence[float]) -> None:
        placed: list[float] = []
        for i, (node, want) in enumerate(zip(rank, wanted, strict=True)):
            if i:
                prev = rank[i - 1]
                want = max(want, placed[-1] + half(prev) + gap(prev, node) + half(node))
            placed.append(want)
        # Shift back by half the mean overshoot so the rank stays centred on what it wanted.
        overshoot = sum(p - w for p, w in zip(placed, wanted, strict=True)) / max(len(rank), 1)
        for node, value in zip(rank, placed, strict=True):
            pos[node] = value - overshoot / 2

    pos: dict[str, float] = {}
    for rank in ranks:
        pack(rank, [0.0] * len(rank))
    extent = max((pos[r[-1]] for r in ranks if r), default=0.0)
    for rank in ranks:  # centre every rank on the longest one
        if rank:
            shift = (extent - pos[rank[-1]]) / 2
            for node in rank:
                pos[node] += shift
    order = list(range(len(ranks)))
    for sweep, neighbours in ((order[1:], pred), (order[-2::-1], succ), (order[1:], pred)):
        for depth in sweep:
            rank = ranks[depth]
            wanted: list[float | None] = []
            for node in rank:
                linked = [pos[n] for n in neighbours.get(node, ()) if n in pos]
                wanted.append(sum(linked) / len(linked) if linked else None)
            pack(rank, _fill(wanted, [pos[n] for n in rank]))
    low = min((v - half(n) for n, v in pos.items()), default=0.0)
    return {n: round(v - low, 1) for n, v in pos.items()}


def _fill(wanted: Sequence[float | None], current: Sequence[float]) -> list[float]:
    """Nodes with no neighbour on that side stay next to the nearest node that has one."""
    known = [i for i, w in enumerate(wanted) if w is not None]
    if not known:
        return list(current)
    out = []
    for i, want in enumerate(wanted):
        if want is None:
            nearest = min(known, key=lambda k: abs(k - i))
            want = wanted[nearest]
        assert want is not None
        out.append(want)
    return out


def _lane(corner: tuple[float, float], direction: str) -> list[tuple[float, float]]:
    """Where an arrow enters and leaves the band of a layer it passes through."""
    x, y = corner
    if direction == "LR":
        return [(x, y + BOX_HEIGHT / 2), (x + BOX_WIDTH, y + BOX_HEIGHT / 2)]
    return [(x + BOX_WIDTH / 2, y), (x + BOX_WIDTH / 2, y + BOX_HEIGHT)]


def _exit(box: Box, direction: str) -> tuple[float, float]:
    return (box.x + box.width, box.cy) if direction == "LR" else (box.cx, box.y + box.height)


def _entry(box: Box, direction: str) -> tuple[float, float]:
    return (box.x, box.cy) if direction == "LR" else (box.cx, box.y)


def _path(points: Sequence[tuple[float, float]], direction: str) -> str:
    """A smooth path through ``points``: one cubic segment per hop, tangent to the flow."""
    x0, y0 = points[0]
    parts = [f"M{x0:.1f},{y0:.1f}"]
    for (ax, ay), (bx, by) in itertools.pairwise(points):
        if direction == "LR":
            mid = (ax + bx) / 2
            parts.append(f"C{mid:.1f},{ay:.1f} {mid:.1f},{by:.1f} {bx:.1f},{by:.1f}")
        else:
            mid = (ay + by) / 2
            parts.append(f"C{ax:.1f},{mid:.1f} {bx:.1f},{mid:.1f} {bx:.1f},{by:.1f}")
    return " ".join(parts)
