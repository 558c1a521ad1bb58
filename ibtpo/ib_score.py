"""IB-Score: a node's balance of exploration and exploitation (METHOD.md §2).

For a non-leaf node ``p`` with current children ``s^1 .. s^B`` (B = its number of children)::

    IB-Score(p) = (1 + beta) / B * sum_b eta1(s^b) * eta2(s^b)
    eta1(s)     = p_hat(a*|s) / p_hat(a*|p) - (1 + 1/beta)      information gain from feedback
    eta2(s)     = pi(s)                                         the policy's confidence in s

Since ``E[p_hat(s)/p_hat(p)] = 1``, ``mean(eta1*eta2) = Cov(eta1, eta2) - mean(eta2)/beta``: a
covariance (exploitation) term plus a collision (exploration) term; ``cov_eta`` returns the first
(population covariance over the children).

The IB parameters are one value, :class:`IBParams`, shared by IBTree's node selection, the IB-TPO
advantage, the IB-Score probe, ``score-tree`` and the benchmarks; its defaults are written here
only. Choices the paper leaves open (config switches, defaults from METHOD.md §1-§2):

- ``pi_mode`` — how ``pi(s)`` is normalised: ``length_norm`` (default, decided in METHOD.md §1):
  ``exp(mean token log-prob of s)``, a per-token confidence in (0, 1], not renormalised;
  ``sibling``: the same renormalised over the children of ``p`` (sums to 1; then ``mean(eta2) =
  1/B`` whatever the policy and a single-child node always scores ``-(1+beta)/beta``, so IBTree
  forks at the root: METHOD.md "Why not sibling"); ``raw``: ``exp(sum of token log-probs)``.
- ``zero_parent`` — ``p_hat(p) = 0`` (no correct leaf below ``p``): ``ratio`` (default) sets the
  ratio ``p_hat(s)/p_hat(p) := 1``; ``laplace`` uses ``(c + 1)/(n + 2)`` for both values, always.
- ``beta`` = 5 (reported).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .rollout.tree import Tree

PI_MODES = ("length_norm", "sibling", "raw")
ZERO_PARENT = ("ratio", "laplace")


@dataclass(frozen=True)
class IBParams:
    """The IB parameters of a method, the probe or a tool (config: ``method_defs.<m>.ib``, ``probe.ib``)."""

    beta: float = 5.0
    pi_mode: str = "length_norm"
    zero_parent: str = "ratio"

    def __post_init__(self):
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta > 0:
            raise ValueError(f"ib.beta must be a number > 0 (got {self.beta!r}; the paper uses 5)")
        if self.pi_mode not in PI_MODES:
            raise ValueError(f"ib.pi_mode: {self.pi_mode!r}; allowed: {list(PI_MODES)}")
        if self.zero_parent not in ZERO_PARENT:
            raise ValueError(f"ib.zero_parent: {self.zero_parent!r}; allowed: {list(ZERO_PARENT)}")

    @classmethod
    def of(cls, value: "IBParams | dict | None") -> "IBParams":
        """An ``IBParams`` from itself, a config mapping (missing keys take the defaults) or None."""
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ValueError(f"ib must be a mapping of {list(cls.__dataclass_fields__)} (got {value!r})")
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"ib: unknown key(s) {unknown}; allowed: {list(cls.__dataclass_fields__)}")
        return cls(**value)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def offset(self) -> float:
        """``1 + 1/beta``, subtracted from the value ratio in eta1 and A_IB."""
        return 1 + 1 / self.beta


def child_pi(tree: Tree, parent: int, pi_mode: str = IBParams.pi_mode) -> np.ndarray:
    """``pi(s)`` for each child ``s`` of ``parent``, in ``children`` order."""
    kids = [tree.nodes[c] for c in tree.nodes[parent].children]
    if pi_mode == "raw":
        return np.array([math.exp(k.logprob_sum) for k in kids])
    per = np.array([math.exp(k.logprob_mean) for k in kids])
    if pi_mode == "length_norm":
        return per
    if pi_mode == "sibling":
        return per / per.sum() if per.sum() > 0 else np.full(len(kids), 1 / len(kids))
    raise ValueError(f"unknown pi_mode {pi_mode!r}; allowed: {list(PI_MODES)}")


def value_ratio(tree: Tree, node: int, parent: int, zero_parent: str = IBParams.zero_parent) -> float:
    """``p_hat(node) / p_hat(parent)`` with the zero-parent rule."""
    n, p = tree.nodes[node], tree.nodes[parent]
    if zero_parent == "laplace":
        return ((n.n_correct + 1) / (n.n_leaves + 2)) / ((p.n_correct + 1) / (p.n_leaves + 2))
    if zero_parent != "ratio":
        raise ValueError(f"unknown zero_parent rule {zero_parent!r}; allowed: {list(ZERO_PARENT)}")
    vp = tree.p_hat(parent)
    return 1.0 if vp == 0 else tree.p_hat(node) / vp


def etas(tree: Tree, parent: int, ib: IBParams = IBParams()):
    """``(eta1, eta2)`` arrays over the children of ``parent``."""
    kids = tree.nodes[parent].children
    eta1 = np.array([value_ratio(tree, c, parent, ib.zero_parent) for c in kids]) - ib.offset
    return eta1, child_pi(tree, parent, ib.pi_mode)


def ib_score(tree: Tree, parent: int, ib: IBParams = IBParams()) -> float:
    e1, e2 = etas(tree, parent, ib)
    if len(e1) == 0:
        raise ValueError(f"node {parent} has no children: IB-Score is defined for non-leaf nodes only")
    return float((1 + ib.beta) * np.mean(e1 * e2))


def cov_eta(tree: Tree, parent: int, ib: IBParams = IBParams()) -> float:
    """Population covariance ``mean(eta1*eta2) - mean(eta1)*mean(eta2)`` over the children."""
    e1, e2 = etas(tree, parent, ib)
    return float(np.mean(e1 * e2) - e1.mean() * e2.mean()) if len(e1) else 0.0


def non_leaf_nodes(tree: Tree) -> list[int]:
    return [n.id for n in tree.nodes if n.children]
