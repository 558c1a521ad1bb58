"""Chain sampler: ``G`` independent responses per problem, a depth-one tree under the root (one node each)."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import register_sampler
from .checks import require_ints
from .context import RolloutContext
from .tree import Tree


@register_sampler("chains")
@dataclass
class ChainSampler:
    G: int = 8

    def __post_init__(self):
        require_ints(self, ("G",))

    def sample(self, problems: list[dict], ctx: RolloutContext, seed: int) -> list[Tree]:
        trees = [ctx.new_tree(p) for p in problems]
        ctx.expand([(t, 0) for t in trees], self.G, seed, as_steps=False)  # one node per response
        return trees
