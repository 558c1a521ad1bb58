"""Random tree: IBTree's rounds with a uniformly random (seeded) choice among non-leaf nodes.

Same ``(B0, L, K, B)`` and the same code as IBTree (:mod:`ibtpo.rollout.ibtree`), only the node
choice differs, so a comparison isolates the IB-Score guidance. Paired with the GRPO advantage
(``randtree``) or the IB-TPO advantage (``randtree_ibadv``, the paper's Table 2 row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ibtpo.registry import register_sampler
from ibtpo.rollout.ibtree import IBTreeSampler


@register_sampler("random_tree")
@dataclass
class RandomTreeSampler(IBTreeSampler):
    selection: str = "random"
    uses_ib: ClassVar[bool] = False  # uniform node choice: the inherited ``ib`` field is never read

    def __post_init__(self):
        if self.selection != "random":
            raise ValueError("random_tree always selects nodes at random; use sampler 'ibtree' for IB selection")
        super().__post_init__()
