"""``python -m ibtpo score-tree tree.json``: IB-Score and IB-TPO advantages of a hand-built tree.

Input format (also what a sampler dumps with ``Tree.to_json``)::

    {"nodes": [
      {"id": "r",  "parent": null, "text": "Compute 2+3*4."},
      {"id": "s1", "parent": "r",  "text": "3*4=12\\n\\n", "prob": 0.6},
      {"id": "s2", "parent": "r",  "text": "2+3=5\\n\\n",  "logprob_mean": -1.2},
      {"id": "l1", "parent": "s1", "text": "2+12=14", "prob": 0.9, "reward": 1},
      {"id": "l2", "parent": "s2", "text": "5*4=20",  "prob": 0.5, "reward": 0}
    ]}

(a bare list of nodes is accepted too). Exactly one root (``parent: null``) with children; every
leaf has a ``reward`` in [0, 1] (0/1 for graded answers); a non-root node gives its step
probability as ``prob`` in (0, 1] or as ``logprob_mean`` <= 0 (the mean token log-prob;
``prob = exp(logprob_mean)``), default 1. A tree that breaks a rule (full list:
:func:`validate_nodes`) is refused with a :class:`TreeFormatError` naming the node and field; the
CLI prints it and exits 2. ``pi`` is then normalised by
``--pi-mode`` (default ``length_norm``, METHOD.md §1, and ``raw`` both use ``prob`` as given, since a
hand-built node has no tokens; ``sibling`` renormalises over siblings). ``--beta``, ``--pi-mode`` and
``--zero-parent`` make the one :class:`~ibtpo.ib_score.IBParams` that IBTree and the advantage use.

Prints per node: p_hat, leaves, correct, IB-Score and Cov(eta1, eta2) (non-leaf nodes), eta1
and pi relative to its parent, A_GL, A_IB and A; with ``--advantage treerl``, TreeRL's node value
V, GA = V(s) - V(root), LA = V(s) - V(parent) and the step reward R (``--treerl-variant
paper|code``, see :mod:`baselines.treerl`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .ib_advantage import ib_node_advantages
from .ib_score import IBParams, cov_eta, ib_score, value_ratio
from .rollout.tree import Tree


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
    pos: dict = {}  # id -> position
    for i, n in enumerate(nodes):
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
        pos[n["id"]] = i
        if n["parent"] is not None and not _is_id(n["parent"]):
            raise TreeFormatError(f"{at}: parent must be null or a node id (got {_show(n['parent'])})")
        for field, rule in _RULES.items():
            if field in n and not (n[field] is None and n["parent"] is None) and not _ok(field, n[field]):
                raise TreeFormatError(f"{at}: {field} must be {rule} (got {_show(n[field])})")
        if n["parent"] is not None and "prob" in n and "logprob_mean" in n:
            raise TreeFormatError(f"{at}: give prob or logprob_mean, not both")
    roots = [i for i, n in enumerate(nodes) if n["parent"] is None]
    if len(roots) != 1:
        named = ", ".join(f"nodes[{i}] {nodes[i]['id']!r}" for i in roots)
        raise TreeFormatError(f"{origin}: expected exactly one root (parent: null), found {len(roots)}"
                              + (f": {named}" if named else " (every node has a parent: a cycle?)"))
    children: dict = {}
    for i, n in enumerate(nodes):
        if n["parent"] is not None and n["parent"] not in pos:
            raise TreeFormatError(f"{origin}: nodes[{i}], node {n['id']!r}: unknown parent {n['parent']!r} "
                                  "(parent names no node)")
        children.setdefault(n["parent"], []).append(i)
    root = nodes[roots[0]]
    seen, todo = {roots[0]}, [roots[0]]
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
    for i, n in enumerate(nodes):
        kids, reward = children.get(n["id"]), n.get("reward")
        if kids and "reward" in n and not (reward is None and n["parent"] is None):
            raise TreeFormatError(f"{origin}: nodes[{i}], node {n['id']!r}: reward is only allowed on a leaf "
                                  f"(this node has {len(kids)} child node(s))")
        if not kids and reward is None:
            raise TreeFormatError(f"{origin}: nodes[{i}], leaf {n['id']!r}: needs a 0/1 'reward' "
                                  f"({_RULES['reward']}; got {_show(reward) if 'reward' in n else 'none'})")
    return nodes, roots[0], children


def tree_from_json(data, origin: str = "<tree>") -> tuple[Tree, list]:
    """Build a :class:`Tree` from the JSON format (rules: :func:`validate_nodes`); returns it and the
    user ids in node order."""
    nodes, r, children = validate_nodes(data, origin)
    problem = (data.get("problem") or {}) if isinstance(data, dict) else {}
    text = nodes[r].get("text") or ""
    tree = Tree({"id": problem.get("id", "tree"), "problem": problem.get("problem", text),
                 "answer": problem.get("answer", "")}, [], text)
    ids, internal = [nodes[r]["id"]], {nodes[r]["id"]: 0}
    queue = [nodes[r]]
    while queue:
        parent = queue.pop(0)
        for n in (nodes[i] for i in children.get(parent["id"], [])):
            lp = float(n["logprob_mean"]) if "logprob_mean" in n else math.log(n.get("prob", 1.0))
            internal[n["id"]] = tree.add_node(internal[parent["id"]], [0], [lp], [0.0], n.get("text", ""))
            ids.append(n["id"])
            queue.append(n)
    for n in nodes:
        if not children.get(n["id"]):  # a leaf (the root has children)
            tree.set_reward(internal[n["id"]], float(n["reward"]))
    return tree, ids


def score(tree: Tree, ids: list, lam: float = 0.1, ib: IBParams | dict | None = None, advantage: str = "ibtpo",
          treerl_variant: str = "paper") -> list[dict]:
    """Per node: p_hat, counts and, for ``advantage="ibtpo"``, IB-Score, Cov, eta1, pi, A_GL, A_IB, A;
    for ``advantage="treerl"``, TreeRL's V, GA, LA and step reward R (``treerl_variant``)."""
    if advantage == "treerl":
        from baselines.treerl import treerl_node_values

        vals = treerl_node_values(tree, treerl_variant)
        return [{"id": uid, "parent": ids[n.parent] if n.parent is not None else None, "p_hat": tree.p_hat(n.id),
                 "leaves": n.n_leaves, "correct": n.n_correct, **vals[n.id]} for uid, n in zip(ids, tree.nodes)]
    if advantage != "ibtpo":
        raise ValueError(f"unknown advantage {advantage!r}; allowed: ['ibtpo', 'treerl']")
    ib = IBParams.of(ib)
    adv = ib_node_advantages(tree, lam, ib)
    rows = []
    for uid, node in zip(ids, tree.nodes):
        row = {"id": uid, "parent": ids[node.parent] if node.parent is not None else None,
               "p_hat": tree.p_hat(node.id), "leaves": node.n_leaves, "correct": node.n_correct}
        if node.children:
            row["ib_score"] = ib_score(tree, node.id, ib)
            row["cov_eta"] = cov_eta(tree, node.id, ib)
        if node.parent is not None:
            row["eta1"] = value_ratio(tree, node.id, node.parent, ib.zero_parent) - ib.offset
            row["pi"] = adv[node.id]["pi"]
            row.update({k: adv[node.id][k] for k in ("A_GL", "A_IB", "A")})
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    cols = ["id", "parent", "p_hat", "leaves", "correct"]
    cols += [c for c in ("ib_score", "cov_eta", "eta1", "pi", "A_GL", "A_IB", "A", "V", "GA", "LA", "R")
             if any(c in r for r in rows)]
    fmt = lambda v: "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    return "\n".join([line(cols)] + [line(r) for r in cells])


def main(path: str, as_json: bool = False, **kw) -> str:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:  # missing, unreadable, not UTF-8, not JSON
        raise TreeFormatError(f"{path}: cannot read tree JSON: {e}") from None
    tree, ids = tree_from_json(data, path)
    rows = score(tree, ids, **kw)
    return json.dumps(rows, indent=1) if as_json else format_table(rows)
