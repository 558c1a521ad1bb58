"""The per-node scores of one tree: IB-Score and IB-TPO advantages (or TreeRL's values), what
``python -m ibtpo score-tree tree.json`` prints (the job: ``ibtpo/jobs/score_tree.py``) for a hand-built tree.

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
``prob = exp(logprob_mean)``), default 1. :meth:`Tree.from_json <ibtpo.rollout.tree.Tree.from_json>`
builds the tree; one that breaks a rule (full list: :func:`ibtpo.rollout.tree_json.validate_nodes`) is
refused with a :class:`~ibtpo.rollout.tree_json.TreeFormatError` naming the node and field; the
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
from pathlib import Path

from .ib_advantage import ib_node_advantages
from .ib_score import IBParams, cov_eta, ib_score, value_ratio
from .rollout.tree import Tree
from .rollout.tree_json import TreeFormatError  # raised by render_file; its callers import it from here

__all__ = ["TreeFormatError", "format_table", "render_file", "score"]


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


def render_file(path: str, as_json: bool = False, **kw) -> str:
    """The scores of the tree JSON at ``path`` (``kw``: :func:`score`'s options) as a table or as JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:  # missing, unreadable, not UTF-8, not JSON
        raise TreeFormatError(f"{path}: cannot read tree JSON: {e}") from None
    tree, ids = Tree.from_json(data, path)
    rows = score(tree, ids, **kw)
    return json.dumps(rows, indent=1) if as_json else format_table(rows)
