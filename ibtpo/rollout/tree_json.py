"""The tree JSON format's rules: :func:`validate_nodes` checks a tree JSON before
:meth:`ibtpo.rollout.tree.Tree.from_json` builds it, refusing a broken one with a :class:`TreeFormatError`.

The format (what ``Tree.to_json`` writes; ``python -m ibtpo score-tree`` reads it) is described in
:mod:`ibtpo.tree_scores`.
"""

from __future__ import annotations

import json
import math


class TreeFormatError(ValueError):
    """A tree that breaks the format rules; the message names the file, the node and the field."""


_RULES = {"logprob_mean": "a finite number <= 0", "prob": "in (0, 1]", "reward": "a number in [0, 1]",
          "n_tokens": "an integer >= 0", "text": "a string"}


def _ok(field: str, x) -> bool:
    if field == "text":
        return isinstance(x, str)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    if field == "n_tokens":
        return isinstance(x, int) and x >= 0
    try:
        x = float(x)
    except OverflowError:  # an integer too large for a float
        return False
    return math.isfinite(x) and (x <= 0 if field == "logprob_mean" else 0 < x <= 1 if field == "prob" else 0 <= x <= 1)


def _show(x) -> str:
    """``x`` as it reads in JSON (``NaN``, ``true``, ``"0.5"``), with its kind when it is no number."""
    s = json.dumps(x, default=repr)
    s = s if len(s) <= 40 else s[:37] + "..."
    kind = ("a boolean" if isinstance(x, bool) else "a string" if isinstance(x, str) else "a list"
            if isinstance(x, (list, tuple)) else "an object" if isinstance(x, dict) else None)
    return f"{s}, {kind}" if kind else s


def _is_id(x) -> bool:
    return isinstance(x, (str, int)) and not isinstance(x, bool)


def validate_nodes(data, origin: str = "<tree>") -> tuple[list[dict], int, dict]:
    """Check ``data`` against the format rules in one pass (first broken rule raises
    :class:`TreeFormatError`); returns the nodes, the root's position and ``{id: [child positions]}``.

    Rules: ``data`` is ``{"nodes": [...]}`` (optional ``problem`` object) or a bare list, with at
    least one node; each node is an object whose ``id`` is a string or an integer, unique, and whose
    ``parent`` is ``null`` or another node's id; exactly one root, which has children (else there is
    nothing to score), and every node is reachable from it (no cycles). Optional numbers:
    ``logprob_mean`` finite and <= 0, ``prob`` in (0, 1] (not both), ``n_tokens`` an integer >= 0
    (ignored); ``text`` a string. Every leaf has a ``reward``, a number in [0, 1]; internal nodes
    have none. Booleans, strings, lists, NaN and Infinity are never numbers. On the root, where
    ``Tree.to_json`` writes ``logprob_mean: null``, a null field counts as absent.
    """
    nodes = _node_list(data, origin)
    pos: dict = {}  # id -> position
    for i, n in enumerate(nodes):
        _check_node(i, n, pos, origin)
        pos[n["id"]] = i
    root = _the_root(nodes, origin)
    children = _children(nodes, pos, origin)
    _check_reachable(nodes, root, children, origin)
    _check_rewards(nodes, children, origin)
    return nodes, root, children


def _node_list(data, origin: str) -> list:
    """The node list of ``{"nodes": [...]}`` (optional ``problem`` object) or of a bare list; non-empty."""
    if isinstance(data, dict):
        if "nodes" not in data:
            raise TreeFormatError(f"{origin}: no 'nodes' key (expected {{\"nodes\": [...]}} or a list of nodes)")
        if data.get("problem") is not None and not isinstance(data["problem"], dict):
            raise TreeFormatError(f"{origin}: 'problem' must be an object (got {_show(data['problem'])})")
        nodes = data["nodes"]
    else:
        nodes = data
    if not isinstance(nodes, list) or not nodes:
        raise TreeFormatError(f"{origin}: 'nodes' must be a non-empty list of nodes (got {_show(nodes)})")
    return nodes


