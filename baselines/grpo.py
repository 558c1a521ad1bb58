"""GRPO's outcome advantage (Shao et al., 2024).

For the ``G`` trajectories of one problem with rewards ``r_1..r_G``::

    A_g = (r_g - mean(r)) / std(r)        broadcast to every token of trajectory g
    std(r) = 0  ->  A_g = 0

``std`` is the sample standard deviation (``ddof=1``, as torch's ``std`` in TRL and verl) by
default; ``std_ddof: 0`` gives the population one. A tree sampler's leaves are its trajectories,
so the same estimator serves "GRPO + IBTree".
"""

from __future__ import annotations

import numpy as np

from ibtpo.registry import register_advantage
from ibtpo.rollout.tree import Tree
from ibtpo.trajectories import broadcast_node_values


def grpo_group_advantage(rewards, std_ddof: int = 1) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) <= std_ddof:
        return np.zeros_like(r)
    std = r.std(ddof=std_ddof)
    if std == 0:
        return np.zeros_like(r)
    return (r - r.mean()) / std


def check_params(params: dict) -> None:
    """Config check of the GRPO advantage's parameters (``ValueError`` naming the key)."""
    if "std_ddof" in params and params["std_ddof"] not in (0, 1):
        raise ValueError(f"advantage.std_ddof: 0 or 1 (got {params['std_ddof']!r})")


@register_advantage("grpo", check=check_params)
def grpo_advantage(tree: Tree, std_ddof: int = 1) -> list[np.ndarray]:
    """``A_g`` on every token of leaf ``g``'s trajectory (``tree.leaves()`` order), through
    :func:`~ibtpo.trajectories.broadcast_node_values` as trajectory-level values (on a chain tree, each
    leaf's own node value; on a deeper tree a shared node carries a different value per trajectory)."""
    leaves = tree.leaves()
    adv = grpo_group_advantage([tree.nodes[i].reward for i in leaves], std_ddof)
    return broadcast_node_values(tree, {}, dict(zip(leaves, adv)))
