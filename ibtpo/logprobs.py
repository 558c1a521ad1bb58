"""Per-token log-probs of responses under a causal LM: the one scoring function of the project.

The trainer's loss (:mod:`ibtpo.trainer`) and the vLLM backend's rescoring of its samples
(:mod:`ibtpo.rollout.vllm_backend`, ``logprobs: policy``) both read log-probs from here, so
rollout and training agree on the convention: the log-prob of ``softmax(logits / T)`` before any
top-k / top-p truncation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from .trajectories import Trajectory


def sequence_logprobs(model, trajs: Sequence[Trajectory], temperature: float, device, with_entropy: bool = False):
    """Log-probs (and optionally full-distribution entropies) of each response token under ``model``
    at ``logits / temperature``, as right-padded ``(B, R)`` tensors with a response mask.

    ``trajs`` are anything with ``prompt_ids`` and ``response_ids`` (token id lists)."""
    seqs = [t.prompt_ids + t.response_ids for t in trajs]
    width = max(len(s) for s in seqs)
    R = max(len(t.response_ids) for t in trajs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.as_tensor(s)
        attn[i, :len(s)] = 1
    ids, attn = ids.to(device), attn.to(device)
    logits = model(input_ids=ids, attention_mask=attn).logits.float() / temperature
    # response token j of row i sits at position P_i + j and is predicted from position P_i + j - 1
    P = torch.tensor([len(t.prompt_ids) for t in trajs], device=device)
    pos = (P[:, None] - 1 + torch.arange(R, device=device)[None, :]).clamp(max=width - 2)
    lens = torch.tensor([len(t.response_ids) for t in trajs], device=device)
    mask = torch.arange(R, device=device)[None, :] < lens[:, None]
    step_logits = logits.gather(1, pos[:, :, None].expand(-1, -1, logits.shape[-1]))
    logp_all = torch.log_softmax(step_logits, dim=-1)
    targets = ids.gather(1, (pos + 1).clamp(max=width - 1))
    logp = logp_all.gather(-1, targets[:, :, None]).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1) if with_entropy else None
    return logp, mask, ent
