"""Power planning: from a finished run's cells, the variance components of a comparison, and the interval
and MDE a design (seeds per method, problems per benchmark, samples per problem) would give.

The model (per benchmark ``b`` and method ``M``; all in accuracy points) is the one behind the report's
intervals (``ibtpo.analysis.intervals``): a cell ``X[s, p]`` = seed effect + problem effect + residual,
the residual holding the seed × problem interaction and the k-sample noise. Estimated from the run:

    σ²_e      = MS_resid of the two-way table X (seeds × problems)          residual per cell
    q         = mean over cells of X(1 − X) / (k − 1)                      its k-sample part (π(1 − π)/k, unbiased)
    σ²_a      = max(0, var_s(T_s) − 1/m² · Σ_b σ²_e,b / P_b)                seed variance of the per-seed score T_s
    σ²_d,b    = max(0, var_p(c^A_b − c^B_b) − σ²_e,A,b/S_A − σ²_e,B,b/S_B)  problem variance of the paired difference

(the base model, one unseeded evaluation, has ``σ²_a = 0`` and only the k-sample residual ``q``). A design
``(S'_A, S'_B, P', k')`` changes the residual to ``σ²_e' = (σ²_e − q) + q·k/k'`` and gives the *expected*
components of the report's estimator, which counts the residual in both terms as the report does::

    v_seed,M = (σ²_a,M + 1/m² · Σ_b σ²_e',M,b / P'_b) / S'_M               df S'_M − 1
    v_prob,b = (σ²_d,b + σ²_e',A,b / S'_A + σ²_e',B,b / S'_B) / (m² P'_b)   df P'_b − 1

With paired seeds (``report.pairing: seeds``) the cells of ``A − B`` are one seeded "method" and the same
formulas apply to them (one seed term of ``var_s(T^A_s − T^B_s)``, which keeps what the two runs of a
seed share out of the interval). The components go through :func:`ibtpo.analysis.intervals.from_terms`,
the report's own rule, so a plan and a report cannot disagree on how an MDE is made.

How sure a plan is: each seed variance comes from ``S − 1`` df (2 with 3 seeds), so the true one may be
several times smaller or larger. :func:`mde_range` draws the seed variances from their scaled
chi-square sampling distribution (``σ² ~ s²·df/χ²_df``) and reports the quantiles of the MDE; the
point prediction is the MDE at the observed variances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .intervals import POWER, Estimate, from_terms


def residual_ms(x: np.ndarray) -> float:
    """The two-way residual mean square of ``x`` (seeds × problems, no replication):
    ``Σ (x − row mean − column mean + grand mean)² / ((S − 1)(P − 1))``; ``nan`` for one row or column."""
    x = np.asarray(x, float)
    S, P = x.shape
    if S < 2 or P < 2:
        return math.nan
    r = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()
    return float((r * r).sum() / ((S - 1) * (P - 1)))


def sampling_var(x: np.ndarray, k: int) -> float:
    """The k-sample part of a cell's variance, ``mean X(1 − X)/(k − 1)`` (unbiased for ``π(1 − π)/k``);
    cells in points (0-100) give points². ``nan`` for k = 1."""
    x = np.asarray(x, float) / 100.0
    return float(np.mean(x * (1 - x)) / (k - 1) * 1e4) if k > 1 else math.nan


@dataclass(frozen=True)
class Side:
    """What the model needs of one side of a comparison (a method, the base model, or the paired difference),
    per benchmark: residual ``e`` and its k-sample part ``q``; and the seed variance ``a`` (0 when unseeded).
    ``seed_df``: the df the seed variance was estimated with (for :func:`mde_range`)."""

    e: tuple[float, ...]
    q: tuple[float, ...]
    a: float
    seeded: bool
    seed_df: float

    def resid(self, k_ratio: float) -> np.ndarray:
        """σ²_e' under ``k' = k / k_ratio`` samples: the interaction stays, the sampling part scales."""
        e, q = np.array(self.e), np.array(self.q)
        return np.maximum(e - q, 0.0) + q * k_ratio


def fit_side(groups: list[np.ndarray], k: int, seeded: bool = True, sampling: float | list | None = None) -> Side:
    """``groups``: one ``(S, P_b)`` array per benchmark, in points. ``sampling`` overrides the k-sample
    part (e.g. a paired difference's is the sum of its two sides')."""
    m = len(groups)
    q = (list(sampling) if isinstance(sampling, (list, tuple)) else [sampling] * m) if sampling is not None \
        else [sampling_var(g, k) for g in groups]
    S = groups[0].shape[0]
    if not seeded or S < 2:
        # one evaluation per row and no seed term: the residual is the k-sample noise alone
        return Side(tuple(q), tuple(q), 0.0, seeded, math.inf)
    e = [residual_ms(g) for g in groups]
    T = np.mean([g.mean(axis=1) for g in groups], axis=0)
    inside = sum(ei / g.shape[1] for ei, g in zip(e, groups)) / m**2
    return Side(tuple(e), tuple(min(qi, ei) for qi, ei in zip(q, e)), max(float(np.var(T, ddof=1)) - inside, 0.0),
                True, S - 1.0)


@dataclass(frozen=True)
class Comparison:
    """The fitted components of ``A − B``: both sides, or (``paired``) the difference as one side ``a``."""

    a: Side
    b: Side | None
    d: tuple[float, ...]      # σ²_d,b: problem variance of the paired difference, per benchmark
    P: tuple[int, ...]        # problems per benchmark in the run
    k: int
    paired: bool
    mean: float               # the run's estimate of the difference (points)


def fit(ga: list[np.ndarray], gb: list[np.ndarray], k: int, seeded_a: bool = True, seeded_b: bool = True,
        paired: bool = False) -> Comparison:
    """Fit the components of ``A − B`` from the run's cells (in points; problems paired, same columns)."""
    ga, gb = [np.asarray(g, float) for g in ga], [np.asarray(g, float) for g in gb]
    P = tuple(g.shape[1] for g in ga)
    mean = float(np.mean([x.mean() for x in ga]) - np.mean([x.mean() for x in gb]))
    if paired:
        if ga[0].shape[0] != gb[0].shape[0]:
            raise ValueError("paired seeds need the same number of runs on both sides")
        diff = [xa - xb for xa, xb in zip(ga, gb)]
        qs = [sampling_var(xa, k) + sampling_var(xb, k) for xa, xb in zip(ga, gb)]
        side = fit_side(diff, k, True, qs)
        S = ga[0].shape[0]
        d = tuple(max(float(np.var(x.mean(axis=0), ddof=1)) - e / S, 0.0) for x, e in zip(diff, side.e))
        return Comparison(side, None, d, P, k, True, mean)
    sa, sb = fit_side(ga, k, seeded_a), fit_side(gb, k, seeded_b)
    Sa, Sb = ga[0].shape[0], gb[0].shape[0]
    d = tuple(max(float(np.var(xa.mean(axis=0) - xb.mean(axis=0), ddof=1)) - ea / Sa - eb / Sb, 0.0)
              for xa, xb, ea, eb in zip(ga, gb, sa.e, sb.e))
    return Comparison(sa, sb, d, P, k, False, mean)


