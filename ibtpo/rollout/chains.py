"""Chain sampler: ``G`` independent responses per problem, a depth-one tree under the root."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import register_sampler
from .context import RolloutContext
from .tree import Tree


@register_sampler("chains")
@dataclass
class ChainSampler:
    G: int = 8

    def __post_init__(self):
        if self.G < 1:
            raise ValueError(f"sampler.G must be >= 1 (got {self.G})")

    def sample(self, problems: list[dict], ctx: RolloutContext, seed: int) -> list[Tree]:
        trees = [ctx.new_tree(p) for p in problems]
        outs = ctx.backend.generate([t.prompt_ids for t in trees], self.G, ctx.params, seed=seed)
        new_leaves = []
        for tree, completions in zip(trees, outs):
            for c in completions:
                leaf = tree.add_node(0, c.token_ids, c.logprobs, c.entropies, ctx.decode(c.token_ids))
                new_leaves.append((tree, leaf, c.finish_reason))
        ctx.grade_leaves(new_leaves)
        return trees
