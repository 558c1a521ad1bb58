"""TreeRL (Hou et al., 2025): EPTree sampling and the TreeRL process advantage (METHOD.md §5).

EPTree sampler ``(M, N, L, T)``
-------------------------------
1. ``M`` complete chains per problem from the root (one backend call for all problems).
2. ``L`` iterations; in each, per tree, the top-``N`` fork positions by ``-log pi(sampled token)``
   (the behaviour log-prob of the token actually sampled, not the full entropy) over every token
   position of the tree, excluding

   * the first token of a node (a branch's first token; after a fork this includes the forked
     position, so a position is forked at most once),
   * every token *after* the first token at which the response text so far (decoded cumulatively
     along the root-to-token path) contains ``"answer"`` or ``"conclusion"`` (case-insensitive;
     the triggering token itself stays a candidate),
   * positions whose remaining budget ``max_new_tokens - (tokens before it on its path)`` is < 1.

   Forking at token ``j`` of node ``s`` splits ``s`` in place into ``s[:j]`` and a new child
   ``s[j:]`` (:meth:`Tree.split_node`), then samples ``T`` continuations of the prefix ending just
   *before* token ``j`` (the forked token is re-sampled), each added as one new leaf node (a node
   is the token span between forks; no step splitting) and graded with ``ctx.grade_leaves``.
   All forks of all trees go in ONE backend call per iteration (``n = T``, per-prefix budget).
   Each fork is recorded once (``Tree.record_fork`` on the prefix node, before its ``T``
   continuations); the ``M`` initial chains are not forks.

"Per tree" is TreeRL's tree: the ``M`` initial chains are ``M`` trees; here they share one
:class:`Tree` per problem as the root's ``M`` children, and the top-``N`` are taken within each
chain's subtree, so each problem gets ``M*N`` forks per iteration [reading of "per tree" that
gives TreeRL's count]. Leaves per problem ``G = M * (1 + L*N*T)`` when every chain has ``N``
allowed fork positions (else fewer).
Ties in ``-log pi`` are broken by the seeded RNG. ``eptree`` + the ``ibtpo`` advantage is the
paper's "EPTree & IBTPO Adv" row; nothing extra is needed since that advantage works on any tree.

TreeRL advantage (``treerl_variant`` / ``variant``: ``paper`` | ``code``)
-------------------------------------------------------------------------
``paper`` (the paper's equations)::

    V(s)  = mean 0/1 reward of the leaves under s
    GA(s) = V(s) - V(root),   LA(s) = V(s) - V(parent(s))
    R(s)  = (GA(s) + LA(s)) / sqrt(|leaves(s)|)        given to every token of s's span

``code`` (the official code as described in METHOD.md §5)::

    r~_i  = r_i - mean_{k != i} r_k           leave-one-out centred leaf rewards (tree's leaves)
    V(s)  = mean of r~ over the leaves under s
    W(s)  = V(s) / sqrt(n(s))                 n(s) = trained leaves under s (sqrt BEFORE differencing)
    GA(s) = W(s) - W(root),   LA(s) = W(s) - W(parent(s)),   R(s) = GA(s) + LA(s)
    truncated leaf (finish_reason "length"): -1 on every token of its response

Choices [marked]: every leaf is trained, so ``n(s) = n_leaves(s)``; a single-leaf tree has no
leave-one-out baseline and gets ``r~ = 0``; a truncated leaf still takes part, with its (0)
reward, in the centring and in its ancestors' ``V`` — only its own trajectory's per-token
advantages are overridden with -1. ``V(root)`` is 0 by construction of the centring. The clip
range ``[0.8, 1.26]`` of the official code is a loss setting (config), not part of this module.

Cross-check against the THUDM/TreeRL code (read in a public code index, not run): leaf rewards
are centred leave-one-out over all leaves of the problem (``leaf_normalize``), summed up the tree
(``accumulated_value``), divided by ``sqrt(selected_terminal_in_subtree)`` (``sqrt`` reweighting)
and then by ``terminal_in_subtree`` when paths are gathered, i.e. ``W(s) = V(s)/sqrt(n(s))`` when
all leaves are trained — the ``W`` above. The copies seen differ in the per-step difference (one
uses only ``W(s) - W(parent)``, another ``(GA + LA)/sqrt(n)`` on unscaled values); this module
follows METHOD.md: ``GA + LA`` on ``W``. There, the fork mask tests each single token's text
for the stop words within one node and truncated leaves score 0; here the mask uses the
cumulative path text (METHOD.md) and truncation gives -1 (METHOD.md §5). ``top-N per tree``
there is per initial chain, as here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ibtpo.registry import register_advantage, register_sampler
from ibtpo.rollout.checks import require_ints
from ibtpo.rollout.context import RolloutContext
from ibtpo.rollout.tree import Tree
from ibtpo.trajectories import broadcast_node_values

TREERL_VARIANTS = ("paper", "code")
STOP_WORDS = re.compile(r"answer|conclusion", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Fork selection
# --------------------------------------------------------------------------------------------

def _first_stop_index(prefix: list[int], span: list[int], decode) -> int | None:
    """Smallest ``k`` with a stop word in ``decode(prefix + span[:k+1])`` (binary search: the
    cumulative text only grows), or None."""
    if not span or not STOP_WORDS.search(decode(prefix + span)):
        return None
    lo, hi = 0, len(span) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if STOP_WORDS.search(decode(prefix + span[:mid + 1])):
            hi = mid
        else:
            lo = mid + 1
    return lo


def fork_mask(tree: Tree, node: int, decode: Callable[[list[int]], str], budget: int | None = None) -> list[bool]:
    """Which tokens of ``node`` may be forked (see the module docstring for the three rules)."""
    s = tree.nodes[node]
    n = len(s.token_ids)
    before = tree.prefix_ids(s.parent)[len(tree.prompt_ids):]  # response tokens before the node
    mask = [j > 0 for j in range(n)]
    if before and STOP_WORDS.search(decode(before)):
        return [False] * n  # an earlier token on the path already contains the stop word
    k = _first_stop_index(before, s.token_ids, decode)
    if k is not None:
        for j in range(k + 1, n):
            mask[j] = False
    if budget is not None:
        for j in range(n):
            if budget - (len(before) + j) < 1:
                mask[j] = False
    return mask


def select_forks(tree: Tree, n: int, decode, rng: np.random.Generator, budget: int | None = None,
                 within: int | None = None) -> list[tuple[int, int]]:
    """The top-``n`` allowed ``(node, j)`` positions by ``-logprob`` (ties by ``rng``), over the
    whole tree or, with ``within``, over the subtree of that node."""
    cands, lps = [], []
    nodes = tree.nodes[1:] if within is None else [tree.nodes[i] for i in tree.subtree(within)]
    for s in nodes:
        for j, ok in enumerate(fork_mask(tree, s.id, decode, budget)):
            if ok:
                cands.append((s.id, j))
                lps.append(s.logprobs[j])
    if not cands:
        return []
    order = np.lexsort((rng.random(len(cands)), np.asarray(lps)))  # logprob ascending = -logprob descending
    return [cands[i] for i in order[:n]]


def apply_forks(tree: Tree, forks: list[tuple[int, int]], decode=None) -> list[int]:
    """Split ``tree`` at every fork; returns, per fork (same order), the node whose path ends just
    before the forked token (the parent of its continuations). Several forks in one node are split
    in ascending position, each in the tail left by the previous split."""
    attach: dict[tuple[int, int], int] = {}
    by_node: dict[int, list[int]] = {}
    for s, j in forks:
        by_node.setdefault(s, []).append(j)
    for s, js in by_node.items():
        cur, offset = s, 0
        for j in sorted(set(js)):
            tail = tree.split_node(cur, j - offset, decode)
            attach[(s, j)] = cur
            cur, offset = tail, j
    return [attach[f] for f in forks]


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------

@register_sampler("eptree")
@dataclass
class EPTreeSampler:
    M: int = 4
    N: int = 2
    L: int = 1
    T: int = 1

    def __post_init__(self):
        require_ints(self, ("M", "N", "T"))
        require_ints(self, ("L",), minimum=0)

    @property
    def G(self) -> int:
        return self.M * (1 + self.L * self.N * self.T)

    def sample(self, problems: list[dict], ctx: RolloutContext, seed: int) -> list[Tree]:
        rng = np.random.default_rng(seed)
        trees = [ctx.new_tree(p) for p in problems]
        budget = ctx.params.max_new_tokens
        ctx.expand([(t, 0) for t in trees], self.M, seed, as_steps=False)  # the M chains, one node each
        for it in range(1, self.L + 1):
            ctx.settle()  # splitting a leaf moves its reward to the split-off tail: rewards must be set first
            picks: list[tuple[Tree, int]] = []
            for tree in trees:
                forks = [f for chain in list(tree.root.children)
                         for f in select_forks(tree, self.N, ctx.decode, rng, budget, within=chain)]
                picks.extend((tree, a) for a in apply_forks(tree, forks, ctx.decode))
            if not picks:
                break
            # each pick, the prefix node ending just before the forked token, has the split-off tail as its
            # child, so expand records it as a fork
            ctx.expand(picks, self.T, seed + it, as_steps=False)
        return trees


# --------------------------------------------------------------------------------------------
# Advantage
# --------------------------------------------------------------------------------------------

def treerl_node_values(tree: Tree, variant: str = "paper") -> dict[int, dict[str, float]]:
    """``{node: {"V", "GA", "LA", "R"}}`` for every node (the root: ``V`` only, others 0).

    See the module docstring for both variants' formulas; ``R`` is the per-token advantage of
    the node's span (before the ``code`` variant's -1 override of truncated responses)."""
    if variant not in TREERL_VARIANTS:
        raise ValueError(f"treerl variant {variant!r}; allowed: {list(TREERL_VARIANTS)}")
    leaves = tree.leaves()
    raw = {leaf: float(tree.nodes[leaf].reward or 0.0) for leaf in leaves}
    if variant == "code":
        total, n = sum(raw.values()), len(raw)
        leaf_r = {leaf: (r - (total - r) / (n - 1) if n > 1 else 0.0) for leaf, r in raw.items()}
    else:
        leaf_r = raw
    under = tree.leaves_under()
    V = {s: (float(np.mean([leaf_r[x] for x in under[s]])) if under[s] else 0.0) for s in under}
    if variant == "code":  # sqrt over the number of (trained) leaves, applied before differencing
        W = {s: (V[s] / math.sqrt(len(under[s])) if under[s] else 0.0) for s in under}
    else:
        W = V
    out = {0: {"V": V[0], "GA": 0.0, "LA": 0.0, "R": 0.0}}
    for s in under:
        if s == 0:
            continue
        p = tree.nodes[s].parent
        ga, la = W[s] - W[0], W[s] - W[p]
        if variant == "paper":
            r = (ga + la) / math.sqrt(len(under[s])) if under[s] else 0.0
        else:
            r = ga + la
        out[s] = {"V": V[s], "GA": ga, "LA": la, "R": r}
    return out


def check_params(params: dict) -> None:
    """Config check of TreeRL's advantage parameters (``ValueError`` naming the key)."""
    if "variant" in params and params["variant"] not in TREERL_VARIANTS:
        raise ValueError(f"advantage.variant: {params['variant']!r}; allowed: {list(TREERL_VARIANTS)}")


@register_advantage("treerl", check=check_params)
def treerl_advantage(tree: Tree, variant: str = "paper") -> list[np.ndarray]:
    """Per leaf (``tree.leaves()`` order), every token of each node ``s`` on its path gets ``R(s)``;
    ``code``: a truncated response (finish_reason ``"length"``) gets -1 on every token instead."""
    vals = treerl_node_values(tree, variant)
    truncated = ({leaf: -1.0 for leaf in tree.leaves() if tree.nodes[leaf].finish_reason == "length"}
                 if variant == "code" else {})
    return broadcast_node_values(tree, {s: v["R"] for s, v in vals.items()}, truncated)
