"""Comparisons at equal generated tokens: a method's per-problem accuracy at a token budget.

Tree samplers generate more tokens per optimizer step than GRPO's 8 chains on the tiny task
(1.2-1.5x measured), so equal steps are not equal compute. Every accuracy comparison is therefore
also made at an equal budget of cumulative generated tokens ``T*``: the smaller of the two methods'
mean (over seeds) cumulative tokens at their final checkpoint. The method that reached ``T*`` first
is read at ``T*`` on its own evaluation curve, per seed, by linear interpolation between the two
checkpoints whose cumulative tokens bracket ``T*`` (the base model is the point ``(0 tokens, step
0)`` of every curve)::

    X(T*) = (1 - w) * X(step_lo) + w * X(step_hi),    w = (T* - T_lo) / (T_hi - T_lo)

per problem (the cells of ``ibtpo.analysis.results.load_cells``), so the result goes through the
same interval code as an equal-step comparison. A seed whose last checkpoint falls short of ``T*``
keeps its last checkpoint (no extrapolation; reported as ``capped``).

Why interpolation and not token-budget training (our choice): the checkpoint steps stay known
from config (a static DAG), no run is trained twice, and it costs no extra evaluation; the price is
the assumption that accuracy moves linearly between two checkpoints, which the accuracy-against-
tokens figure lets a reader check. Denser checkpoints (``train.checkpoint_every``) make it tighter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def checkpoint_tokens(metrics_path: str | Path, steps: list[int]) -> dict[int, float]:
    """``{0: 0, step: cumulative generated tokens after step}`` from a run's ``metrics.jsonl``."""
    rows = {}
    for line in Path(metrics_path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            rows[int(rec["step"])] = float(rec["cum_gen_tokens"])
    missing = [s for s in steps if s not in rows]
    if missing:
        raise ValueError(f"{metrics_path}: no cum_gen_tokens for checkpoint step(s) {missing}")
    return {0: 0.0, **{s: rows[s] for s in steps}}


def at_budget(curve: list[tuple[float, np.ndarray]], budget: float) -> tuple[np.ndarray, dict]:
    """Per-problem cells at ``budget`` tokens on one run's curve ``[(tokens, cells), ...]`` (sorted by
    tokens, the base point first). Returns the cells and how they were read: the bracketing
    points' indices, ``w``, and ``capped`` when the run ends before the budget."""
    tokens = [t for t, _ in curve]
    if any(b < a for a, b in zip(tokens, tokens[1:])):
        raise ValueError(f"token curve is not increasing: {tokens}")
    if budget >= tokens[-1]:
        return curve[-1][1], {"lo": len(curve) - 1, "hi": len(curve) - 1, "w": 1.0, "capped": budget > tokens[-1]}
    hi = next(i for i, t in enumerate(tokens) if t > budget)
    lo = hi - 1
    w = (budget - tokens[lo]) / (tokens[hi] - tokens[lo])
    return (1 - w) * curve[lo][1] + w * curve[hi][1], {"lo": lo, "hi": hi, "w": float(w), "capped": False}


def budget_cells(curves: list[list[tuple[float, np.ndarray]]], budget: float) -> tuple[np.ndarray, list[dict]]:
    """``(n_seeds, n_problems)`` cells of one method (one curve per seed) at ``budget`` tokens."""
    read = [at_budget(c, budget) for c in curves]
    return np.stack([cells for cells, _ in read]), [how for _, how in read]
