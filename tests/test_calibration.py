"""The intervals of ``ibtpo.analysis.intervals``: exact small cases worked out by hand, and a calibration
by simulation through the same interval and verdict code the reports use (A/A comparisons at about
the nominal 5 %, a true effect of the stated MDE found at about the stated power, and the failure of
the intervals once the seed term is dropped). Expected values come from the formulas, written out
here, or from scipy's own t procedures, never from the code under test."""

import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

from ibtpo.analysis.verdicts import INCONCLUSIVE, SUPPORTED, verdict
from ibtpo.analysis.intervals import POWER, SCHEME_TEXT, estimate, estimate_diff


# ------------------------------------------------------------------------------ exact small cases
def test_constant_data_is_a_point():
    e = estimate([np.full((3, 50), 0.25)])
    assert e.mean == e.lo == e.hi == 0.25 and e.se == 0 and e.mde == 0 and e.seed_term_ok
    d = estimate_diff([np.full((3, 50), 0.5)], [np.full((2, 50), 0.25)])
    assert d.mean == d.lo == d.hi == 0.25 and d.se == 0


def test_two_seeds_three_problems_by_hand():
    # k = 4: seed 0 solved 4/4, 2/4, 0/4 of the samples; seed 1 2/4, 2/4, 1/4
    X = np.array([[1.0, 0.5, 0.0], [0.5, 0.5, 0.25]])
    # per-seed means T = (1/2, 5/12); var_s = (1/12)^2 / 2 = 1/288; v_seed = 1/288 / S = 1/576, df 1
    # per-problem means c = (3/4, 1/2, 1/8), mean 11/24, deviations (7, 1, -8)/24:
    # var_p = (49 + 1 + 64)/576 / 2 = 57/576; v_prob = 57/576 / P = 19/576, df 2
    v_seed, v_prob = 1 / 576, 19 / 576
    V = v_seed + v_prob                                  # 20/576 = 5/144, se = sqrt(5)/12
    se = math.sqrt(5) / 12
    assert V == pytest.approx(5 / 144)
    t = scipy.stats.t.ppf
    # Banerjee: each group its own quantile, h = sqrt(t_{1}^2 v_seed + t_{2}^2 v_prob) = 0.944
    half = math.sqrt(t(0.975, 1) ** 2 * v_seed + t(0.975, 2) ** 2 * v_prob)
    assert half == pytest.approx(math.sqrt(12.7062 ** 2 + 19 * 4.30265 ** 2) / 24, rel=1e-5)
    e = estimate([X])
    assert e.mean == pytest.approx(11 / 24) and e.se == pytest.approx(se)
    assert e.lo == pytest.approx(11 / 24 - half) and e.hi == pytest.approx(11 / 24 + half)
    # the reported df is the one whose t quantile gives that half-width, between the groups' df 1 and 2
    assert 1 < e.df < 2 and t(0.975, e.df) == pytest.approx(half / se)
    assert e.mde == pytest.approx((half / se + t(0.80, e.df)) * se)
    assert e.terms == pytest.approx({"seed": 1 / 576, "problem": 19 / 576})
    assert e.term_df == {"seed": 1.0, "problem": 2.0} and e.seed_term == "estimated (2 seeds)"
    # one Welch–Satterthwaite df instead: df = V^2 / (v_seed^2/1 + v_prob^2/2) = 400 / (1 + 361/2) = 800/363
    w = estimate([X], combine="welch")
    assert w.df == pytest.approx(800 / 363) and w.hi == pytest.approx(11 / 24 + t(0.975, 800 / 363) * se)
    assert w.mde == pytest.approx((t(0.975, 800 / 363) + t(0.80, 800 / 363)) * se)
    # in percentage points: everything linear scales by 100, variances by 100^2, df unchanged
    p = e.scale(100)
    assert (p.mean, p.lo, p.hi, p.mde) == pytest.approx((100 * e.mean, 100 * e.lo, 100 * e.hi, 100 * e.mde))
    assert p.terms["problem"] == pytest.approx(1e4 * 19 / 576) and p.df == e.df
    assert p.excludes_zero() == e.excludes_zero()


