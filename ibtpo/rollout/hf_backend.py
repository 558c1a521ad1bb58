"""Transformers generation backend: batched sampling with a KV cache.

Prefixes are left-padded and prefilled once (one model call); the prefilled cache serves the ``n``
samples of a prefix, so a prefix's encoding is paid for once. Finished rows are dropped from the batch
once at most ``compact_at`` (default 75%) of the batch is still live, so the decode cost follows the
live rows, not the longest sample, without re-indexing the cache at every step (13% faster generation
measured on the tiny model than compacting whenever a row finishes). Outputs are written into
preallocated tensors and converted to lists once.

This module is the sampling loop only; how a step is computed (the cache, its layout, the model call)
is the decode path's (:mod:`ibtpo.rollout.decode`, chosen once per call by ``decode``: ``auto`` | ``hf``
| ``torch`` | ``c``). Every path draws the same random stream, so the same samples for a seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch

from ..precision import DTYPES, cast_copy
from .backend import Completion, GenerationBackend, GenerationStats, SamplingParams
from .decode import DecodePath, choose


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
    """Generation on a ``transformers`` causal LM that the trainer updates in place. ``decode``: the
    decode path (:mod:`ibtpo.rollout.decode`). ``dtype`` (``rollout.dtype``): ``None`` or the model's own
    dtype samples with the model itself; another one samples with a copy of its parameters in that dtype
    (:func:`ibtpo.precision.cast_copy`; e.g. a bfloat16 rollout of a float32 policy: half the weight traffic per decode
    step), refreshed from the model by :meth:`sync_weights` after every update. The trainer's log-probs
    stay its own; ``ibtpo.logprob_mismatch`` reports how far the rollout's are."""

    def __init__(self, model, pad_token_id: int, device: str | torch.device = "cpu", compact_at: float = 0.75,
                 decode: str = "auto", dtype: str | torch.dtype | None = None):
        self.dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        self._source = None  # the model a low-precision copy is refreshed from
        self.model = None
        self.sync_weights(model)
        self.decode = decode
        self.compact_at = compact_at  # drop finished rows once at most this share of the batch is live
        self.pad_token_id = pad_token_id
        self.device = torch.device(device)
        self.stats = GenerationStats()
        self._llama = None  # (model, LlamaDecodeStep): kept across calls (fused projections, RoPE table)
        self._kernel = None  # the C kernel's caller (its thread pool), built on the first ``c`` call

    def sync_weights(self, model) -> None:
        """Sample from ``model``'s current weights from now on: the model itself, or (``dtype``) its copy,
        made on the first call and overwritten in place (cast) on the next ones."""
        if self.dtype is None or next(model.parameters()).dtype == self.dtype:
            self.model, self._source = model, None
        elif self._source is not model:
            self.model, self._source = cast_copy(model, self.dtype), model
        else:
            with torch.no_grad():
                for own, p in zip(self.model.parameters(), model.parameters(), strict=True):
                    own.copy_(p)

    def decode_path(self) -> DecodePath:
        """A fresh decode path for one generate call on the current model (:func:`~ibtpo.rollout.decode.choose`)."""
        name = choose(self.model, self.decode)
        if name == "hf":
            from .decode.hf_forward import HFForward

            return HFForward(self.model)
        if self._llama is None or self._llama[0] is not self.model:
            from ..model.plain_llama import LlamaDecodeStep

            self._llama = (self.model, LlamaDecodeStep(self.model))
        if name == "torch":
            from .decode.row_cache import LlamaRowCache

            return LlamaRowCache(self.model, self._llama[1])
        if name == "graph":
            from .decode.static_cache import LlamaStaticCache

            return LlamaStaticCache(self.model, self._llama[1])
        from .decode.attention_kernel import DecodeAttention
        from .decode.shared_prefix import LlamaSharedPrefix

        self._kernel = self._kernel or DecodeAttention()
        return LlamaSharedPrefix(self.model, self._llama[1], self._kernel)

    @torch.inference_mode()  # no autograd bookkeeping per op (~5-8% faster decoding than no_grad, measured)
    def generate(self, prefixes: Sequence[Sequence[int]], n: int, params: SamplingParams,
                 seed: int | None = None, max_new: Sequence[int] | None = None) -> list[list[Completion]]:
        t0 = time.perf_counter()
        if not prefixes:
            return []
        was_training = self.model.training
        self.model.eval()
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        ids, mask, pos = left_pad(prefixes, self.pad_token_id, self.device)
        total = len(prefixes) * n
        caps = torch.tensor([min(params.max_new_tokens, max_new[i // n]) if max_new is not None
                             else params.max_new_tokens for i in range(total)], device=self.device)
        path = self.decode_path()
        logits = path.prefill(ids, mask, pos, n, int(caps.max()))
        out = self._sample(path, logits, pos[:, -1].repeat_interleave(n) + 1, caps, params, gen)
        if was_training:
            self.model.train()
        self.stats.calls += 1
        self.stats.tokens_generated += out.generated
        self.stats.prefix_tokens_encoded += int(sum(len(p) for p in prefixes))
        self.stats.seconds += time.perf_counter() - t0
        flat = out.completions()
        return [flat[i * n:(i + 1) * n] for i in range(len(prefixes))]

    def _sample(self, path: DecodePath, logits, next_pos, caps, params: SamplingParams, gen) -> "Samples":
        """The sampling loop: a token per live row per step, until every row stopped or reached its cap."""
        stop = torch.tensor(sorted(set(params.stop_token_ids)) or [-1], device=self.device)
        total, steps = len(caps), int(caps.max())
        out = Samples.empty(total, steps, caps, self.device)
        rows = torch.arange(total, device=self.device)  # batch row -> output index
        live = torch.ones(total, dtype=torch.bool, device=self.device)  # batch row still generating
        n_live = total
        for step in range(steps):
            tok, lp, ent = sample_next(logits, params, gen)
            out.tok[rows, step], out.lp[rows, step], out.ent[rows, step] = tok, lp, ent
            out.generated += n_live
            hit_stop = live & torch.isin(tok, stop)
            out.stopped[rows[hit_stop]] = True
            ended = live & (hit_stop | (caps[rows] <= step + 1))
            out.length[rows[ended]] = step + 1
            live &= ~ended
            n_live = int(live.sum())
            if n_live == 0 or step == steps - 1:
                break
            if n_live <= self.compact_at * len(rows):  # drop finished rows from the batch
                keep = live.nonzero().squeeze(-1)
                rows, tok, next_pos, live = rows[keep], tok[keep], next_pos[keep], live[keep]
                path.compact(keep)
            logits = path.step(tok, next_pos, live)
            next_pos = next_pos + 1
        return out


def left_pad(prefixes: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, mask, pos)``, each ``(P, width)`` on ``device``: the prefixes left-padded with ``pad``, the
    attention mask (1 = token) and the positions (0 at each prefix's first token)."""
    width = max(len(p) for p in prefixes)
    ids = torch.full((len(prefixes), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prefixes), width), dtype=torch.long)
    for i, p in enumerate(prefixes):
        ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@dataclass
class Samples:
    """One generate call's outputs, preallocated ``(rows, steps)``: tokens, log-probs, entropies; per row
    its final length and whether it stopped on a stop token; the tokens generated over all rows."""

    tok: torch.Tensor
    lp: torch.Tensor
    ent: torch.Tensor
    length: torch.Tensor
    stopped: torch.Tensor
    generated: int = 0

    @classmethod
    def empty(cls, rows: int, steps: int, caps: torch.Tensor, device) -> "Samples":
        return cls(torch.zeros((rows, steps), dtype=torch.long, device=device),
                   torch.zeros((rows, steps), device=device), torch.zeros((rows, steps), device=device),
                   caps.clone(), torch.zeros(rows, dtype=torch.bool, device=device))

    def completions(self) -> list[Completion]:
        lengths, toks, lps, ents = self.length.tolist(), self.tok.tolist(), self.lp.tolist(), self.ent.tolist()
        return [Completion(toks[i][:L], lps[i][:L], ents[i][:L], "stop" if self.stopped[i] else "length")
                for i, L in enumerate(lengths)]
