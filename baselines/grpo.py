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


def grpo_group_advantage(rewards, std_ddof: int = 1) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) <= std_ddof:
        return np.zeros_like(r)
    std = r.std(ddof=std_ddof)
    if std == 0:
        return np.zeros_like(r)
    return (r - r.mean()) / std


@register_advantage("grpo")
def grpo_advantage(tree: Tree, std_ddof: int = 1) -> list[np.ndarray]:
    leaves = tree.leaves()
    adv = grpo_group_advantage([tree.nodes[i].reward for i in leaves], std_ddof)
    return [np.full(sum(len(tree.nodes[n].token_ids) for n in tree.path(leaf)), a) for leaf, a in zip(leaves, adv)]
