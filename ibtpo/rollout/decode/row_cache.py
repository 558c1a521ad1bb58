"""The plain Llama loop on a per-row KV cache with torch attention: any dtype, any device.

Per layer the keys transposed, ``Kt (rows, heads, head_dim, width + steps)``, and the values,
``V (rows, heads, width + steps, head_dim)``, preallocated: the prefill (each prefix repeated ``n``
times) in the first ``width`` columns, step ``s`` writes column ``width + s`` and attends to the filled
slice through two small batched GEMMs (:func:`torch_attention`; the CPU SDPA kernels cost ~2x that at
query length 1). Left padding is an additive bias (0 / -inf) in the activations' dtype; compaction
copies the cache rows that stay.
"""

from __future__ import annotations

import torch

from ...model.plain_llama import LlamaDecodeStep
from .base import DecodePath, prefill


def torch_attention(q, Kt, V, n: int, bias, scale: float) -> torch.Tensor:
    """Attention over a per-row cache: ``softmax(scale * q Kt[..., :n] + bias) V[:, :, :n]``; ``q (B, H, 1, D)``,
    ``Kt (B, H, D, width)``, ``V (B, H, width, D)``, ``bias`` ``(B, 1, 1, n)`` (0 / -inf, in the activations'
    dtype) or ``None``. Returns ``(B, H, 1, D)`` in the activations' dtype. Any dtype: the scores and the bias
    in the activations' dtype, the softmax accumulated in float32 and cast back before the values (HF's eager
    attention does the same; for float32 activations nothing changes)."""
    scores = torch.matmul(q * scale, Kt[..., :n])
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(V.dtype), V[:, :, :n])


def prefill_rows(model, llama: LlamaDecodeStep, ids, mask, pos, n: int, steps: int, alloc=torch.Tensor.new_empty):
    """The prefill as a per-row cache: returns the first logits and the mask, each prefix's row repeated
    ``n`` times, and per layer ``[Kt, V]`` (``(rows, heads, head_dim, width + steps)`` keys transposed,
    ``(rows, heads, width + steps, head_dim)`` values; the prefill in the first ``width`` columns, the rest
    from ``alloc``); prepares ``llama`` for the call's positions."""
    logits, cache = prefill(model, ids, mask, pos)
    rows, width = ids.shape[0] * n, ids.shape[1]
    if n > 1:
        logits, mask, pos = (t.repeat_interleave(n, dim=0) for t in (logits, mask, pos))
    llama.prepare(int(pos.max()) + 1 + steps)
    kv = []
    for layer in cache.layers:
        k, v = layer.keys, layer.values
        if n > 1:
            k, v = k.repeat_interleave(n, dim=0), v.repeat_interleave(n, dim=0)
        kt = alloc(k, (rows, k.shape[1], k.shape[3], width + steps))
        kt[..., :width] = k.transpose(2, 3)
        vb = alloc(v, (rows, v.shape[1], width + steps, v.shape[3]))
        vb[:, :, :width] = v
        kv.append([kt, vb])
    return logits, mask, kv


class LlamaRowCache(DecodePath):
    """:class:`~ibtpo.model.plain_llama.LlamaDecodeStep` with a per-row cache (module docstring)."""

    def __init__(self, model, llama: LlamaDecodeStep):
        self.model, self.llama = model, llama
        self.kv: list = []  # per layer [Kt, V]
        self.bias = self.mask = None
        self.width = self.col = 0
        self.padded = False

    def prefill(self, ids, mask, pos, n, steps):
        logits, mask, self.kv = prefill_rows(self.model, self.llama, ids, mask, pos, n, steps)
        rows, width = logits.shape[0], ids.shape[1]
        self.mask = torch.cat([mask.bool(), mask.new_ones((rows, steps), dtype=torch.bool)], dim=-1)
        # the bias in the activations' dtype (a float32 bias would promote bf16/fp16 scores)
        self.bias = torch.zeros(self.mask.shape, device=ids.device, dtype=self.kv[0][0].dtype).masked_fill_(
            ~self.mask, float("-inf"))
        self.width = self.col = width
        self.padded = not bool(self.mask[:, :width].all())
        return logits

    def step(self, tok, pos, live):
        col = self.col
        bias = self.bias[:, None, None, :col + 1] if self.padded else None

        def attend(i, q, k, v, scale):
            Kt, V = self.kv[i]
            Kt[..., col] = k
            V[:, :, col] = v
            return torch_attention(q, Kt, V, col + 1, bias, scale)

        self.col += 1
        return self.llama(tok, pos, attend)

    def compact(self, keep):
        self.kv = [[t[keep] for t in layer] for layer in self.kv]
        self.mask, self.bias = self.mask[keep], self.bias[keep]
        self.padded = not bool(self.mask[:, :self.width].all())
