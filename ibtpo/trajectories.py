"""Trajectory extraction: flatten a tree into its root-to-leaf training sequences.

Each leaf gives one sequence: the prompt, then every token on the path to the leaf. An advantage
estimator returns one per-token advantage array per leaf (``tree.leaves()`` order); node-level
estimators use :func:`broadcast_node_values` to give every token of node ``s`` the value ``A(s)``
(or a trajectory-level value to every token of a leaf's path); every registered advantage goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rollout.tree import Tree


@dataclass
class Trajectory:
    prompt_ids: list[int]
    response_ids: list[int]
    old_logprobs: list[float]  # behaviour policy, per response token
    advantages: np.ndarray  # per response token
    reward: float
    truncated: bool
    problem_index: int


def broadcast_node_values(tree: Tree, node_value: dict[int, float],
                          leaf_value: dict[int, float] | None = None) -> list[np.ndarray]:
    """Per leaf (``tree.leaves()`` order), the float64 array ``[A(s) for s on the path for every token of s]``.

    A leaf in ``leaf_value`` gets ``leaf_value[leaf]`` on every token of its path instead: a
    trajectory-level value (GRPO's outcome advantage on any tree, TreeRL's -1 for a truncated response);
    ``node_value`` then needs no entry for its nodes."""
    out = []
    for leaf in tree.leaves():
        path = tree.path(leaf)
        if leaf_value is not None and leaf in leaf_value:
            out.append(np.full(sum(len(tree.nodes[n].token_ids) for n in path), leaf_value[leaf], dtype=np.float64))
            continue
        parts = [np.full(len(tree.nodes[n].token_ids), node_value[n], dtype=np.float64) for n in path]
        out.append(np.concatenate(parts) if parts else np.zeros(0))
    return out


@dataclass
class LeafSequence:
    """A leaf's token sequence (what :func:`ibtpo.logprobs.sequence_logprobs` reads), before grading."""

    prompt_ids: list[int]
    response_ids: list[int]


def leaf_sequences(trees: list[Tree]) -> list[LeafSequence]:
    """The token sequences of :func:`extract`'s trajectories, in its order; needs no rewards."""
    return [LeafSequence(tree.prompt_ids, [t for n in tree.path(leaf) for t in tree.nodes[n].token_ids])
            for tree in trees for leaf in tree.leaves()]


def extract(trees: list[Tree], advantages: list[list[np.ndarray]]) -> list[Trajectory]:
    out = []
    for i, (tree, advs) in enumerate(zip(trees, advantages)):
        leaves = tree.leaves()
        if len(advs) != len(leaves):
            raise ValueError(f"advantage estimator returned {len(advs)} arrays for {len(leaves)} leaves")
        for leaf, adv in zip(leaves, advs):
            path = tree.path(leaf)
            ids = [t for n in path for t in tree.nodes[n].token_ids]
            lps = [x for n in path for x in tree.nodes[n].logprobs]
            if len(adv) != len(ids):
                raise ValueError(f"leaf {leaf}: {len(adv)} advantages for {len(ids)} tokens")
            node = tree.nodes[leaf]
            out.append(Trajectory(tree.prompt_ids, ids, lps, np.asarray(adv, dtype=np.float64), node.reward,
                                  node.finish_reason == "length", i))
    return out
