"""t-based intervals and minimum detectable effects for avg@k, covering problems, samples and RL seeds.

Data
----
Per benchmark ``b`` (``m`` benchmarks) a cell matrix ``X_b[s, p]`` (``S`` rows, ``P_b`` problems): the
fraction of problem ``p``'s ``k`` evaluation samples that run (seed) ``s`` got right
(``ibtpo.analysis.results.load_cells``). Every benchmark has the same rows in the same order (a seed is
one RL run, evaluated on every benchmark). The statistic is the mean over benchmarks of the mean over
cells::

    stat = 1/m · Σ_b mean_{s,p} X_b[s, p] = mean_s T_s,   T_s = 1/m · Σ_b mean_p X_b[s, p]

``T_s`` is the per-seed statistic (the seed's score averaged over benchmarks).

Where the noise is
------------------
Think of ``X_b[s, p] = μ_b + a_{b,s} + β_{b,p} + e_{b,s,p}``: a seed effect ``a`` (the RL run; it may be
correlated across benchmarks, since a seed is one run), a problem effect ``β`` (difficulty; problems are
a sample from a population) and a residual ``e`` (seed × problem interaction *and* the k-sample
noise). The k samples need no term of their own: given the run's probability ``π_{s,p}`` of solving
the problem, the cell is a mean of k Bernoulli draws, ``Var(X[s,p] | π) = π(1 − π)/k``, and this
variance is part of ``Var(e)``. It therefore sits inside both estimated terms below (each seed's mean
over problems and each problem's mean over seeds carry it), so the interval covers it. For one
benchmark ``Var(stat) = σ_a²/S + σ_β²/P + σ_e²/(S·P)``.

One method: ``estimate(groups)``
--------------------------------
::

    v_seed = var_s(T_s) / S                                   df S − 1   (absent when S = 1)
    v_prob = 1/m² · Σ_b var_p(c_b[p]) / P_b,  c_b[p] = mean_s X_b[s, p]   df P_b − 1 per benchmark
    V      = v_seed + v_prob

(``var`` = sample variance, ``ddof=1``). ``E[v_seed] = σ_a²/S + σ_e²/(S·P)`` and
``E[v_prob] = σ_β²/P + σ_e²/(S·P)``, so ``V`` counts the residual term ``σ_e²/(S·P)`` twice: it is
*conservative* by that much (in the calibration simulation of ``tests/test_calibration.py``, where the
seed term dominates, the mean standard error of an A/A difference is 0.97 × the true standard
deviation: the excess is smaller than the ``E√V < √E V`` shortfall of a 2-df variance). We keep it
rather than the unbiased two-way ANOVA combination ``(MS_seed + MS_prob − MS_err)/(S·P)``: being
unbiased in the variance, that one underestimates the standard error more, its Satterthwaite df has
a negative coefficient and can fail, and in the same simulation (one Welch df) it gained nothing
(A/A 3.5 % vs 4 %, power at the stated MDE 75 % for both).

Degrees of freedom and the interval
-----------------------------------
The noise comes in two groups, each with its Welch–Satterthwaite df::

    seed group:    V_s = Σ seed terms,     df_s = V_s² / Σ (v_i² / df_i)    (S − 1 for one method)
    problem group: V_p = Σ_b problem parts, df_p = V_p² / Σ_b (w_b² / (P_b − 1))

and the half-width gives each group its own t quantile (Banerjee's conservative rule for a sum of
independent t-type terms: Sankhyā A 22, 1960)::

    h = √( t²_{df_s, 1−α/2} · V_s + t²_{df_p, 1−α/2} · V_p ),   interval = stat ± h

reported as ``stat ± t_{df, 1−α/2} · √V`` with ``df`` the effective df for which ``t_{df, 1−α/2} =
h / √V`` (between ``df_s`` and ``df_p``; exactly ``df_s`` or ``df_p`` when the other group is empty).
With S = 3 seeds the seed term has 2 df (``t_{2, 0.975} = 4.30``, not 1.96): this is what a plain
bootstrap over 3 seeds misses (it also shrinks the seed variance by (S − 1)/S).

Why not one Welch–Satterthwaite df over all the components (the owner's first choice, still there as
``combine="welch"``)? Because the df is then estimated from the same variances it is meant to
protect: when the 2-df seed variance happens to come out small, the df jumps towards ``P − 1`` and the
t quantile shrinks at the very moment the interval is too narrow. In the simulation the one-method
95 % interval covered the mean in 91.5 % of the replicates with one Welch df (liberal), 96.5 % with
the rule above. For a difference of two 3-seed methods one Welch df is calibrated (A/A 4.5 %; the
rule above: 2.8 %, with a 5 % larger MDE); we use one rule for cells and differences, and a
difference trained − base (one seed group with 2 df) is the one-method case again.

A difference A − B: ``estimate_diff(groups_a, groups_b)``
---------------------------------------------------------
The seeds are independent between methods (different runs; S may differ), the problems are paired
(the same problems, in the same order)::

    V = v_seed(A) + v_seed(B) + 1/m² · Σ_b var_p(c^A_b[p] − c^B_b[p]) / P_b

the two seed terms forming the seed group (Welch df between them), the paired problem terms the
problem group. The pairing removes the problem difficulty from the difference; what is left of the
problem term is the problem × method interaction and the residuals of both sides (again counted once
more in the seed terms: conservative).

A paired difference: ``estimate_paired(groups_a, groups_b)``
-----------------------------------------------------------
When both methods ran the same seeds (run ``s`` of A and of B share the base model, the data order and
the rollout seeds), the difference can be analysed seed by seed: the one-method rule on the cells
``X^A − X^B``, seed group ``var_s(T^A_s − T^B_s)/S`` with ``S − 1`` df. It pays when the two runs of one
seed are positively correlated and costs df when they are not (``report.pairing``; see its docstring).

Minimum detectable effect
-------------------------
At power ``1 − β`` (80 %) and two-sided level α (5 %), given the observed variance::

    MDE = (t_{df, 1−α/2} + t_{df, 1−β}) · √V        (df: the effective df above)

the usual t approximation of the effect that the verdict rule (``lo > 0``) would find with that
probability. Its exact power (non-central t with the same df) is 0.77 at df = 2, 0.79 at df = 4 and
0.80 from df ≈ 10 on; in the simulation an effect equal to the mean stated MDE was found in ~75 % of
the replicates (the MDE is itself estimated from 3 seeds a side).

One seed, no seed
-----------------
- ``seeded=False`` (the base model: one fixed model, nothing trained): there is no seed term by
  construction; rows, if several, are treated as more evaluation samples of the same model.
- a trained method with a single run (``seeded=True``, S = 1): the seed term cannot be estimated. The
  interval then holds the problem (and sample) term only, ``seed_term_ok`` is ``False`` and
  ``seed_term`` says ``"not estimable (1 seed)"``; a verdict must not call such a claim supported.
- a benchmark with one problem has no problem variance: the interval is ``nan``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize, stats

POWER = 0.80  # power of the minimum detectable effect


def scheme_text(confidence: float = 0.95, power: float = POWER) -> str:
    """One line for the reports: how the intervals and the MDE are made."""
    c, pw, a = round(100 * confidence), round(100 * power), round(100 * (1 - confidence))
    q = 1 - (1 - confidence) / 2
    return (f"{c}% t-intervals over RL seeds, problems and the k samples: SE² = variance over seeds of the per-seed "
            f"score / n_seeds (each method's seeds independent) + variance over problems of the per-problem score "
            f"(mean over seeds; for A − B the paired difference) / n_problems, for the mean over benchmarks; "
            f"the seed and the problem term each get a t quantile with their Welch–Satterthwaite df (a seed term has "
            f"n_seeds − 1 df), combined by Banerjee's conservative rule (half-width √Σ t²·term); the k samples' "
            f"noise lies inside both terms and the residual is counted in both (conservative). "
            f"MDE = (t_df,{q:g} + t_df,{power:g})·SE with the resulting df: the effect found with {pw}% power at "
            f"two-sided {a}%. A trained method with one seed has no estimable seed term and is flagged; the base "
            f"model has none.")


SCHEME_TEXT = scheme_text()


@dataclass(frozen=True)
class Estimate:
    """The statistic, its interval and where its variance comes from.

    ``terms``: variance components (``seed`` and ``problem`` for one method; ``seed_a``, ``seed_b`` and
    ``problem`` for a difference), in the statistic's units squared; ``term_df`` their degrees of freedom
    (the problem term's is the Satterthwaite df of its per-benchmark parts; ``inf`` for a term that is
    zero by construction or not estimable). ``seed_term``: ``"estimated (S seeds)"``, ``"none (not
    seed-varied)"``, ``"not estimable (1 seed)"`` or ``"dropped"`` (per side, ``"A: …; B: …"`` for a
    difference); ``seed_term_ok`` is False when a seeded side had one seed (or the term was dropped).
    ``df`` is the effective df: ``lo, hi = mean ∓ t_{df, 1−α/2} · se`` (before clipping to ``bounds``), and
    ``mde = (t_{df, 1−α/2} + t_{df, power}) · se``.
    """

    mean: float
    lo: float
    hi: float
    se: float
    df: float
    mde: float
    confidence: float = 0.95
    power: float = POWER
    terms: dict = field(default_factory=dict, compare=False)
    term_df: dict = field(default_factory=dict, compare=False)
    seed_term_ok: bool = True
    seed_term: str = ""

    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def scale(self, factor: float) -> Estimate:
        """The same estimate in other units, e.g. ``scale(100)``: fractions to percentage points."""
        f = float(factor)
        lo, hi = (self.lo * f, self.hi * f) if f >= 0 else (self.hi * f, self.lo * f)
        return Estimate(self.mean * f, lo, hi, self.se * abs(f), self.df, self.mde * abs(f), self.confidence,
                        self.power, {k: v * f * f for k, v in self.terms.items()}, dict(self.term_df),
                        self.seed_term_ok, self.seed_term)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------- pieces


def _as_groups(groups) -> list[np.ndarray]:
    gs = [np.asarray(g, dtype=float) for g in groups]
    if not gs:
        raise ValueError("need at least one benchmark")
    for g in gs:
        if g.ndim != 2 or g.shape[0] < 1 or g.shape[1] < 1:
            raise ValueError(f"each benchmark needs a (n_seeds, n_problems) array, got shape {g.shape}")
    if any(g.shape[0] != gs[0].shape[0] for g in gs):
        raise ValueError("every benchmark must have the same seeds (rows)")
    return gs


def _as_pair(groups_a, groups_b) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Both methods' groups, checked for the same benchmarks and, per benchmark, the same problems."""
    ga, gb = _as_groups(groups_a), _as_groups(groups_b)
    if len(ga) != len(gb):
        raise ValueError("both methods need the same benchmarks")
    for xa, xb in zip(ga, gb):
        if xa.shape[1] != xb.shape[1]:
            raise ValueError("paired difference needs the same problems for both methods")
    return ga, gb