def _check_node(i: int, n, pos: dict, origin: str) -> None:
    """Node ``i`` on its own: an object with a fresh id (not in ``pos``), a well-formed parent, valid fields."""
    if not isinstance(n, dict):
        raise TreeFormatError(f"{origin}: nodes[{i}]: a node must be an object (got {_show(n)})")
    for key in ("id", "parent"):
        if key not in n:
            raise TreeFormatError(f"{origin}: nodes[{i}]: missing '{key}' (every node needs 'id' and 'parent')")
    if not _is_id(n["id"]):
        raise TreeFormatError(f"{origin}: nodes[{i}]: id must be a string or an integer (got {_show(n['id'])})")
    at = f"{origin}: nodes[{i}], node {n['id']!r}"
    if n["id"] in pos:
        raise TreeFormatError(f"{at}: duplicated id {n['id']!r} (already used by nodes[{pos[n['id']]}])")
    if n["parent"] is not None and not _is_id(n["parent"]):
        raise TreeFormatError(f"{at}: parent must be null or a node id (got {_show(n['parent'])})")
    for field, rule in _RULES.items():
        if field in n and not (n[field] is None and n["parent"] is None) and not _ok(field, n[field]):
            raise TreeFormatError(f"{at}: {field} must be {rule} (got {_show(n[field])})")
    if n["parent"] is not None and "prob" in n and "logprob_mean" in n:
        raise TreeFormatError(f"{at}: give prob or logprob_mean, not both")


def _the_root(nodes: list, origin: str) -> int:
    """The position of the one node whose parent is null."""
    roots = [i for i, n in enumerate(nodes) if n["parent"] is None]
    if len(roots) != 1:
        named = ", ".join(f"nodes[{i}] {nodes[i]['id']!r}" for i in roots)
        raise TreeFormatError(f"{origin}: expected exactly one root (parent: null), found {len(roots)}"
                              + (f": {named}" if named else " (every node has a parent: a cycle?)"))
    return roots[0]


def _children(nodes: list, pos: dict, origin: str) -> dict:
    """``{parent id: [child positions]}``; every parent names a node."""
    children: dict = {}
    for i, n in enumerate(nodes):
        if n["parent"] is not None and n["parent"] not in pos:
            raise TreeFormatError(f"{origin}: nodes[{i}], node {n['id']!r}: unknown parent {n['parent']!r} "
                                  "(parent names no node)")
        children.setdefault(n["parent"], []).append(i)
    return children


def _check_reachable(nodes: list, root_at: int, children: dict, origin: str) -> None:
    """Every node is reachable from the root (no cycles), and the root has children."""
    root = nodes[root_at]
    seen, todo = {root_at}, [root_at]
    while todo:
        kids = children.get(nodes[todo.pop()]["id"], [])
        seen.update(kids)
        todo += kids
    lost = [i for i in range(len(nodes)) if i not in seen]
    if lost:
        raise TreeFormatError(f"{origin}: nodes[{lost[0]}], node {nodes[lost[0]]['id']!r}: not reachable from the "
                              f"root {root['id']!r} through 'parent' (a cycle?); {len(lost)} such node(s)")
    if len(nodes) == 1:
        raise TreeFormatError(f"{origin}: the root {root['id']!r} has no children: nothing to score")


def _check_rewards(nodes: list, children: dict, origin: str) -> None:
    """A reward on every leaf and on no internal node (a null one on the root counts as absent)."""
    for i, n in enumerate(nodes):
        kids, reward = children.get(n["id"]), n.get("reward")
        if kids and "reward" in n and not (reward is None and n["parent"] is None):
            raise TreeFormatError(f"{origin}: nodes[{i}], node {n['id']!r}: reward is only allowed on a leaf "
                                  f"(this node has {len(kids)} child node(s))")
        if not kids and reward is None:
            raise TreeFormatError(f"{origin}: nodes[{i}], leaf {n['id']!r}: needs a 0/1 'reward' "
                                  f"({_RULES['reward']}; got {_show(reward) if 'reward' in n else 'none'})")
