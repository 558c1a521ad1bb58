"""The plain Llama loop on the C kernel's shared-prefix KV cache: CPU float32.

The cache (:class:`~.attention_kernel.SharedPrefixKV`) keeps each prefix's prefilled keys / values once
(read once for all its ``n`` samples) and each cache row's generated ones; the model runs on the live
rows only: a finished row leaves the compute batch at once and keeps its cache row (the kernel reads
cache rows through an index), so the cache is never copied. The sampling batch is still compacted by
the sampling loop, and finished rows get zero logits until then, so every path draws the same random
stream.
"""

from __future__ import annotations

import torch

from ...model.plain_llama import LlamaDecodeStep
from .attention_kernel import DecodeAttention, SharedPrefixKV
from .base import DecodePath, prefill


class LlamaSharedPrefix(DecodePath):
    """:class:`~ibtpo.model.plain_llama.LlamaDecodeStep` with the kernel's cache (module docstring)."""

    def __init__(self, model, llama: LlamaDecodeStep, attention: DecodeAttention):
        self.model, self.llama, self.attention = model, llama, attention
        self.kv: list[SharedPrefixKV] = []
        self.pmask = None  # (prefixes, width) bool, True = attend; None: no padding
        self.cache_rows = None  # batch row -> cache row
        self.filled = 0  # generated columns written

    def prefill(self, ids, mask, pos, n, steps):
        logits, cache = prefill(self.model, ids, mask, pos)
        if n > 1:
            logits = logits.repeat_interleave(n, dim=0)
        self.llama.prepare(int(pos.max()) + 1 + steps)
        self.kv = [SharedPrefixKV.from_prefill(layer.keys, layer.values, n, steps) for layer in cache.layers]
        self.pmask = mask.bool() if not bool(mask.all()) else None
        self.cache_rows = torch.arange(ids.shape[0] * n, device=ids.device)
        return logits

    def step(self, tok, pos, live):
        col = self.filled
        sub = None if bool(live.all()) else live.nonzero().squeeze(-1)
        rows = self.cache_rows if sub is None else self.cache_rows[sub]

        def attend(i, q, k, v, scale):
            self.kv[i].write(col, k, v, rows)
            return self.attention(q, self.kv[i], col + 1, self.pmask, scale, rows)

        self.filled += 1
        if sub is None:
            return self.llama(tok, pos, attend)
        out = self.llama(tok[sub], pos[sub], attend)
        logits = out.new_zeros((len(tok), out.shape[1]))
        logits[sub] = out
        return logits

    def compact(self, keep):
        self.cache_rows = self.cache_rows[keep]
