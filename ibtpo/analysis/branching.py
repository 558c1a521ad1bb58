"""Sampling statistics of a sampler on a fixed problem set (the paper's Table 3).

- Eff-Rate: share of problems whose trajectories' rewards are not all equal (they carry signal).
- Avg-Rate: mean correctness of the sampled trajectories.
- tokens per problem: generated tokens, a shared prefix counted once.
- wall time of the rollout (generation + grading + tree bookkeeping).
"""

from __future__ import annotations

import time

import numpy as np

from ..rollout.context import RolloutContext


def sampler_stats(sampler, problems: list[dict], ctx: RolloutContext, batch: int = 16, seed: int = 0) -> dict:
    trees, t0 = [], time.perf_counter()
    for i in range(0, len(problems), batch):
        trees += sampler.sample(problems[i:i + batch], ctx, seed=seed + i)
    seconds = time.perf_counter() - t0
    return {
        "G": float(np.mean([len(t.leaves()) for t in trees])),
        "eff_rate": 100.0 * float(np.mean([len(set(t.rewards())) > 1 for t in trees])),
        "avg_rate": 100.0 * float(np.mean([r for t in trees for r in t.rewards()])),
        "tokens_per_problem": float(np.mean([t.generated_tokens for t in trees])),
        "seconds": seconds,
        "trees": trees,
    }