def _var(x: np.ndarray) -> float:
    """Sample variance (ddof=1); ``nan`` for a single value."""
    return float(np.var(x, ddof=1)) if len(x) > 1 else math.nan


def _seed_term(gs: list[np.ndarray], seeded: bool, include: bool) -> tuple[float, float, bool, str]:
    """``(v_seed, df, ok, description)``: ``var_s(T_s) / S`` with ``T_s`` the seed's mean over benchmarks."""
    S = gs[0].shape[0]
    if not seeded:
        return 0.0, math.inf, True, "none (not seed-varied)"
    if not include:
        return 0.0, math.inf, False, "dropped"
    if S == 1:
        return 0.0, math.inf, False, "not estimable (1 seed)"
    per_seed = np.mean([g.mean(axis=1) for g in gs], axis=0)  # T_s
    return _var(per_seed) / S, S - 1.0, True, f"estimated ({S} seeds)"


def _problem_parts(per_problem: list[np.ndarray]) -> list[tuple[float, float]]:
    """Per benchmark ``(var_p(c_b) / (m² P_b), P_b − 1)``; ``c_b`` one value per problem."""
    m = len(per_problem)
    return [(_var(c) / (m * m * len(c)), len(c) - 1.0) for c in per_problem]


def _satterthwaite(parts: list[tuple[float, float]]) -> float:
    """``(Σ v_i)² / Σ v_i²/df_i``; ``inf`` when every part is 0 (or has infinite df)."""
    V = sum(v for v, _ in parts)
    if math.isnan(V):
        return math.nan
    den = sum(v * v / d for v, d in parts if v > 0 and math.isfinite(d))
    return V * V / den if den > 0 else math.inf


