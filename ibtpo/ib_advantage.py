"""The IB-TPO advantage (METHOD.md §4), per step node ``s`` with parent ``s_p``::

    A_GL(s) = (p_hat(s) - p_hat(root)) / std(rewards of the tree's G trajectories)
    A_IB(s) = (p_hat(s) / p_hat(s_p) - (1 + 1/beta)) * pi_old(s)
    A(s)    = A_GL(s) + lam * A_IB(s)            beta = 5, lam = 0.1 (reported)

Every token of step ``s`` gets ``A(s)``; the tree is flattened into its root-to-leaf trajectories.
``pi_old`` is the behaviour policy's step probability, normalised as in :mod:`ibtpo.ib_score`
(``ib.pi_mode``, default ``length_norm``: METHOD.md §1), and the ratio follows its ``ib.zero_parent``
rule; ``ib`` is the method's one :class:`~ibtpo.ib_score.IBParams` (config ``method_defs.<m>.ib``,
shared with its IBTree sampler). Choices: ``std = 0 -> A_GL := 0``;
``std_ddof = 1`` (as the GRPO baseline); ``shared_prefix_weighting`` (default off) multiplies a
node's advantage by ``1/sqrt(number of trajectories through it)`` as TreeRL does.
On independent chains (depth-one trees) the root is the only branching node.
"""

from __future__ import annotations

import math

import numpy as np

from .ib_score import IBParams, child_pi, value_ratio
from .registry import register_advantage
from .rollout.tree import Tree
from .trajectories import broadcast_node_values


def ib_node_advantages(tree: Tree, lam: float = 0.1, ib: IBParams | dict | None = None,
                       std_ddof: int = 1) -> dict[int, dict[str, float]]:
    """``{node: {"A_GL", "A_IB", "A", "pi"}}`` for every non-root node."""
    ib = IBParams.of(ib)
    rewards = np.array(tree.rewards(), dtype=np.float64)
    std = rewards.std(ddof=std_ddof) if len(rewards) > std_ddof else 0.0
    root_v = tree.p_hat(0)
    out = {}
    for parent in (n for n in tree.nodes if n.children):
        for child, pi in zip(parent.children, child_pi(tree, parent.id, ib.pi_mode)):
            a_gl = (tree.p_hat(child) - root_v) / std if std > 0 else 0.0
            a_ib = (value_ratio(tree, child, parent.id, ib.zero_parent) - ib.offset) * pi
            out[child] = {"A_GL": a_gl, "A_IB": a_ib, "A": a_gl + lam * a_ib, "pi": float(pi)}
    return out


def check_params(params: dict) -> None:
    """Config check of the IB-TPO advantage's parameters (``ValueError`` naming the key)."""
    lam = params.get("lam")
    if "lam" in params and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam <= 1):
        raise ValueError(f"advantage.lam: lam must be in [0, 1] (got {lam!r}; the paper uses 0.1, 0.5 collapses)")
    if "std_ddof" in params and params["std_ddof"] not in (0, 1):
        raise ValueError(f"advantage.std_ddof: 0 or 1 (got {params['std_ddof']!r})")


@register_advantage("ibtpo", check=check_params)
def ibtpo_advantage(tree: Tree, lam: float = 0.1, ib: IBParams | dict | None = None, std_ddof: int = 1,
                    shared_prefix_weighting: bool = False):
    adv = ib_node_advantages(tree, lam, ib, std_ddof)
    values = {n: a["A"] / (math.sqrt(tree.nodes[n].n_leaves) if shared_prefix_weighting else 1.0)
              for n, a in adv.items()}
    return broadcast_node_values(tree, values)
