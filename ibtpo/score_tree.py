"""``python -m ibtpo score-tree tree.json``: IB-Score and IB-TPO advantages of a hand-built tree.

Input format (also what a sampler dumps with ``Tree.to_json``)::

    {"nodes": [
      {"id": "r",  "parent": null, "text": "Compute 2+3*4."},
      {"id": "s1", "parent": "r",  "text": "3*4=12\\n\\n", "prob": 0.6},
      {"id": "s2", "parent": "r",  "text": "2+3=5\\n\\n",  "logprob_mean": -1.2},
      {"id": "l1", "parent": "s1", "text": "2+12=14", "prob": 0.9, "reward": 1},
      {"id": "l2", "parent": "s2", "text": "5*4=20",  "prob": 0.5, "reward": 0}
    ]}

(a bare list of nodes is accepted too). Exactly one root (``parent: null``); every leaf has a
0/1 ``reward``; a non-root node gives its step probability as ``prob`` or as ``logprob_mean``
(the mean token log-prob; ``prob = exp(logprob_mean)``), default 1. ``pi`` is then normalised by
``--pi-mode`` (``sibling``: renormalised over siblings; ``length_norm`` and ``raw`` both use
``prob`` as given, since a hand-built node has no tokens).

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
from .ib_score import cov_eta, ib_score, value_ratio
from .rollout.tree import Tree


class TreeFormatError(ValueError):
    pass


def tree_from_json(data, origin: str = "<tree>") -> tuple[Tree, list]:
    """Build a :class:`Tree` from the JSON format; returns it and the user ids in node order."""
    nodes = data["nodes"] if isinstance(data, dict) else data
    if not isinstance(nodes, list) or not nodes:
        raise TreeFormatError(f"{origin}: expected a non-empty list of nodes")
    by_id = {}
    for i, n in enumerate(nodes):
        if not isinstance(n, dict) or "id" not in n or "parent" not in n:
            raise TreeFormatError(f"{origin}: node #{i}: needs 'id' and 'parent'")
        if n["id"] in by_id:
            raise TreeFormatError(f"{origin}: node #{i}: duplicated id {n['id']!r}")
        by_id[n["id"]] = n
    roots = [n for n in nodes if n["parent"] is None]
    if len(roots) != 1:
        raise TreeFormatError(f"{origin}: expected exactly one root (parent: null), found {len(roots)}")
    for n in nodes:
        if n["parent"] is not None and n["parent"] not in by_id:
            raise TreeFormatError(f"{origin}: node {n['id']!r}: unknown parent {n['parent']!r}")
    children: dict = {}
    for n in nodes:
        children.setdefault(n["parent"], []).append(n)
    problem = data.get("problem", {}) if isinstance(data, dict) else {}
    tree = Tree({"id": problem.get("id", "tree"), "problem": problem.get("problem", roots[0].get("text", "")),
                 "answer": problem.get("answer", "")}, [], roots[0].get("text", ""))
    ids, internal = [roots[0]["id"]], {roots[0]["id"]: 0}
    stack = [roots[0]]
    while stack:
        parent = stack.pop(0)
        for n in children.get(parent["id"], []):
            if "logprob_mean" in n:
                lp = float(n["logprob_mean"])
            else:
                prob = float(n.get("prob", 1.0))
                if not 0 < prob <= 1:
                    raise TreeFormatError(f"{origin}: node {n['id']!r}: prob must be in (0, 1], got {prob}")
                lp = math.log(prob)
            internal[n["id"]] = tree.add_node(internal[parent["id"]], [0], [lp], [0.0], n.get("text", ""))
            ids.append(n["id"])
            stack.append(n)
    if len(ids) != len(nodes):
        raise TreeFormatError(f"{origin}: {len(nodes) - len(ids)} node(s) are not connected to the root (a cycle?)")
    for n in nodes:
        is_leaf = n["parent"] is not None and not children.get(n["id"])
        if is_leaf:
            if n.get("reward") not in (0, 1, 0.0, 1.0, True, False):
                raise TreeFormatError(f"{origin}: leaf {n['id']!r}: needs a 0/1 'reward'")
            tree.set_reward(internal[n["id"]], float(n["reward"]))
    return tree, ids


def score(tree: Tree, ids: list, beta: float = 5.0, lam: float = 0.1, pi_mode: str = "sibling",
          zero_parent: str = "ratio", advantage: str = "ibtpo", treerl_variant: str = "paper") -> list[dict]:
    """Per node: p_hat, counts and, for ``advantage="ibtpo"``, IB-Score, Cov, eta1, pi, A_GL, A_IB, A;
    for ``advantage="treerl"``, TreeRL's V, GA, LA and step reward R (``treerl_variant``)."""
    if advantage == "treerl":
        from baselines.treerl import treerl_node_values

        vals = treerl_node_values(tree, treerl_variant)
        return [{"id": uid, "parent": ids[n.parent] if n.parent is not None else None, "p_hat": tree.p_hat(n.id),
                 "leaves": n.n_leaves, "correct": n.n_correct, **vals[n.id]} for uid, n in zip(ids, tree.nodes)]
    if advantage != "ibtpo":
        raise ValueError(f"unknown advantage {advantage!r}; allowed: ['ibtpo', 'treerl']")
    adv = ib_node_advantages(tree, beta, lam, pi_mode, zero_parent)
    rows = []
    for uid, node in zip(ids, tree.nodes):
        row = {"id": uid, "parent": ids[node.parent] if node.parent is not None else None,
               "p_hat": tree.p_hat(node.id), "leaves": node.n_leaves, "correct": node.n_correct}
        if node.children:
            row["ib_score"] = ib_score(tree, node.id, beta, pi_mode, zero_parent)
            row["cov_eta"] = cov_eta(tree, node.id, beta, pi_mode, zero_parent)
        if node.parent is not None:
            row["eta1"] = value_ratio(tree, node.id, node.parent, zero_parent) - (1 + 1 / beta)
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
    except (OSError, json.JSONDecodeError) as e:
        raise TreeFormatError(f"{path}: cannot read tree JSON: {e}") from None
    tree, ids = tree_from_json(data, path)
    rows = score(tree, ids, **kw)
    return json.dumps(rows, indent=1) if as_json else format_table(rows)