def test_one_seed_trained_method_is_flagged_and_the_base_model_has_no_seed_term():
    rng = np.random.default_rng(0)
    x = rng.binomial(4, 0.3, size=120) / 4
    ref = scipy.stats.ttest_1samp(x, 0.0).confidence_interval(0.95)  # one-sample t over problems, df P - 1
    one = estimate([x[None, :]])
    base = estimate([x[None, :]], seeded=False)
    for e in (one, base):
        assert e.lo == pytest.approx(ref.low) and e.hi == pytest.approx(ref.high) and e.df == pytest.approx(119)
    assert not one.seed_term_ok and one.seed_term == "not estimable (1 seed)"
    assert base.seed_term_ok and base.seed_term == "none (not seed-varied)"
    trained = rng.binomial(4, 0.4, size=(3, 120)) / 4
    assert estimate_diff([trained], [x[None, :]], seeded_b=False).seed_term_ok          # trained − base
    assert not estimate_diff([trained], [x[None, :]]).seed_term_ok                     # B: one RL run
    assert estimate_diff([trained], [x[None, :]], seeded_b=False).terms["seed_b"] == 0


def test_paired_constant_shift_has_no_problem_term():
    rng = np.random.default_rng(1)
    a = rng.random((3, 80))
    b = rng.random((3, 80))
    d = estimate_diff([a + 0.1], [a])
    assert d.mean == pytest.approx(0.1) and d.terms["problem"] == pytest.approx(0.0, abs=1e-25)
    # seeds are independent runs: both seed terms stay, each var_s(seed means) / 3
    assert d.terms["seed_a"] == pytest.approx(np.var(a.mean(1), ddof=1) / 3) == d.terms["seed_b"]
    one = estimate_diff([a[:1] + 0.1], [a[:1]], seeded_a=False, seeded_b=False)
    assert one.lo == pytest.approx(0.1) and one.hi == pytest.approx(0.1)
    assert estimate_diff([b], [a]).terms["problem"] > 0


def test_difference_of_seed_only_data_is_welchs_t():
    # every problem scores the same within a seed: the problem term vanishes and the interval is Welch's
    # two-sample t interval over the per-seed means (scipy), with its Welch–Satterthwaite df
    ta, tb = np.array([0.42, 0.47, 0.40]), np.array([0.35, 0.41, 0.30, 0.37])
    A, B = np.repeat(ta[:, None], 25, axis=1), np.repeat(tb[:, None], 25, axis=1)
    res = scipy.stats.ttest_ind(ta, tb, equal_var=False)
    ci = res.confidence_interval(0.95)
    d = estimate_diff([A], [B])
    assert d.df == pytest.approx(res.df) and d.lo == pytest.approx(ci.low) and d.hi == pytest.approx(ci.high)


def test_several_benchmarks_seed_term_uses_the_per_seed_average():
    # seed 0 is 0.1 better on x and 0.1 worse on y than seed 1: its average over benchmarks is the same
    x = np.array([[0.6] * 10, [0.5] * 10])
    y = np.array([[0.2] * 5, [0.3] * 5])
    e = estimate([x, y])
    assert e.mean == pytest.approx(0.4) and e.terms["seed"] == pytest.approx(0, abs=1e-20)
    # the same effect on both benchmarks: T = (0.45, 0.35), v_seed = 0.005 / 2
    e2 = estimate([x, y[::-1]])
    assert e2.terms["seed"] == pytest.approx(0.005 / 2) and e2.df == pytest.approx(1)


