"""IBTree: IB-guided tree sampling (METHOD.md §3), parameters ``(B0, L, K, B)``.

1. Round 1: ``B0`` complete responses from the root, each split into step nodes.
2. Rounds 2..L: score every non-leaf node (root included) from its current children, pick the
   top-``K`` (ties broken by the seeded RNG; a node may be picked again in a later round), sample
   ``B`` continuations of each picked node's prefix to the end, add them as new step paths, grade
   the new leaves (ancestors' ``p_hat`` update on the tree).

Trajectories per problem ``G = B0 + (L-1)*K*B``; the paper's ``(4, 9, 1, 1)`` gives ``G = 12``.
Rounds are sequential within a problem and batched across problems: one backend call per round
for the whole batch (:meth:`~ibtpo.rollout.context.RolloutContext.expand`). A continuation's
budget is ``max_new_tokens`` minus the tokens already on its path, so no trajectory is longer than
a chain. Token accounting is on the tree: a branch pays only for the tokens it generates after its
fork.

Prefix reuse: the HF backend re-encodes a picked node's prefix (one batched prefill per round,
then the prefilled cache is forked ``B`` ways). Measured on the tiny CPU model (1 thread): a
prefill of 16 prefixes of 45 tokens costs ~48 ms, about 13 decode steps, i.e. ~0.4 s over the 8
continuation rounds of a step, ~3% of an IB-TPO training step; keeping every node's KV cache
alive across rounds would save at most that, at the cost of holding and re-indexing per-node
caches, so the backend re-encodes. vLLM's prefix caching reuses prefixes at scale.

``ib`` holds beta, the step-probability normalisation ``pi_mode`` (default ``length_norm``, METHOD.md
§1: under ``sibling`` every single-child node scores ``-(1+beta)/beta`` and IBTree forks at the root)
and the zero-parent rule: one :class:`~ibtpo.ib_score.IBParams`, the same the method's advantage uses.
``selection: random`` (uniform over non-leaf nodes, seeded) gives the random-tree baseline on the
same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ib_score import IBParams, ib_score, non_leaf_nodes
from ..registry import register_sampler
from .checks import require_ints
from .context import RolloutContext
from .tree import Tree

SELECTIONS = ("ib", "random")


def pick_nodes(tree: Tree, k: int, rng: np.random.Generator, selection: str = "ib", ib: IBParams = IBParams(),
               budget: int | None = None) -> list[int]:
    """The top-``k`` non-leaf nodes by IB-Score (or ``k`` uniformly random ones); ties by ``rng``.

    With ``budget``, nodes whose prefix already uses the whole token budget are not candidates."""
    cands = [n for n in non_leaf_nodes(tree)
             if budget is None or len(tree.prefix_ids(n)) - len(tree.prompt_ids) < budget]
    if not cands:
        return []
    noise = rng.random(len(cands))
    if selection == "random":
        order = np.argsort(noise)
    elif selection == "ib":
        scores = np.array([ib_score(tree, n, ib) for n in cands])
        order = np.lexsort((noise, -scores))  # by score descending, then by random tie-break
    else:
        raise ValueError(f"unknown node selection {selection!r}; allowed: {list(SELECTIONS)}")
    return [cands[i] for i in order[:k]]


@register_sampler("ibtree")
@dataclass
class IBTreeSampler:
    B0: int = 4
    L: int = 9
    K: int = 1
    B: int = 1
    selection: str = "ib"
    ib: IBParams = field(default_factory=IBParams)  # the method's IB parameters (config method_defs.<m>.ib)

    def __post_init__(self):
        require_ints(self, ("B0", "L", "K", "B"))
        self.ib = IBParams.of(self.ib)
        if self.selection not in SELECTIONS:
            raise ValueError(f"sampler.selection: {self.selection!r}; allowed: {list(SELECTIONS)}")

    @property
    def G(self) -> int:
        return self.B0 + (self.L - 1) * self.K * self.B

    def sample(self, problems: list[dict], ctx: RolloutContext, seed: int) -> list[Tree]:
        rng = np.random.default_rng(seed)
        trees = [ctx.new_tree(p) for p in problems]
        ctx.expand([(t, 0) for t in trees], self.B0, seed)
        budget = ctx.params.max_new_tokens
        for rnd in range(2, self.L + 1):
            ctx.settle()  # the picks read the rewards so far
            picks = [(t, n) for t in trees for n in pick_nodes(t, self.K, rng, self.selection, self.ib, budget)]
            ctx.expand(picks, self.B, seed + rnd)
        return trees