def _t(q: float, df: float) -> float:
    return float(stats.t.ppf(q, df))


def _effective_df(ratio: float, q: float, lo: float, hi: float) -> float:
    """The df whose ``t_{df, q}`` equals ``ratio`` (``lo <= df <= hi``; ``inf`` at the normal quantile)."""
    if ratio <= _t(q, math.inf) * (1 + 1e-12):
        return math.inf
    if ratio >= _t(q, lo):
        return lo
    if math.isfinite(hi) and ratio <= _t(q, hi):
        return hi
    top = math.log(hi) if math.isfinite(hi) else math.log(1e9)
    return math.exp(optimize.brentq(lambda x: _t(q, math.exp(x)) - ratio, math.log(lo), top, xtol=1e-10))


def from_terms(mean: float, seed_parts: dict[str, tuple[float, float]], prob: list[tuple[float, float]],
               confidence: float = 0.95, power: float = POWER, ok: bool = True, text: str = "", bounds=None,
               combine: str = "banerjee") -> Estimate:
    """The interval and MDE from variance components: ``seed_parts`` = ``{name: (variance, df)}`` (the
    seed group), ``prob`` = ``[(variance, df), ...]`` one part per benchmark (the problem group). Every
    estimator below ends here, and so does the power planner (``ibtpo.analysis.power``) with the
    components it predicts for a design: one rule for reports and plans."""
    if not 0 < confidence < 1 or not 0 < power < 1:
        raise ValueError("confidence and power must lie in (0, 1)")
    if combine not in ("banerjee", "welch"):
        raise ValueError(f"combine must be 'banerjee' or 'welch', not {combine!r}")
    q = 1 - (1 - confidence) / 2
    seeds = list(seed_parts.values())
    V = sum(v for v, _ in seeds + prob)
    terms = {name: v for name, (v, _) in seed_parts.items()} | {"problem": sum(v for v, _ in prob)}
    term_df = {name: d for name, (_, d) in seed_parts.items()} | {"problem": _satterthwaite(prob)}
    if math.isnan(V):
        return Estimate(float(mean), math.nan, math.nan, math.nan, math.nan, math.nan, confidence, power,
                        terms, term_df, ok, text)
    se = math.sqrt(V)
    if se == 0:
        df, lo, hi, mde = math.inf, mean, mean, 0.0
    else:
        if combine == "welch":
            df = _satterthwaite(seeds + prob)
        else:  # Banerjee: each group its own t quantile, then the df that gives the same half-width
            groups = [(sum(v for v, _ in g), _satterthwaite(g)) for g in (seeds, prob)]
            groups = [(v, d) for v, d in groups if v > 0]
            half = math.sqrt(sum(_t(q, d) ** 2 * v for v, d in groups))
            dfs = [d for _, d in groups]
            df = dfs[0] if len(dfs) == 1 else _effective_df(half / se, q, min(dfs), max(dfs))
        t_a = _t(q, df)
        lo, hi, mde = mean - t_a * se, mean + t_a * se, (t_a + _t(power, df)) * se
    if bounds is not None:  # the statistic's range: clipping the interval keeps its coverage
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Estimate(float(mean), float(lo), float(hi), float(se), float(df), float(mde), confidence, power,
                    terms, term_df, ok, text)