def test_bounds_errors_and_the_report_line():
    e = estimate([np.array([[0.0, 0.1], [1.0, 0.9]])], bounds=(0, 1))
    assert e.lo == 0.0 and e.hi == 1.0
    assert math.isnan(estimate([np.array([[0.5], [0.7]])]).lo)  # one problem: no problem variance
    with pytest.raises(ValueError, match="same seeds"):
        estimate([np.zeros((3, 4)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="same problems"):
        estimate_diff([np.zeros((3, 4))], [np.zeros((3, 5))])
    assert "Welch–Satterthwaite" in SCHEME_TEXT and "seed" in SCHEME_TEXT and "MDE" in SCHEME_TEXT


# ------------------------------------------------------------------------------------ simulator
# Like the real data: per benchmark P problems whose difficulty is spread on the logit scale (median
# problem solved 3 %, 18 %, 50 % of the time by the base-like policy), RL seed effects on the logit scale
# (a seed is one run: half its effect is shared across benchmarks), a problem × seed interaction, and
# k = 4 binomial samples per cell; S = 3 seeds per method, independent between methods.
LOGIT_MEANS = (-3.5, -1.5, 0.0)
DIFF_SD, SEED_SD, SEED_SHARED, INTER_SD = 1.5, 0.25, 0.5, 0.3
S, P, K, R = 3, 200, 4, 1500


def _probabilities(rng, reps=R):
    """Per benchmark ``(pA, pB)``, each ``(reps, S, P)``: run s's probability of solving problem p."""
    common = {m: rng.standard_normal((reps, S, 1)) for m in "AB"}
    out = []
    for mu in LOGIT_MEANS:
        theta = mu + DIFF_SD * rng.standard_normal((reps, 1, P))  # the same problems for both methods
        pair = []
        for m in "AB":
            seed = SEED_SD * (math.sqrt(SEED_SHARED) * common[m]
                              + math.sqrt(1 - SEED_SHARED) * rng.standard_normal((reps, S, 1)))
            pair.append(scipy.special.expit(theta + seed + INTER_SD * rng.standard_normal((reps, S, P))))
        out.append(tuple(pair))
    return out


def _shifted(pa, shift):
    return np.clip(pa + shift, 0.0, 1.0)


def _samples(rng, probs, shift=0.0):
    """Cell matrices: the fraction of k samples right; method A's probabilities raised by ``shift``."""
    return ([rng.binomial(K, _shifted(pa, shift)) / K for pa, _ in probs],
            [rng.binomial(K, pb) / K for _, pb in probs])


def _true_effect(probs, shift):
    """The accuracy gain the shift gives A, averaged over benchmarks (clipping at 1 costs a little)."""
    return float(np.mean([(_shifted(pa, shift) - pa).mean() for pa, _ in probs]))


def _diffs(XA, XB, **kw):
    """What the claims report does: the paired difference in accuracy points, one per replicate."""
    return [estimate_diff([x[r] for x in XA], [x[r] for x in XB], **kw).scale(100) for r in range(XA[0].shape[0])]


def _false_rate(ests):
    return float(np.mean([verdict(e.lo, e.hi, "greater") != INCONCLUSIVE for e in ests]))


@pytest.fixture(scope="module")
def aa():
    rng = np.random.default_rng(20240611)
    probs = _probabilities(rng)
    XA, XB = _samples(rng, probs)
    return XA, XB, _diffs(XA, XB)


def test_aa_comparisons_reach_a_verdict_at_most_at_the_nominal_rate(aa):
    XA, XB, ests = aa
    rate = _false_rate(ests)                      # 'supported' or 'not supported' for identical methods
    print(f"A/A false-verdict rate {rate:.4f} over {R} replicates")
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / R)   # ≤ 0.067 at R = 1500
    assert rate >= 0.01                                     # and not absurdly wide
    # the stated standard error matches the spread of the estimate (a little conservative, by design)
    spread = np.std([e.mean for e in ests], ddof=1)
    ratio = np.mean([e.se for e in ests]) / spread
    print(f"mean SE / sd of the difference {ratio:.3f}")
    assert 0.9 < ratio < 1.3


def test_dropping_the_seed_term_breaks_calibration(aa):
    XA, XB, _ = aa
    rate = _false_rate(_diffs(XA, XB, include_seed_term=False))
    print(f"A/A false-verdict rate without the seed term {rate:.4f}")
    assert rate > 0.10


def test_an_effect_of_the_stated_mde_is_found_at_the_stated_power(aa):
    _, _, ests = aa
    mde = float(np.mean([e.mde for e in ests])) / 100           # what the A/A runs said they could detect
    rng = np.random.default_rng(7)
    probs = _probabilities(rng)
    shift = scipy.optimize.brentq(lambda s: _true_effect(probs, s) - mde, mde, 2 * mde, xtol=1e-6)
    assert _true_effect(probs, shift) == pytest.approx(mde, rel=1e-4)
    XA, XB = _samples(rng, probs, shift)
    power = float(np.mean([verdict(e.lo, e.hi, "greater") == SUPPORTED for e in _diffs(XA, XB)]))
    print(f"mean stated MDE {100 * mde:.2f} points, detected at {power:.4f} (nominal {POWER})")
    assert 0.65 <= power <= 0.93


def test_one_method_interval_covers_the_population_mean(aa):
    XA, _, _ = aa
    # the population mean of A's accuracy: E expit(mu + tau Z), tau² = difficulty + seed + interaction
    # variances (all normal on the logit scale), by Gauss–Hermite quadrature
    z, w = np.polynomial.hermite_e.hermegauss(80)
    tau = math.sqrt(DIFF_SD ** 2 + SEED_SD ** 2 + INTER_SD ** 2)
    truth = np.mean([np.sum(w * scipy.special.expit(mu + tau * z)) / math.sqrt(2 * math.pi) for mu in LOGIT_MEANS])
    cover = np.mean([(e := estimate([x[r] for x in XA])).lo <= truth <= e.hi for r in range(R)])
    print(f"coverage of one method's 95% interval {cover:.4f}")
    assert cover >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / R)
    # (one Welch–Satterthwaite df over all the components covered 91.5 % here: see the module docstring)


