"""Where tree samplers fork: the statistics of the fork records a tree carries (``Tree.forks``).

A fork is one expansion from a node that already had a continuation, recorded by the sampler when
the node is picked (:meth:`ibtpo.rollout.tree.Tree.record_fork`): IBTree / random tree, one per
picked node of rounds 2..L (``K`` per tree and round, whatever ``B``); EPTree, one per forked
token position (the prefix node ending just before it, whatever ``T``). Round 1's ``B0`` root
chains, EPTree's ``M`` initial chains and independent chains are not forks.

For the forks ``f = 1..F`` pooled over the trees (every fork weighs the same) and ``P`` trees::

    fork_root_share    = #{f : node_f is the root} / F
    fork_position      = (1/F) · Σ_f prefix_f / response_f      (a root fork: prefix_f = 0 → 0)
    tokens_per_problem = (1/P) · Σ_trees generated_tokens        (a shared prefix counted once)
    n_forks            = F

``prefix_f`` = generated tokens on the path to the picked node inclusive (the tokens before the
fork point); ``response_f`` = the mean generated length of the responses (root-to-leaf paths) under
that node when it was picked, i.e. of the responses the expansion branches from. Every such
response extends the prefix, so ``0 <= fork_position <= 1``; ``prefix_f / response_f := 0`` when
``response_f = 0``. This is METHOD.md §2's ``f``: a branch pays about ``1 − f`` of a chain.

With no forks (chains, or a tree sampler that found nothing to pick) ``fork_root_share`` and
``fork_position`` are ``None``; ``tokens_per_problem`` is ``None`` only without trees. Multi-process
callers summarise each tree (:func:`tree_forks`), gather the summaries and :func:`combine` them.
"""

from __future__ import annotations

FORK_KEYS = ("fork_root_share", "fork_position", "n_forks")


def tree_forks(tree) -> dict:
    """One tree's picklable summary: fork count, root forks, the sum of positions, tokens."""
    return {"n_forks": len(tree.forks),
            "n_root": sum(f.node == 0 for f in tree.forks),
            "position_sum": sum(f.prefix_tokens / f.response_tokens if f.response_tokens > 0 else 0.0
                                for f in tree.forks),
            "tokens": tree.generated_tokens}


def combine(parts: list[dict]) -> dict:
    """The module's statistics from per-tree summaries (:func:`tree_forks`), see the formulas above."""
    F = sum(p["n_forks"] for p in parts)
    return {"fork_root_share": sum(p["n_root"] for p in parts) / F if F else None,
            "fork_position": sum(p["position_sum"] for p in parts) / F if F else None,
            "tokens_per_problem": sum(p["tokens"] for p in parts) / len(parts) if parts else None,
            "n_forks": F}


def fork_stats(trees) -> dict:
    """``fork_root_share``, ``fork_position``, ``tokens_per_problem``, ``n_forks`` of ``trees``."""
    return combine([tree_forks(t) for t in trees])


def progress(stats: dict) -> str:
    """The progress-line part, e.g. ``" fork root=29% pos=0.20 tok/prob=312"``; "" without forks."""
    if not stats.get("n_forks"):
        return ""
    return (f" fork root={100 * stats['fork_root_share']:.0f}% pos={stats['fork_position']:.2f} "
            f"tok/prob={stats['tokens_per_problem']:.0f}")