# ------------------------------------------------------------------------------------------ API


def point(groups) -> float:
    """Mean over benchmarks of the mean over cells."""
    return float(np.mean([g.mean() for g in _as_groups(groups)]))


def estimate(groups, confidence: float = 0.95, seeded: bool = True, *, power: float = POWER,
             bounds: tuple[float, float] | None = None, include_seed_term: bool = True,
             combine: str = "banerjee") -> Estimate:
    """Interval and MDE of ``stat`` for one method; ``groups`` = one ``(S, P_b)`` array per benchmark.

    ``seeded``: the rows are RL seeds (False for the base model). ``bounds``: clip ``lo``/``hi`` to the
    statistic's range (e.g. ``(0, 1)`` for accuracy). ``include_seed_term=False`` leaves the seed term
    out: only for the calibration test, which shows the intervals then fail. ``combine="welch"``: one
    Welch–Satterthwaite df over all components instead of Banerjee's rule (see the module docstring).
    """
    gs = _as_groups(groups)
    v, d, ok, text = _seed_term(gs, seeded, include_seed_term)
    prob = _problem_parts([g.mean(axis=0) for g in gs])
    return from_terms(point(gs), {"seed": (v, d)}, prob, confidence, power, ok, text, bounds, combine)


def estimate_diff(groups_a, groups_b, confidence: float = 0.95, seeded_a: bool = True, seeded_b: bool = True, *,
                  power: float = POWER, bounds: tuple[float, float] | None = None,
                  include_seed_term: bool = True, combine: str = "banerjee") -> Estimate:
    """Interval and MDE of ``stat(A) − stat(B)``: seeds independent, problems paired (same columns)."""
    ga, gb = _as_pair(groups_a, groups_b)
    va, da, oka, ta = _seed_term(ga, seeded_a, include_seed_term)
    vb, db, okb, tb = _seed_term(gb, seeded_b, include_seed_term)
    prob = _problem_parts([xa.mean(axis=0) - xb.mean(axis=0) for xa, xb in zip(ga, gb)])
    return from_terms(point(ga) - point(gb), {"seed_a": (va, da), "seed_b": (vb, db)}, prob, confidence, power,
                      oka and okb, f"A: {ta}; B: {tb}", bounds, combine)