# ------------------------------------------------------------------ the decisive design (issue 21)
# More seeds where the variance is, and the option of pairing them: run s of A and run s of B share the
# base, the data order and the rollout seeds, so their seed effects (and seed × problem interactions) may
# be correlated (rho). The paired analysis must stay calibrated whatever rho is, and pay when rho > 0.
S8, R8 = 8, 1000


def _paired_probabilities(rng, rho, S=S8, reps=R8):
    """Like ``_probabilities`` with ``S`` seeds per method, B's seed effects and interactions correlated
    with A's at the same seed index (correlation ``rho``)."""
    def corr(x):
        return rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal(x.shape)

    common_a = rng.standard_normal((reps, S, 1))
    common_b = corr(common_a)
    out = []
    for mu in LOGIT_MEANS:
        theta = mu + DIFF_SD * rng.standard_normal((reps, 1, P))
        own_a = rng.standard_normal((reps, S, 1))
        inter_a = rng.standard_normal((reps, S, P))
        pair = []
        for common, own, inter in ((common_a, own_a, inter_a), (common_b, corr(own_a), corr(inter_a))):
            seed = SEED_SD * (math.sqrt(SEED_SHARED) * common + math.sqrt(1 - SEED_SHARED) * own)
            pair.append(scipy.special.expit(theta + seed + INTER_SD * inter))
        out.append(tuple(pair))
    return out


def _verdicts(ests, reported=None):
    return [verdict(e.lo, e.hi, "greater", reported=reported) for e in ests]


@pytest.mark.parametrize("rho", [0.0, 0.7])
def test_paired_seeds_are_calibrated_and_pay_when_seeds_correlate(rho):
    from ibtpo.analysis.intervals import estimate_paired

    rng = np.random.default_rng(11 + int(10 * rho))
    XA, XB = _samples(rng, _paired_probabilities(rng, rho))
    paired = [estimate_paired([x[r] for x in XA], [x[r] for x in XB]).scale(100) for r in range(R8)]
    indep = _diffs(XA, XB)
    rate = _false_rate(paired)
    print(f"rho {rho}: paired A/A false-verdict rate {rate:.4f}, independent {_false_rate(indep):.4f}; mean MDE "
          f"paired {np.mean([e.mde for e in paired]):.2f} vs independent {np.mean([e.mde for e in indep]):.2f}")
    assert 0.01 <= rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / R8)
    if rho > 0:  # the shared seed effect cancels: a smaller MDE than the independent analysis
        assert np.mean([e.mde for e in paired]) < 0.85 * np.mean([e.mde for e in indep])
    # the paired seed term is what keeps it calibrated
    dropped = [estimate_paired([x[r] for x in XA], [x[r] for x in XB], include_seed_term=False).scale(100)
               for r in range(R8)]
    print(f"rho {rho}: paired, without the seed term {_false_rate(dropped):.4f}")
    assert _false_rate(dropped) > 0.10