@dataclass(frozen=True)
class Design:
    """Seeds per side (``S_b`` ignored when paired or when B is unseeded), problems per benchmark (a factor
    of the run's), samples per problem."""

    S_a: int
    S_b: int
    P_factor: float = 1.0
    k: int | None = None

    def label(self, run_k: int) -> str:
        return f"S={self.S_a}/{self.S_b}, P×{self.P_factor:g}, k={self.k or run_k}"


def predict(c: Comparison, design: Design, confidence: float = 0.95, power: float = POWER,
            seed_scale: tuple[float, float] = (1.0, 1.0)) -> Estimate:
    """The expected interval (centred on the run's estimate) and MDE of ``A − B`` under ``design``.
    ``seed_scale``: factors on the two sides' seed variances (:func:`mde_range`)."""
    m = len(c.P)
    P = [max(2, int(round(p * design.P_factor))) for p in c.P]
    k_ratio = c.k / (design.k or c.k)

    def seed_part(side: Side, S: int, scale: float) -> tuple[float, float]:
        if not side.seeded:
            return 0.0, math.inf
        inside = sum(e / p for e, p in zip(side.resid(k_ratio), P)) / m**2
        return (scale * side.a + inside) / S, S - 1.0

    if c.paired:
        ea = c.a.resid(k_ratio)
        seeds = {"seed": seed_part(c.a, design.S_a, seed_scale[0])}
        prob = [((d + e / design.S_a) / (m * m * p), p - 1.0) for d, e, p in zip(c.d, ea, P)]
    else:
        S_b = design.S_b if c.b.seeded else 1
        ea, eb = c.a.resid(k_ratio), c.b.resid(k_ratio)
        seeds = {"seed_a": seed_part(c.a, design.S_a, seed_scale[0]), "seed_b": seed_part(c.b, S_b, seed_scale[1])}
        prob = [((d + x / design.S_a + y / S_b) / (m * m * p), p - 1.0) for d, x, y, p in zip(c.d, ea, eb, P)]
    return from_terms(c.mean, seeds, prob, confidence, power)


def mde_range(c: Comparison, design: Design, confidence: float = 0.95, quantiles=(0.1, 0.9), draws: int = 400,
              seed: int = 0) -> tuple[float, float]:
    """Quantiles of the design's MDE over the uncertainty of the run's seed variances: each side's
    ``σ²_a`` scaled by ``df/χ²_df`` (its sampling distribution under a flat prior on the log scale)."""
    rng = np.random.default_rng(seed)
    sides = [c.a] + ([c.b] if c.b is not None else [])
    dfs = [s.seed_df if s.seeded and math.isfinite(s.seed_df) else math.inf for s in sides]
    mdes = []
    for _ in range(draws):
        f = [df / rng.chisquare(df) if math.isfinite(df) else 1.0 for df in dfs] + [1.0]
        mdes.append(predict(c, design, confidence, seed_scale=(f[0], f[1])).mde)
    lo, hi = np.quantile(mdes, quantiles)
    return float(lo), float(hi)


def decisive_mde(effect: float, df: float, confidence: float = 0.95, power: float = POWER) -> float:
    """The MDE at which the interval (``df`` degrees of freedom) is exactly as wide as ``effect``: below it an
    interval cannot hold both 0 and the paper's effect, so the verdict cannot be *inconclusive*.
    ``width = 2·t_{df,1−α/2}·se = effect``  ⇒  ``MDE = (t_{df,1−α/2} + t_{df,power}) · effect / (2·t_{df,1−α/2})``."""
    tq = float(stats.t.ppf(1 - (1 - confidence) / 2, df))
    return (tq + float(stats.t.ppf(power, df))) * effect / (2 * tq)
