"""Ordering of a parent graph: parents before children, cycles named (the catalog and the plan)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from .errors import CycleError

N = TypeVar("N", bound=Hashable)


def toposort(parents: Mapping[N, Iterable[N]], *, name: Callable[[N], str] = str) -> list[N]:
    """Nodes in an order where every node comes after its parents; ties keep input order.

    Parents that are not nodes themselves are ignored (they are outside the graph).

    >>> toposort({"web": ["base"], "base": [], "svc": ["web"]})
    ['base', 'web', 'svc']
    >>> toposort({"a": ["b"], "b": ["a"]})
    Traceback (most recent call last):
    ...
    shipyard.errors.CycleError: catalog: parents form a cycle: a -> b -> a
    """
    order: list[N] = []
    state: dict[N, int] = {}  # 1 = on the current path, 2 = done
    path: list[N] = []

    def visit(node: N) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            start = path.index(node)
            raise CycleError([name(n) for n in [*path[start:], node]])
        state[node] = 1
        path.append(node)
        for parent in parents[node]:
            if parent in parents:
                visit(parent)
        path.pop()
        state[node] = 2
        order.append(node)

    for node in parents:
        visit(node)
    return order


def ancestors(parents: Mapping[N, Iterable[N]], nodes: Iterable[N]) -> set[N]:
    """The nodes and everything they depend on (cycle-safe)."""
    seen: set[N] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node in seen or node not in parents:
            continue
        seen.add(node)
        stack.extend(parents[node])
    return seen