def test_eight_seeds_detect_their_stated_mde_and_fail_without_the_seed_term():
    rng = np.random.default_rng(21)
    probs = _paired_probabilities(rng, 0.0)
    XA, XB = _samples(rng, probs)
    ests = _diffs(XA, XB)
    rate, dropped = _false_rate(ests), _false_rate(_diffs(XA, XB, include_seed_term=False))
    print(f"8 seeds a side: A/A false-verdict rate {rate:.4f}, {dropped:.4f} without the seed term")
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / R8)
    assert dropped > 0.10
    mde = float(np.mean([e.mde for e in ests])) / 100
    shift = scipy.optimize.brentq(lambda s: _true_effect(probs, s) - mde, mde, 2 * mde, xtol=1e-6)
    XA, XB = _samples(rng, probs, shift)
    power = float(np.mean([v == SUPPORTED for v in _verdicts(_diffs(XA, XB))]))
    print(f"8 seeds a side: mean stated MDE {100 * mde:.2f} points, detected at {power:.4f}")
    assert 0.65 <= power <= 0.93


def test_smaller_than_reported_appears_at_most_at_the_nominal_rate_when_the_paper_is_right():
    """True effect = the paper's E: 'smaller than reported' (upper end below E) is a false verdict. Per
    comparison at most (1 − 0.95)/2; for a claim judged twice (equal steps, equal tokens: here a second
    evaluation of the same runs) at most 5%."""
    from ibtpo.analysis.verdicts import SMALLER, combine

    rng = np.random.default_rng(31)
    probs = _paired_probabilities(rng, 0.0)
    E = 2.0 / 100  # any E: the false rate is the upper tail of the interval around the true effect
    shift = scipy.optimize.brentq(lambda s: _true_effect(probs, s) - E, E, 2 * E, xtol=1e-7)
    steps = _diffs(*_samples(rng, probs, shift))
    tokens = _diffs(*_samples(rng, probs, shift))   # the same runs evaluated again: correlated through seeds
    one = np.mean([SMALLER in v for v in _verdicts(steps, reported=100 * E)])
    claim = np.mean([SMALLER in combine([a, b]) for a, b in
                     zip(_verdicts(steps, reported=100 * E), _verdicts(tokens, reported=100 * E))])
    print(f"true effect = the paper's: 'smaller than reported' per comparison {one:.4f}, per claim {claim:.4f}")
    assert one <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / R8)
    assert claim <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / R8)
    # without the seed term the intervals are too narrow and the verdict fires far too often
    narrow = _diffs(*_samples(rng, probs, shift), include_seed_term=False)
    rate = np.mean([SMALLER in v for v in _verdicts(narrow, reported=100 * E)])
    print(f"... without the seed term: {rate:.4f} per comparison")
    assert rate > 0.06


def test_the_planner_predicts_the_mde_of_eight_seeds_from_three():
    """Fit each 3-seed replicate's components (ibtpo.analysis.power), predict 8 seeds a side; the realised
    8-seed MDEs (the report's estimator on fresh 8-seed runs of the same populations) agree with the
    predictions to 25% (median over replicates), and the predicted 80% range covers most of them."""
    from ibtpo.analysis.power import Design, fit, mde_range, predict

    rng = np.random.default_rng(41)
    reps = 300
    probs = _paired_probabilities(rng, 0.0, S=S8, reps=reps)
    XA, XB = _samples(rng, probs)
    pred, no_seed, realised, covered = [], [], [], 0
    for r in range(reps):
        small_a, small_b = [100 * x[r][:3] for x in XA], [100 * x[r][:3] for x in XB]  # the 3-seed run
        c = fit(small_a, small_b, K)
        pred.append(predict(c, Design(S8, S8)).mde)
        # a planner that forgets the seed variance (the seed term then holds only the residual)
        no_seed.append(predict(replace(c, a=replace(c.a, a=0.0), b=replace(c.b, a=0.0)), Design(S8, S8)).mde)
        real = estimate_diff([x[r] for x in XA], [x[r] for x in XB]).scale(100).mde
        realised.append(real)
        if r < 60:
            lo, hi = mde_range(c, Design(S8, S8), draws=200, seed=r)
            covered += lo <= real <= hi
    ratio = float(np.median(np.array(realised) / np.array(pred)))
    print(f"realised / predicted 8-seed MDE: median {ratio:.3f}; predicted {np.median(pred):.2f}, realised "
          f"{np.median(realised):.2f}; 80% range covered {covered}/60")
    assert 0.75 <= ratio <= 1.25
    assert covered >= 0.6 * 60
    assert np.median(np.array(realised) / np.array(no_seed)) > 1.25  # the check fails such a planner
