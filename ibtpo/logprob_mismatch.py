"""How far the rollout's log-probs are from the trainer's, per response token.

The sampler records each token's log-prob under the weights that sampled it (``Trajectory.old_logprobs``:
the decode path, its dtype, the rollout engine); the trainer recomputes it with its own forward (its
precision, :mod:`ibtpo.precision`) before the first optimizer step of the update, under the same weights.
Any gap is numerical (a bf16 forward against an fp32 rollout, a fused decode kernel, another engine) and
biases the importance ratio the loss assumes to be 1 on policy: verl reports it as
``training/rollout_probs_diff_*`` (verl issue 6280), OpenRLHF discusses it in issue 1155. Over the
masked response tokens ``t`` of a step, with ``a_t`` the rollout's and ``b_t`` the trainer's log-prob:

* ``rollout_logprob_absdiff_mean`` = mean_t |a_t - b_t|, and ``..._max`` = max_t |a_t - b_t|;
* ``rollout_prob_absdiff_mean`` = mean_t |exp(a_t) - exp(b_t)|.

:func:`mismatch_sums` gives the additive parts of one chunk (summed over chunks and processes), and
:func:`mismatch_metrics` the step's numbers from their totals.
"""

from __future__ import annotations

import torch


def mismatch_sums(rollout_logp: torch.Tensor, train_logp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """``{"mm_abs_logp": sum_t |a_t - b_t|, "mm_abs_p": sum_t |exp a_t - exp b_t|, "mm_tokens": n,
    "mm_max": max_t |a_t - b_t|}`` over the tokens where ``mask`` is true (``(B, R)`` tensors)."""
    m = mask.bool()
    a, b = rollout_logp.detach().double()[m], train_logp.detach().double()[m]
    d = (a - b).abs()
    return {"mm_abs_logp": float(d.sum()), "mm_abs_p": float((a.exp() - b.exp()).abs().sum()),
            "mm_tokens": float(m.sum()), "mm_max": float(d.max()) if d.numel() else 0.0}


def add_sums(total: dict[str, float], part: dict[str, float]) -> None:
    """Add one chunk's :func:`mismatch_sums` into ``total`` in place (``mm_max`` by ``max``, the rest by ``+``)."""
    for k, v in part.items():
        total[k] = max(total.get(k, 0.0), v) if k == "mm_max" else total.get(k, 0.0) + v


def mismatch_metrics(sums: dict[str, float]) -> dict[str, float]:
    """The step's metrics from summed :func:`mismatch_sums` (``mm_max`` combined by ``max``); empty without
    tokens."""
    n = sums.get("mm_tokens", 0.0)
    if not n:
        return {}
    return {"rollout_logprob_absdiff_mean": sums["mm_abs_logp"] / n, "rollout_logprob_absdiff_max": sums["mm_max"],
            "rollout_prob_absdiff_mean": sums["mm_abs_p"] / n}
