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
    """Merge sequences into a prefix trie. Returns ``(ids, pos, index, rep)``: per node its token and
    position, ``index[i][j]`` the node of token ``j`` of sequence ``i``, and per node one ``(i, j)``
    where it occurs."""
    nodes: dict[tuple[int, int], int] = {}
    ids, pos, rep, index = [], [], [], []
    for i, s in enumerate(seqs):
        parent, row = -1, []
        for j, t in enumerate(s):
            node = nodes.get((parent, t))
            if node is None:
                node = nodes[(parent, t)] = len(ids)
                ids.append(t)
                pos.append(j)
                rep.append((i, j))
            row.append(node)
            parent = node
        index.append(row)
    return ids, pos, index, rep


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


def packed_logprobs(model, trajs: Sequence[Trajectory], temperature: float, device, with_entropy: bool = False):
    """:func:`sequence_logprobs` on the prefix trie of ``trajs`` (the packed path; see the module docstring)."""
    import torch.nn.functional as F

    seqs = [list(t.prompt_ids) + list(t.response_ids) for t in trajs]
    ids, pos, index, rep = prefix_trie(seqs)
    B = len(seqs)
    R = max(len(t.response_ids) for t in trajs)
    # attention buckets: per bucket a grid (rows, width) row position -> node (padding: node 0, never
    # attended); every node is read back from one row, as an index into the buckets' outputs concatenated
    cfg = model.config
    hidden = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    buckets = length_buckets([len(s) for s in seqs], SDPA_CALL_COST / hidden)
    grids, flat_of_row, offset = [], {}, 0
    for rows in buckets:
        width = len(seqs[rows[-1]])
        grid = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            grid[r, :len(index[i])] = torch.as_tensor(index[i])
            flat_of_row[i] = offset + r * width
        grids.append(grid.to(device))
        offset += len(rows) * width
    rep_t = torch.as_tensor([flat_of_row[i] + j for i, j in rep], dtype=torch.long)
    # the node predicting each response token, and the token
    pred, tgt, rr, rj = [], [], [], []
    for i, t in enumerate(trajs):
        P = len(t.prompt_ids)
        for j, tok in enumerate(t.response_ids):
            pred.append(index[i][P + j - 1])
            tgt.append(tok)
            rr.append(i)
            rj.append(j)
    heads, inverse = torch.unique(torch.as_tensor(pred, dtype=torch.long), return_inverse=True)
    ids_t, pos_t = torch.as_tensor(ids, device=device), torch.as_tensor(pos, device=device)
    rep_t, heads, inverse = rep_t.to(device), heads.to(device), inverse.to(device)

    base = model.model
    h = base.embed_tokens(ids_t)[None]  # (1, N, d): one "row" of nodes, so the modules see their usual rank
    cos, sin = base.rotary_emb(h, position_ids=pos_t[None])
    cos, sin = cos[0][:, None, :], sin[0][:, None, :]  # (N, 1, D): broadcast over heads
    for layer in base.layers[: model.config.num_hidden_layers]:
        att = layer.self_attn
        residual = h
        x = layer.input_layernorm(h)
        shape = (x.shape[1], -1, att.head_dim)
        q = att.q_proj(x)[0].view(shape)
        k = att.k_proj(x)[0].view(shape)
        v = att.v_proj(x)[0].view(shape)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin  # HF's apply_rotary_pos_emb
        # per bucket rows (n, heads, width, head_dim), causal; pads sit after every real token of a row
        outs = []
        for grid in grids:
            qs, ks, vs = (z[grid].transpose(1, 2) for z in (q, k, v))
            a = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=0.0, scale=att.scaling, is_causal=True)
            outs.append(a.transpose(1, 2).reshape(-1, a.shape[1], a.shape[3]))  # (n * width, heads, head_dim)
        a = (outs[0] if len(outs) == 1 else torch.cat(outs))[rep_t]  # (N, heads, head_dim): each node from one row
        h = residual + att.o_proj(a.reshape(1, a.shape[0], -1))
        residual = h
        h = residual + layer.mlp(layer.post_attention_layernorm(h))
    logits = model.lm_head(base.norm(h)[0, heads]).float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    tgt_t = torch.as_tensor(tgt, device=device)
    logp = torch.zeros((B, R), device=device, dtype=logp_all.dtype)
    rr_t, rj_t = torch.as_tensor(rr, device=device), torch.as_tensor(rj, device=device)
    logp = logp.index_put((rr_t, rj_t), logp_all[inverse, tgt_t])
    lens = torch.tensor([len(t.response_ids) for t in trajs], device=device)
    mask = torch.arange(R, device=device)[None, :] < lens[:, None]
    ent = None
    if with_entropy:
        ent_heads = -(logp_all.exp() * logp_all).sum(-1)
        ent = torch.zeros((B, R), device=device, dtype=logp_all.dtype).index_put((rr_t, rj_t), ent_heads[inverse])
    return logp, mask, ent


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)
