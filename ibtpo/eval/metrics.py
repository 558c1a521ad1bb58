"""Evaluation metrics: avg@k and the unbiased pass@k estimator. Pure functions, no I/O.

For one problem with ``n`` sampled responses of which ``c`` are graded correct:

* ``avg@n`` = c / n — the mean per-sample accuracy (what "avg@k" reports, with n = k).
* ``pass@k`` (k ≤ n), the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language
  Models Trained on Code", eq. 1) of the probability that at least one of k samples drawn
  without replacement from the n is correct::

      pass@k = 1 − C(n − c, k) / C(n, k)

  computed in the numerically stable product form::

      C(n − c, k) / C(n, k) = ∏_{i = n − c + 1}^{n} (1 − k / i)      (and pass@k = 1 if n − c < k)

  ``pass@1`` equals ``avg@n``; ``pass@n`` is 1 if any sample is correct, else 0.

A benchmark score is the mean over problems of the per-problem values.
"""

from __future__ import annotations

from typing import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: ``1 − C(n−c, k)/C(n, k)`` (Chen et al. 2021).

    ``n`` samples, ``c`` of them correct, ``1 ≤ k ≤ n``. Product form
    ``1 − ∏_{i=n−c+1}^{n} (1 − k/i)``; exactly 1.0 when ``n − c < k``.
    """
    n, c, k = int(n), int(c), int(k)
    if n < 1:
        raise ValueError(f"pass@k needs n >= 1 samples (got n={n})")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n (got c={c}, n={n})")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n (got k={k}, n={n})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def avg_at_k(correct: Sequence[int | bool | float]) -> float:
    """avg@k for one problem: ``(1/k) Σ_j correct_j`` over its k sampled responses."""
    if len(correct) == 0:
        raise ValueError("avg@k of an empty list of samples")
    return float(sum(float(x) for x in correct)) / len(correct)


def problem_metrics(correct: Sequence[int | bool | float], pass_at: Iterable[int] = (1,)) -> dict[str, float]:
    """Per-problem ``{"avg@k": ..., "pass@j": ...}`` from its list of 0/1 grades (k = len).

    The key is literally ``"avg@k"`` whatever k is (k is reported alongside), so readers of the
    results need not know k; ``pass@j`` keys carry their j.
    """
    pass_at = [int(j) for j in pass_at]
    k = len(correct)
    c = int(sum(1 for x in correct if x))
    out = {"avg@k": avg_at_k(correct)}
    if any(j > k for j in pass_at):
        raise ValueError(f"pass@j needs j <= k={k} (got pass_at={list(pass_at)})")
    for j in pass_at:
        out[f"pass@{j}"] = pass_at_k(k, c, j)
    return out


def aggregate(per_problem: Sequence[Sequence[int | bool | float]], pass_at: Iterable[int] = (1,)) -> dict[str, float]:
    """Benchmark metrics: the mean over problems of :func:`problem_metrics`.

    ``per_problem[i]`` is the list of 0/1 grades of problem i's k responses; every problem must
    have the same k. Returns ``{"avg@k": mean_i avg@k_i, "pass@j": mean_i pass@j_i for j in pass_at}``.
    """
    pass_at = [int(j) for j in pass_at]
    if not per_problem:
        raise ValueError("no problems to aggregate")
    ks = {len(c) for c in per_problem}
    if len(ks) != 1:
        raise ValueError(f"every problem must have the same number of samples (got {sorted(ks)})")
    rows = [problem_metrics(c, pass_at) for c in per_problem]
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
