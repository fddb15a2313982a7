"""The step graph of a spec under validation: cycles, order and upstream sets, iteratively.

Nothing here recurses, so a 10,000-step chain is as safe as a 3-step one. Upstream sets are
Python ints used as bitsets: bit ``n`` is the step at index ``n`` of ``ids``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class StepGraph:
    """Steps (by id, in spec order) and the known dependencies of each."""

    ids: list[str]
    deps: dict[str, list[str]]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {step_id: n for n, step_id in enumerate(self.ids)}

    def cycles(self, *, limit: int = 10) -> list[list[str]]:
        """Each distinct cycle once, in run order (``a → b`` means b depends on a).

        A cycle starts and ends at its member that comes first in the spec.
        """
        found: list[list[str]] = []
        seen: set[frozenset[str]] = set()
        state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
        for start in self.ids:
            if start in state:
                continue
            path: list[str] = [start]
            iters = [iter(self.deps.get(start, ()))]
            state[start] = 1
            while iters:
                nxt = next(iters[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    iters.pop()
                    continue
                mark = state.get(nxt)
                if mark == 1:
                    members = path[path.index(nxt) :]
                    key = frozenset(members)
                    if key not in seen:
                        seen.add(key)
                        found.append(self._run_order(members))
                        if len(found) >= limit:
                            return found
                elif mark is None:
                    state[nxt] = 1
                    path.append(nxt)
                    iters.append(iter(self.deps.get(nxt, ())))
        return found

    def _run_order(self, members: list[str]) -> list[str]:
        # ``members`` follows depends_on edges; reverse it to read in run order.
        order = list(reversed(members))
        first = min(range(len(order)), key=lambda n: self.index.get(order[n], 0))
        order = order[first:] + order[:first]
        return [*order, order[0]]

    def topological(self) -> list[str]:
        """Ids with every dependency before its dependents; steps on or after a cycle are left
        out (so the order is complete exactly when the graph is acyclic)."""
        waiting = {s: len(set(self.deps.get(s, ()))) for s in self.ids}
        dependents: dict[str, list[str]] = {s: [] for s in self.ids}
        for step_id in self.ids:
            for dep in set(self.deps.get(step_id, ())):
                dependents[dep].append(step_id)
        ready = deque(s for s in self.ids if waiting[s] == 0)
        order: list[str] = []
        while ready:
            step_id = ready.popleft()
            order.append(step_id)
            for child in dependents[step_id]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        return order

    def upstream(self) -> dict[str, int]:
        """For each step not caught in a cycle, the bitset of every step it depends on."""
        bits: dict[str, int] = {}
        for step_id in self.topological():
            mask = 0
            for dep in self.deps.get(step_id, ()):
                mask |= bits[dep] | (1 << self.index[dep])
            bits[step_id] = mask
        return bits

    def is_upstream(self, bits: dict[str, int], *, step: str, of: str) -> bool | None:
        """Whether ``of`` depends on ``step``; ``None`` when ``of`` is on or after a cycle."""
        if of not in bits:
            return None
        return bool(bits[of] >> self.index[step] & 1)
