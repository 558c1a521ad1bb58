"""Decoding through the model's own HF forward with a ``DynamicCache``: any causal LM."""

from __future__ import annotations

import torch

from .base import DecodePath, cache_keyword, prefill


class HFForward(DecodePath):
    """The cache forked ``n`` ways with ``batch_repeat_interleave`` (the prefix encoded once), compacted
    with ``batch_select_indices``; one HF forward per step with the growing attention mask."""

    def __init__(self, model):
        self.model = model
        self.cache_kw = cache_keyword(model)
        self.cache = self.mask = None

    def prefill(self, ids, mask, pos, n, steps):
        logits, self.cache = prefill(self.model, ids, mask, pos)
        self.mask = mask
        if n > 1:
            logits, self.mask = logits.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)
            self.cache.batch_repeat_interleave(n)
        return logits

    def step(self, tok, pos, live):
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=-1)
        out = self.model(input_ids=tok[:, None], attention_mask=self.mask, position_ids=pos[:, None],
                         use_cache=True, **{self.cache_kw: self.cache})
        return out.logits[:, -1, :]

    def compact(self, keep):
        self.mask = self.mask[keep]
        self.cache.batch_select_indices(keep)
