"""Token-level policy losses as pure functions (verl ``core_algos`` style).

All tensors are ``(batch, response_len)`` with a 0/1 ``mask`` over response tokens.

Clipped surrogate with separate ``eps_low`` / ``eps_high`` (DAPO's clip-higher when they differ)::

    ratio_t = exp(logp_t - old_logp_t)
    pg_t    = -min(ratio_t * A_t, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A_t)

KL to a frozen reference, the k3 estimator (Schulman 2020), unbiased and non-negative::

    kl_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1

Loss = agg(pg) + kl_coef * agg(kl) - entropy_coef * token_mean(H), where ``H_t`` is the entropy
of the full next-token distribution. The entropy term is always a token mean, whatever the
aggregation mode, so ``entropy_coef`` means the same across modes.
"""

from __future__ import annotations

import torch

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: str, norm_len: int | None = None,
              n_tokens: float | None = None, n_seqs: float | None = None) -> torch.Tensor:
    """Reduce per-token values to a scalar.

    - ``token-mean``: ``sum(v * m) / sum(m)`` over the whole batch (every token weighs the same).
    - ``seq-mean-token-mean``: mean over sequences of each sequence's token mean (GRPO paper).
    - ``seq-mean-token-sum-norm``: mean over sequences of ``sum_t v_t / norm_len`` with a constant
      ``norm_len`` (Dr. GRPO; default the mask width, i.e. max response length).

    ``n_tokens`` / ``n_seqs`` replace the batch's own token / sequence counts as denominators, so a
    batch split into chunks gives chunk losses that sum exactly to the whole batch's loss.
    """
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        return (values * mask).sum() / (n_tokens if n_tokens is not None else mask.sum().clamp(min=1))
    n_seqs = n_seqs if n_seqs is not None else values.shape[0]
    if mode == "seq-mean-token-mean":
        per_seq = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / n_seqs
    if mode == "seq-mean-token-sum-norm":
        n = norm_len or values.shape[-1]
        return ((values * mask).sum(-1) / n).sum() / n_seqs
    raise ValueError(f"unknown loss aggregation {mode!r}; allowed: {list(AGGREGATIONS)}")


def clipped_surrogate(logp, old_logp, adv, eps_low: float, eps_high: float):
    """Per-token PPO-clip loss; also returns masks of tokens clipped at the low / high side."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    clipped_low = (ratio < 1.0 - eps_low) & (adv < 0)
    clipped_high = (ratio > 1.0 + eps_high) & (adv > 0)
    return loss, clipped_low, clipped_high


def kl_k3(logp, ref_logp):
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def policy_loss(logp, old_logp, adv, mask, *, eps_low=0.2, eps_high=0.2, aggregation="token-mean",
                ref_logp=None, kl_coef=0.0, entropy=None, entropy_coef=0.0, norm_len=None,
                n_tokens=None, n_seqs=None):
    """Total loss and its parts (detached floats) for logging.

    With ``n_tokens`` / ``n_seqs`` (the counts of the whole batch) the loss and every logged part
    of a chunk are its share of the batch's, so chunk values add up to the batch values."""
    pg, low, high = clipped_surrogate(logp, old_logp, adv, eps_low, eps_high)
    loss = aggregate(pg, mask, aggregation, norm_len, n_tokens, n_seqs)
    m = mask.to(logp.dtype)
    n_tok = n_tokens if n_tokens is not None else m.sum().clamp(min=1)
    metrics = {
        "pg_loss": loss.item(),
        "clipfrac_low": ((low.to(m.dtype) * m).sum() / n_tok).item(),
        "clipfrac_high": ((high.to(m.dtype) * m).sum() / n_tok).item(),
    }
    if kl_coef and ref_logp is not None:
        kl = aggregate(kl_k3(logp, ref_logp), mask, aggregation, norm_len, n_tokens, n_seqs)
        loss = loss + kl_coef * kl
        metrics["kl"] = kl.item()
    if entropy is not None:
        ent = (entropy * m).sum() / n_tok
        metrics["entropy"] = ent.item()
        if entropy_coef:
            loss = loss - entropy_coef * ent
    metrics["loss"] = loss.item()
    return loss, metrics
