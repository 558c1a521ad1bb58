"""The verdict rule of the claims report: a claim, its reproduced interval, and what follows.

Every claim is stated as a quantity with a direction, and the evidence is a confidence interval
``[lo, hi]`` (t-intervals over RL seeds, problems and samples, ``ibtpo.analysis.intervals``; a token
ratio: bootstrap over problems). The rule, fixed before looking at any number and
printed in the report:

- ``greater`` (e.g. "IB-TPO beats GRPO": the difference is > 0):
  supported if ``lo > 0``; not supported if ``hi < 0``; inconclusive if the CI contains 0.
  When the paper reports the effect's size ``E`` (e.g. +2.9 points) and ``hi < E``, the run rules the
  paper's effect out: *smaller than reported* (in place of inconclusive; "supported, smaller than
  reported" when ``lo > 0`` too; a CI below 0 stays "not supported"). A true effect of ``E`` is called
  smaller than reported with probability (1 − confidence)/2 per comparison, 5% at most for a claim
  judged at equal steps and equal tokens (calibration test).
- ``not_greater`` (e.g. "clip-higher does not beat GRPO"): a claim of no improvement cannot be
  shown by a CI that merely contains 0, so it is tested against a practical margin ``m`` (our
  choice, 1 accuracy point): supported if ``hi <= m`` (the data rule out a gain above ``m``); not
  supported if ``lo > 0`` (a significant gain); inconclusive otherwise.
- ``within [a, b]`` (e.g. "about equal tokens": the ratio lies in [0.95, 1.05]): supported if the
  CI lies inside ``[a, b]``; not supported if it lies entirely outside; inconclusive otherwise.
- ``all_of``: a conjunction of sub-claims is supported if all are, not supported if any is not,
  inconclusive otherwise; smaller than reported if any comparison rules the paper's effect out (and
  none is not supported). An accuracy comparison whose methods generated different numbers of tokens
  is judged at equal optimizer steps *and* at equal generated tokens, and combined this way.
- a trained method with a single seed has no estimable seed term: its comparisons are at most
  inconclusive.
- no evidence at this preset (the method or table was not run): ``not measured at this preset``.
"""

from __future__ import annotations

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED = (
    "supported", "not supported", "inconclusive", "not measured at this preset")
SMALLER = "smaller than reported"
SUPPORTED_SMALLER = f"{SUPPORTED}, {SMALLER}"

RULE_TEXT = __doc__.split("printed in the report:\n\n", 1)[1].strip()


def _split(v: str) -> tuple[str, bool]:
    """A verdict as ``(direction verdict, rules the paper's effect out)``."""
    if v == SMALLER:
        return INCONCLUSIVE, True
    if v == SUPPORTED_SMALLER:
        return SUPPORTED, True
    return v, False


def _join(sign: str, smaller: bool) -> str:
    if not smaller or sign in (NOT_SUPPORTED, NOT_MEASURED):
        return sign
    return SUPPORTED_SMALLER if sign == SUPPORTED else SMALLER


def verdict(lo: float | None, hi: float | None, direction: str = "greater", margin: float = 0.0,
            bounds: tuple[float, float] | None = None, reported: float | None = None) -> str:
    """The rule above for one interval. ``reported``: the paper's effect ``E`` of a ``greater`` claim
    (same units as the interval); ``hi < E`` adds *smaller than reported*."""
    if lo is None or hi is None:
        return NOT_MEASURED
    if lo > hi:
        raise ValueError(f"interval [{lo}, {hi}] is empty")
    if direction == "greater":
        sign = SUPPORTED if lo > margin else NOT_SUPPORTED if hi < margin else INCONCLUSIVE
        return _join(sign, reported is not None and hi < reported)
    if direction == "not_greater":
        return SUPPORTED if hi <= margin else NOT_SUPPORTED if lo > 0 else INCONCLUSIVE
    if direction == "within":
        if bounds is None:
            raise ValueError("direction 'within' needs bounds (a, b)")
        a, b = bounds
        if a <= lo and hi <= b:
            return SUPPORTED
        return NOT_SUPPORTED if hi < a or lo > b else INCONCLUSIVE
    raise ValueError(f"unknown direction {direction!r}; allowed: greater, not_greater, within")


def combine(verdicts: list[str]) -> str:
    """``all_of``: every sub-claim must hold; any comparison that rules the paper's effect out says so."""
    if not verdicts or any(v == NOT_MEASURED for v in verdicts):
        return NOT_MEASURED
    parts = [_split(v) for v in verdicts]
    signs = [s for s, _ in parts]
    if NOT_SUPPORTED in signs:
        return NOT_SUPPORTED
    sign = SUPPORTED if all(s == SUPPORTED for s in signs) else INCONCLUSIVE
    return _join(sign, any(sm for _, sm in parts))


def judge(est, direction: str = "greater", margin: float = 0.0, bounds: tuple[float, float] | None = None,
          reported: float | None = None) -> str:
    """The verdict of an estimate (``lo``, ``hi``, ``seed_term_ok``; None: not measured). One whose seed
    term could not be estimated (one seed of a trained method) is never more than inconclusive."""
    if est is None:
        return NOT_MEASURED
    v = verdict(est.lo, est.hi, direction, margin, bounds, reported)
    return v if getattr(est, "seed_term_ok", True) else INCONCLUSIVE
