"""Bootstrap confidence intervals over problems × seeds (percentile method).

Data: per benchmark an array ``X[s, p]`` — the score of run (seed) ``s`` on problem ``p`` (e.g. the
fraction of a problem's k samples that are correct). The statistic is the mean over benchmarks of
the mean over cells::

    stat(X_1..X_m) = 1/m * sum_b mean_{s,p} X_b[s, p]

One bootstrap resample draws the seeds with replacement (shared by all benchmarks: a seed is one
training run, evaluated on every benchmark) and, independently per benchmark, the problems with
replacement. The CI is the ``(1±confidence)/2`` percentiles of the resampled statistic.

A difference ``A − B`` (e.g. IB-TPO − GRPO) resamples each method's seeds independently (different
runs) and the problems *jointly* (both methods answered the same problems: paired by problem id).
With one seed the seed draw is the identity, so a single run's interval reflects problem sampling
only (the tables say how many seeds a row has).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float

    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


def _seed_means(X: np.ndarray, prob_idx: np.ndarray) -> np.ndarray:
    """``out[s, r]`` = mean over the resampled problems ``prob_idx[r]`` of run s."""
    return X[:, prob_idx].mean(axis=2)


def _resample_stat(groups: list[np.ndarray], rng: np.random.Generator, n: int, prob_idx=None, seed_idx=None):
    n_seeds = groups[0].shape[0]
    if any(g.shape[0] != n_seeds for g in groups):
        raise ValueError("every benchmark must have the same seeds (rows)")
    if seed_idx is None:
        seed_idx = rng.integers(0, n_seeds, size=(n, n_seeds)) if n_seeds > 1 else np.zeros((n, 1), dtype=int)
    if prob_idx is None:
        prob_idx = [rng.integers(0, g.shape[1], size=(n, g.shape[1])) for g in groups]
    stats = np.zeros(n)
    for g, pidx in zip(groups, prob_idx):
        per_seed = _seed_means(np.asarray(g, dtype=float), pidx)  # (S, n)
        stats += np.take_along_axis(per_seed.T, seed_idx, axis=1).mean(axis=1)
    return stats / len(groups)


def point(groups: list[np.ndarray]) -> float:
    return float(np.mean([np.asarray(g, dtype=float).mean() for g in groups]))


def _interval(est: float, stats: np.ndarray, confidence: float) -> Interval:
    a = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return Interval(est, float(lo), float(hi))


def bootstrap_mean(groups: list[np.ndarray], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """CI of ``stat`` for one method; ``groups`` = one ``(n_seeds, n_problems)`` array per benchmark."""
    rng = np.random.default_rng(seed)
    return _interval(point(groups), _resample_stat(groups, rng, n_resamples), confidence)


def bootstrap_diff(groups_a: list[np.ndarray], groups_b: list[np.ndarray], n_resamples: int = 2000,
                   confidence: float = 0.95, seed: int = 0) -> Interval:
    """CI of ``stat(A) − stat(B)``; problems paired (same columns), seeds independent."""
    for ga, gb in zip(groups_a, groups_b, strict=True):
        if ga.shape[1] != gb.shape[1]:
            raise ValueError("paired difference needs the same problems for both methods")
    rng = np.random.default_rng(seed)
    prob_idx = [rng.integers(0, g.shape[1], size=(n_resamples, g.shape[1])) for g in groups_a]
    sa = _resample_stat(groups_a, rng, n_resamples, prob_idx=prob_idx)
    sb = _resample_stat(groups_b, rng, n_resamples, prob_idx=prob_idx)
    return _interval(point(groups_a) - point(groups_b), sa - sb, confidence)