def pairable(seeds_a, seeds_b) -> bool:
    """Whether two trained methods' runs can be paired seed by seed: the same seeds (in the same order,
    the order of their cells' rows), at least two."""
    return seeds_a is not None and list(seeds_a) == list(seeds_b or []) and len(seeds_a) > 1


def estimate_paired(groups_a, groups_b, confidence: float = 0.95, *, power: float = POWER,
                    bounds: tuple[float, float] | None = None, include_seed_term: bool = True,
                    combine: str = "banerjee") -> Estimate:
    """Interval and MDE of ``stat(A) − stat(B)`` with **seeds paired**: row ``s`` of A and row ``s`` of B are
    runs with the same RL seed (same base model, data order and rollout seeds), so a seed effect they
    share cancels. The cells of the difference ``D_b[s, p] = X^A_b[s, p] − X^B_b[s, p]`` are one seeded
    method for :func:`estimate`::

        v_seed = var_s(T^A_s − T^B_s) / S        df S − 1
        v_prob = 1/m² · Σ_b var_p(c^A_b[p] − c^B_b[p]) / P_b   (the same problem term as estimate_diff)

    Against :func:`estimate_diff` (``v_seed = var_s(T^A_s)/S + var_s(T^B_s)/S``, Welch df up to 2(S − 1))
    it gains when the paired seed effects are positively correlated (``var(T^A − T^B) = σ_A² + σ_B² −
    2ρσ_Aσ_B``) and loses df when they are not; ``report.pairing`` chooses, and the choice is the
    calibration test's and the measured run's (README)."""
    ga, gb = _as_pair(groups_a, groups_b)
    if ga[0].shape[0] != gb[0].shape[0]:
        raise ValueError(f"paired seeds need the same number of runs on both sides ({ga[0].shape[0]} vs "
                         f"{gb[0].shape[0]})")
    diff = [xa - xb for xa, xb in zip(ga, gb)]
    v, d, ok, text = _seed_term(diff, True, include_seed_term)
    prob = _problem_parts([x.mean(axis=0) for x in diff])
    return from_terms(point(ga) - point(gb), {"seed": (v, d)}, prob, confidence, power, ok,
                      text.replace("estimated", "paired"), bounds, combine)
