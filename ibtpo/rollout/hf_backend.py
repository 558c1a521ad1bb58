"""Transformers generation backend: batched sampling with a KV cache.

Prefixes are left-padded and prefilled once; the prefilled cache is forked ``n`` ways with
``DynamicCache.batch_repeat_interleave``, so ``n`` samples of one prefix pay for its encoding once.
Finished rows are dropped from the batch (``batch_select_indices``) so the decode cost follows the
live rows, not the longest sample.
"""

from __future__ import annotations

import time
from typing import Sequence

import inspect

import torch
from transformers import DynamicCache, PreTrainedModel

from .backend import Completion, GenerationBackend, GenerationStats, SamplingParams


def cache_keyword(model) -> str:
    """Recent transformers 5.x take ``cache=`` (``past_key_values=`` is deprecated); older releases
    only know ``past_key_values`` and would silently drop ``cache=``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None):
    """Sample one token per row. Returns ``(token, logprob, entropy)``.

    ``logprob`` and ``entropy`` are of ``softmax(logits / T)`` before truncation;
    the sample is drawn from the top-k / top-p truncated, renormalised distribution.
    """
    logp = torch.log_softmax(logits.float() / params.temperature, dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp).sum(-1)
    masked = logp
    if params.top_k and params.top_k < logp.shape[-1]:
        kth = torch.topk(logp, params.top_k, dim=-1).values[:, -1:]
        masked = masked.masked_fill(logp < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_lp, idx = torch.sort(masked, dim=-1, descending=True)
        cum = sorted_lp.exp().cumsum(-1)
        drop_sorted = (cum - sorted_lp.exp()) > params.top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        masked = masked.masked_fill(drop, float("-inf"))
    token = torch.multinomial(torch.softmax(masked, dim=-1), 1, generator=generator).squeeze(-1)
    return token, logp.gather(-1, token[:, None]).squeeze(-1), entropy


class HFBackend(GenerationBackend):
    """Generation on a ``transformers`` causal LM that the trainer updates in place."""

    def __init__(self, model, pad_token_id: int, device: str | torch.device = "cpu"):
        self.model = model
        self.pad_token_id = pad_token_id
        self.device = torch.device(device)
        self.stats = GenerationStats()
        self._cache_kw = cache_keyword(model)

    def sync_weights(self, model) -> None:
        self.model = model
        self._cache_kw = cache_keyword(model)

    @torch.no_grad()
    def generate(self, prefixes: Sequence[Sequence[int]], n: int, params: SamplingParams,
                 seed: int | None = None, max_new: Sequence[int] | None = None) -> list[list[Completion]]:
        t0 = time.perf_counter()
        if not prefixes:
            return []
        was_training = self.model.training
        self.model.eval()
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        stop = torch.tensor(sorted(set(params.stop_token_ids)) or [-1], device=self.device)

        width = max(len(p) for p in prefixes)
        ids = torch.full((len(prefixes), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prefixes), width), dtype=torch.long)
        for i, p in enumerate(prefixes):
            ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **{self._cache_kw: cache})
        if isinstance(self.model, PreTrainedModel) and cache.get_seq_length() != width:
            raise RuntimeError(f"the model did not fill the KV cache (argument {self._cache_kw!r}); "
                               "this transformers version is not supported by the HF backend")
        logits = out.logits[:, -1, :]
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)
            mask = mask.repeat_interleave(n, dim=0)
            pos = pos.repeat_interleave(n, dim=0)
        next_pos = pos[:, -1] + 1

        total = len(prefixes) * n
        rows = torch.arange(total, device=self.device)  # live row -> output index
        caps = [min(params.max_new_tokens, max_new[i // n]) if max_new is not None else params.max_new_tokens
                for i in range(total)]
        limit = torch.tensor(caps, device=self.device)
        tokens = [[] for _ in range(total)]
        lps = [[] for _ in range(total)]
        ents = [[] for _ in range(total)]
        reason = ["length"] * total
        generated = 0
        for step in range(max(caps)):
            tok, lp, ent = sample_next(logits, params, gen)
            generated += len(rows)
            for r, t, l, e in zip(rows.tolist(), tok.tolist(), lp.tolist(), ent.tolist()):
                tokens[r].append(t)
                lps[r].append(l)
                ents[r].append(e)
            done = torch.isin(tok, stop)
            for r in rows[done].tolist():
                reason[r] = "stop"
            done |= limit[rows] <= step + 1
            if step == max(caps) - 1:
                break
            if done.any():
                keep = (~done).nonzero().squeeze(-1)
                if keep.numel() == 0:
                    break
                cache.batch_select_indices(keep)
                rows, tok, mask, next_pos = rows[keep], tok[keep], mask[keep], next_pos[keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            out = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                             use_cache=True, **{self._cache_kw: cache})
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        if was_training:
            self.model.train()
        self.stats.calls += 1
        self.stats.tokens_generated += generated
        self.stats.prefix_tokens_encoded += int(sum(len(p) for p in prefixes))
        self.stats.seconds += time.perf_counter() - t0
        flat = [Completion(tokens[i], lps[i], ents[i], reason[i]) for i in range(total)]
        return [flat[i * n:(i + 1) * n] for i in range(len(prefixes))]
