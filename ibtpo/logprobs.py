"""Per-token log-probs of responses under a causal LM: the one scoring function of the project.

The trainer's loss (:mod:`ibtpo.trainer`) and the vLLM backend's rescoring of its samples
(:mod:`ibtpo.rollout.vllm_backend`, ``logprobs: policy``) both read log-probs from here, so
rollout and training agree on the convention: the log-prob of ``softmax(logits / T)`` before any
top-k / top-p truncation.

Two implementations, one result (equal up to float rounding):

* the generic one: one right-padded forward of the whole batch through the model;
* the packed one, for Llama-architecture models (:func:`packs`: ``LlamaForCausalLM`` with SDPA
  attention, default RoPE, as many KV heads as query heads, no module hooks): the batch's
  sequences are merged into a prefix trie, so a prefix the rows share (a group's prompt; a tree's
  common path) is one set of tokens, and every token-wise part of the model (embeddings, norms,
  projections, MLPs, the LM head) runs once per trie node on a flat ``(nodes, d)`` tensor with no
  padding. Only attention runs on the padded rows: each layer gathers the rows' queries / keys /
  values from the nodes, applies causal SDPA, and reads each node's output back from one row that
  contains it (a node's causal context is its prefix, the same in every row through it). The rows
  are cut into length buckets (:func:`length_buckets`), one SDPA call each, so a short row is not
  padded to the longest one's width. The LM head runs only on the nodes that predict a response
  token. The layers' own modules are called, in ``LlamaModel.forward``'s order, so gradients reach
  the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from .trajectories import Trajectory


def packs(model) -> bool:
    """Whether :func:`sequence_logprobs` takes the packed (prefix-trie) path for ``model``: a plain
    Llama (:func:`~ibtpo.model.plain_llama.is_plain_llama`) without attention dropout in training."""
    from .model.plain_llama import is_plain_llama

    return is_plain_llama(model) and not (model.training and model.config.attention_dropout)


def prefix_trie(seqs: Sequence[Sequence[int]]):
    """Merge sequences into a prefix trie (vectorised: rows sorted lexicographically share a node with
    the previous sorted row as long as their tokens agree). Returns numpy arrays ``(tokens, ids, pos,
    index, rep)``: the ``(B, W)`` token grid (-1 after a row's end), per node its token and position,
    ``index[i, j]`` the node of token ``j`` of sequence ``i`` (-1 after the row's end), and per node
    one ``(i, j)`` where it occurs (``rep``, ``(N, 2)``). Token ids must be >= 0."""
    import numpy as np

    B = len(seqs)
    lens = np.array([len(s) for s in seqs], dtype=np.int64)
    W = int(lens.max()) if B else 0
    tokens = np.full((B, W), -1, dtype=np.int64)
    valid = np.arange(W)[None, :] < lens[:, None]
    tokens[valid] = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if B else []
    order = np.lexsort(tokens.T[::-1]) if W else np.arange(B)  # lexicographic, first column most significant
    t = tokens[order]
    shared = np.zeros((B, W), dtype=bool)  # token j of sorted row r is the previous sorted row's node
    if B > 1:
        shared[1:] = np.logical_and.accumulate((t[1:] == t[:-1]) & (t[1:] >= 0), axis=1)
    new = (t >= 0) & ~shared
    first = np.where(new, np.cumsum(new.ravel()).reshape(B, W) - 1, -1)  # node ids, in sorted row-major order
    src = np.maximum.accumulate(np.where(new, np.arange(B)[:, None], 0), axis=0)  # the sorted row that made it
    node = np.where(t >= 0, np.take_along_axis(first, src, axis=0), -1)
    index = np.empty_like(node)
    index[order] = node
    r, j = np.nonzero(new)
    return tokens, t[r, j], j, index, np.stack([order[r], j], axis=1)


def length_buckets(lengths: Sequence[int], call_cost: float) -> list[list[int]]:
    """Rows cut into groups for padded causal attention: minimises ``sum_b (n_b * W_b**2 + call_cost)``
    over groups of length-sorted rows, where ``n_b`` is a group's row count and ``W_b`` its longest
    row (a causal SDPA call costs ~ rows x width**2, plus a fixed cost per call, in the same units).
    Exact dynamic programme over the distinct lengths. Returns row indices, shortest group first,
    each group in ascending length."""
    import numpy as np

    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    L = np.array([lengths[i] for i in order], dtype=np.float64)
    ends = np.flatnonzero(np.append(L[1:] != L[:-1], True)) + 1  # a group ends after a run of equal lengths
    cuts = np.concatenate([[0], ends])  # candidate boundaries (row counts)
    best = np.zeros(len(cuts))
    prev = np.zeros(len(cuts), dtype=np.int64)
    for j in range(1, len(cuts)):
        w2 = L[cuts[j] - 1] ** 2
        cost = best[:j] + (cuts[j] - cuts[:j]) * w2 + call_cost
        prev[j] = int(np.argmin(cost))
        best[j] = cost[prev[j]]
    groups, j = [], len(cuts) - 1
    while j > 0:
        groups.append(order[cuts[prev[j]]:cuts[j]])
        j = prev[j]
    return groups[::-1]


# Fixed cost of one extra SDPA call (forward + backward, with its gathers) in units of one attention
# cell (one query-key pair of one row) times the hidden size: measured ~100 us vs ~0.3 ns per cell
# and hidden unit on the 2-core CPU (our choice; it only decides how finely rows are bucketed).
SDPA_CALL_COST = 3.5e5


def sequence_logprobs(model, trajs: Sequence[Trajectory], temperature: float, device, with_entropy: bool = False):
    """Log-probs (and optionally full-distribution entropies) of each response token under ``model``
    at ``logits / temperature``, as right-padded ``(B, R)`` tensors with a response mask (0 at the
    masked positions on the packed path).

    ``trajs`` are anything with ``prompt_ids`` and ``response_ids`` (token id lists)."""
    if packs(model):
        return packed_logprobs(model, trajs, temperature, device, with_entropy)
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


@dataclass
class TriePlan:
    """Everything :func:`packed_logprobs` needs besides the model, from the token ids alone: the nodes'
    tokens / positions, one
    ``(rows, width)`` node grid per attention bucket (padding: node 0, never attended: pads sit after
    every real token of a row), ``rep`` each node's index into the buckets' attention outputs
    concatenated, ``heads`` the nodes predicting a response token (``inverse``: each response token's
    head), ``tgt`` the tokens, at ``(rr, rj)`` of the ``(B, R)`` output."""

    ids: torch.Tensor
    pos: torch.Tensor
    grids: list
    rep: torch.Tensor
    heads: torch.Tensor
    inverse: torch.Tensor
    tgt: torch.Tensor
    rr: torch.Tensor
    rj: torch.Tensor
    R: int


def trie_plan(model, trajs: Sequence[Trajectory]) -> TriePlan:
    """The :class:`TriePlan` of ``trajs``, its buckets sized for ``model``'s attention width (numpy; ~0.6 ms
    for 32 rows of ~85 tokens)."""
    import numpy as np

    cfg = model.config
    hidden = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    seqs = [list(t.prompt_ids) + list(t.response_ids) for t in trajs]
    tokens, ids, pos, index, rep = prefix_trie(seqs)
    lens = np.array([len(s) for s in seqs])
    P = np.array([len(t.prompt_ids) for t in trajs])
    grids, flat_of_row, offset = [], np.zeros(len(seqs), dtype=np.int64), 0
    for rows in length_buckets(lens.tolist(), SDPA_CALL_COST / hidden):
        width = int(lens[rows[-1]])
        grids.append(torch.from_numpy(np.maximum(index[rows, :width], 0)))
        flat_of_row[rows] = offset + np.arange(len(rows)) * width
        offset += len(rows) * width
    # response token (i, j) of the grid (j >= P_i) is predicted by node index[i, j - 1]
    col = np.arange(tokens.shape[1])[None, :]
    rr, cc = np.nonzero((col >= P[:, None]) & (col < lens[:, None]))
    heads, inverse = np.unique(index[rr, cc - 1], return_inverse=True)
    return TriePlan(*(torch.from_numpy(np.ascontiguousarray(x)) for x in (ids, pos)), grids,
                    torch.from_numpy(flat_of_row[rep[:, 0]] + rep[:, 1]), torch.from_numpy(heads),
                    torch.from_numpy(inverse.reshape(-1)), torch.from_numpy(tokens[rr, cc]), torch.from_numpy(rr),
                    torch.from_numpy(cc - P[rr]), int((lens - P).max()))


def packed_layer(layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, grids: list,
                 rep_t: torch.Tensor) -> torch.Tensor:
    """One decoder layer on the trie's nodes ``h`` (``(1, N, d)``): its own modules in ``LlamaDecoderLayer``'s
    order, attention per bucket of rows (``grids``; each node's output read from one row, ``rep_t``)."""
    import torch.nn.functional as F

    from .model.plain_llama import rotate_half

    att = layer.self_attn
    residual = h
    x = layer.input_layernorm(h)
    shape = (x.shape[1], -1, att.head_dim)
    q = att.q_proj(x)[0].view(shape)
    k = att.k_proj(x)[0].view(shape)
    v = att.v_proj(x)[0].view(shape)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin  # HF's apply_rotary_pos_emb
    # per bucket rows (n, heads, width, head_dim), causal; pads sit after every real token of a row
    outs = []
    for grid in grids:
        qs, ks, vs = (z[grid].transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=0.0, scale=att.scaling, is_causal=True)
        outs.append(a.transpose(1, 2).reshape(-1, a.shape[1], a.shape[3]))  # (n * width, heads, head_dim)
    a = (outs[0] if len(outs) == 1 else torch.cat(outs))[rep_t]  # (N, heads, head_dim): each node from one row
    h = residual + att.o_proj(a.reshape(1, a.shape[0], -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))


def packed_logprobs(model, trajs: Sequence[Trajectory], temperature: float, device, with_entropy: bool = False):
    """:func:`sequence_logprobs` on the prefix trie of ``trajs`` (the packed path; see the module docstring)."""
    import torch.utils.checkpoint

    from .precision import checkpointing

    plan = trie_plan(model, trajs)
    B, R = len(trajs), plan.R
    ids_t, pos_t, rep_t, heads, inverse, tgt_t, rr_t, rj_t = (
        x.to(device) for x in (plan.ids, plan.pos, plan.rep, plan.heads, plan.inverse, plan.tgt, plan.rr, plan.rj))
    grids = [g.to(device) for g in plan.grids]

    base = model.model
    h = base.embed_tokens(ids_t)[None]  # (1, N, d): one "row" of nodes, so the modules see their usual rank
    cos, sin = base.rotary_emb(h, position_ids=pos_t[None])
    cos, sin = cos[0][:, None, :], sin[0][:, None, :]  # (N, 1, D): broadcast over heads
    recompute = checkpointing(model)  # train.gradient_checkpointing: each layer's activations recomputed
    for layer in base.layers[: model.config.num_hidden_layers]:
        if recompute:
            h = torch.utils.checkpoint.checkpoint(packed_layer, layer, h, cos, sin, grids, rep_t, use_reentrant=False)
        else:
            h = packed_layer(layer, h, cos, sin, grids, rep_t)
    logits = model.lm_head(base.norm(h)[0, heads]).float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = torch.zeros((B, R), device=device, dtype=logp_all.dtype)
    logp = logp.index_put((rr_t, rj_t), logp_all[inverse, tgt_t])
    lens = torch.tensor([len(t.response_ids) for t in trajs], device=device)
    mask = torch.arange(R, device=device)[None, :] < lens[:, None]
    ent = None
    if with_entropy:
        ent_heads = -(logp_all.exp() * logp_all).sum(-1)
        ent = torch.zeros((B, R), device=device, dtype=logp_all.dtype).index_put((rr_t, rj_t), ent_heads[inverse])
    return logp, mask, ent
