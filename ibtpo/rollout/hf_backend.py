"""Transformers generation backend: batched sampling with a KV cache.

Prefixes are left-padded and prefilled once (one model call); the prefilled cache is forked ``n``
ways, so ``n`` samples of one prefix pay for its encoding once. Finished rows are dropped from the
batch once at most ``compact_at`` (default 75%) of the batch is still live, so the decode cost
follows the live rows, not the longest sample, without re-indexing the cache at every step (13%
faster generation measured on the tiny model than compacting whenever a row finishes). Outputs are
written into preallocated tensors and converted to lists once.

Decoding: for a Llama-architecture model (:func:`plain_decoder`: ``LlamaForCausalLM`` with SDPA
attention, default RoPE, one KV head per query head, no module hooks) the decode steps bypass the HF
forward: a preallocated KV cache per layer (keys stored transposed; a step writes one column and
attends to the filled slice), a padding mask instead of per-step 4D masks, no per-step cache objects,
and the single query's attention as a small C kernel (:mod:`~ibtpo.rollout.decode_kernel`); everything
else calls the layers' own modules in ``LlamaModel.forward``'s order. With the kernel the cache keeps
each prefix's prefilled keys / values once (read once for all its ``n`` samples) and each row's
generated ones, and the model runs on the live rows only: a finished row leaves the compute batch at
once and keeps its cache row (the kernel reads cache rows through an index), so the cache is never
copied; the sampling batch is still compacted at ``compact_at``, so every path draws the same random
stream. Where the kernel cannot be built, or with ``attention="torch"``, the cache is per row
(prefix width + the step budget, the prefill repeated ``n`` times, compacted with the batch) and the
attention two small batched GEMMs (the CPU SDPA kernels cost ~2x that at query length 1). The
logits equal the HF loop's up to float rounding (the attention's summation order: log-probs within
~1e-6, the same samples in practice; measured: identical tokens on the tiny model). The prefill is
the HF forward. Any other model decodes through the HF forward with a ``DynamicCache`` (forked with
``batch_repeat_interleave``, compacted with ``batch_select_indices``); ``plain=False`` forces that path.
"""

from __future__ import annotations

import inspect
import time
from typing import Sequence

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


class PlainLlamaDecoder:
    """One decode step of a ``LlamaForCausalLM`` on a preallocated KV cache, without the HF forward's
    per-step objects: ``LlamaModel.forward`` / ``LlamaDecoderLayer`` / ``LlamaAttention`` for a query
    length of 1 (see the module docstring)."""

    def __init__(self, model, attention: str = "auto"):
        from .decode_kernel import DecodeAttention

        self.attend = DecodeAttention(attention)
        self.base, self.lm_head = model.model, model.lm_head
        self.layers = list(self.base.layers[: model.config.num_hidden_layers])
        self.params = list(model.parameters())
        # one GEMM per fused projection on the CPU; elsewhere no second copy of the weights (projections)
        self.fuse_weights = self.params[0].device.type == "cpu"
        self._fused_at = None  # the parameters' versions the fused projections were built from (prepare)
        self._fused: list = []  # per layer (qkv, gate_up): x -> [q | k | v], x -> [gate | up]
        self._rope = None  # (cos, sin) by position (prepare)

    def prepare(self, positions: int) -> None:
        """Before a generate call (not per step): the fused projections, rebuilt if a parameter changed
        since the last call (in place, which bumps its version, as an optimizer step does, or by a new
        storage), and a RoPE table covering ``positions``."""
        versions = tuple((p.data_ptr(), p._version) for p in self.params)
        if self._fused_at != versions:
            self._fused = [(self._fuse([la.self_attn.q_proj, la.self_attn.k_proj, la.self_attn.v_proj]),
                            self._fuse([la.mlp.gate_proj, la.mlp.up_proj])) for la in self.layers]
            self._fused_at = versions
        if self._rope is None or self._rope[0].shape[0] < positions:
            ref = self.lm_head.weight
            pos = torch.arange(positions, device=ref.device)[None]
            # the HF module's values: it multiplies each position by the inverse frequencies elementwise
            cos, sin = self.base.rotary_emb(ref.new_empty(()), position_ids=pos)
            self._rope = (cos[0], sin[0])

    def _fuse(self, modules):
        """``x -> [m(x) for m in modules]`` concatenated: on the CPU one GEMM on the weights' rows
        concatenated (the same dot products as the separate projections); elsewhere the separate
        projections (no second copy of ~60% of a large model's weights in accelerator memory)."""
        import torch.nn.functional as F

        if not self.fuse_weights:
            return lambda x: torch.cat([m(x) for m in modules], dim=-1)
        w = torch.cat([m.weight for m in modules])
        b = None if modules[0].bias is None else torch.cat([m.bias for m in modules])
        return lambda x: F.linear(x, w, b)

    def shares_prefixes(self, prefill: DynamicCache) -> bool:
        """Whether this generate call uses the kernel's cache (:class:`~ibtpo.rollout.decode_kernel.SharedPrefixKV`:
        each prefix's keys once, rows indexed), else the per-row ``[Kt, V]`` cache and torch matmuls."""
        return self.attend.applies(prefill.layers[0].keys)

    def cache(self, prefill: DynamicCache, rows: int, width: int, room: int, n: int) -> list:
        """Per layer, with the kernel a :class:`~ibtpo.rollout.decode_kernel.SharedPrefixKV` (each prefix's
        prefilled keys / values once, ``room`` generated columns per row); else ``[Kt, V]``: the keys
        transposed, ``(rows, heads, head_dim, width + room)``, and the values, ``(rows, heads, width + room,
        head_dim)``, with the prefilled keys / values (each prefix repeated ``n`` times) in the first
        ``width`` columns."""
        from .decode_kernel import SharedPrefixKV

        if self.shares_prefixes(prefill):
            return [SharedPrefixKV.from_prefill(layer.keys, layer.values, n, room) for layer in prefill.layers]
        out = []
        for layer in prefill.layers:
            k, v = layer.keys, layer.values
            if n > 1:
                k, v = k.repeat_interleave(n, dim=0), v.repeat_interleave(n, dim=0)
            kt = k.new_empty((rows, k.shape[1], k.shape[3], width + room))
            kt[..., :width] = k.transpose(2, 3)
            vb = v.new_empty((rows, v.shape[1], width + room, v.shape[3]))
            vb[:, :, :width] = v
            out.append([kt, vb])
        return out

    def step(self, tok: torch.Tensor, pos: torch.Tensor, kv: list, width: int, step: int, bias=None, pmask=None,
             rows=None) -> torch.Tensor:
        """Logits ``(B, V)`` after feeding ``tok`` (B,) at positions ``pos`` (B,) as generated column ``step``
        (after :meth:`prepare` for this call's positions; cache column ``width + step`` of the per-row
        cache). Per-row cache: ``bias`` ``(B, 1, 1, width + step + 1)`` added to the attention scores (0 or
        -inf), or ``None``. Kernel cache: ``rows`` (B,) the cache row of each batch row, ``pmask``
        ``(prefixes, width)`` bool (True = attend) or ``None``."""
        from .decode_kernel import torch_attention

        h = self.base.embed_tokens(tok)  # (B, d)
        B = h.shape[0]
        cos_t, sin_t = self._rope
        cos, sin = cos_t[pos][:, None, None, :], sin_t[pos][:, None, None, :]  # broadcast over q/k and heads
        for layer, kvl, (qkv_proj, gate_up_proj) in zip(self.layers, kv, self._fused):
            att = layer.self_attn
            residual = h
            x = layer.input_layernorm(h)
            qkv = qkv_proj(x).view(B, 3, -1, att.head_dim)  # (B, q/k/v, heads, head_dim)
            qk = qkv[:, :2] * cos + _rotate_half(qkv[:, :2]) * sin  # HF's apply_rotary_pos_emb on q and k
            q, k, v = qk[:, 0, :, None], qk[:, 1], qkv[:, 2]
            # attention of one query: the C kernel, else two small batched GEMMs (decode_kernel.py)
            if rows is not None:
                kvl.write(step, k, v, rows)
                a = self.attend(q, kvl, step + 1, pmask, att.scaling, rows)
            else:
                Kt, V = kvl
                col = width + step
                Kt[..., col] = k
                V[:, :, col] = v
                a = torch_attention(q, Kt, V, col + 1, bias, att.scaling)
            h = residual + att.o_proj(a.reshape(B, -1))
            residual = h
            gate, up = gate_up_proj(layer.post_attention_layernorm(h)).chunk(2, dim=-1)
            h = residual + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)
        return self.lm_head(self.base.norm(h))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def plain_decoder(model, attention: str = "auto") -> PlainLlamaDecoder | None:
    """The plain decode path for ``model``, or ``None`` where it does not apply (then the HF forward
    decodes): see :func:`~ibtpo.model.plain_llama.is_plain_llama`. ``attention``: the decode attention
    (:mod:`~ibtpo.rollout.decode_kernel`: ``auto`` the C kernel where it builds, ``c``, ``torch``)."""
    from ..model.plain_llama import is_plain_llama

    return PlainLlamaDecoder(model, attention) if is_plain_llama(model) else None


class HFBackend(GenerationBackend):
    """Generation on a ``transformers`` causal LM that the trainer updates in place."""

    def __init__(self, model, pad_token_id: int, device: str | torch.device = "cpu", compact_at: float = 0.75,
                 plain: bool = True, attention: str = "auto"):
        self.model = model
        self.plain = plain  # the plain decode loop where it applies (False: always the HF forward)
        self.attention = attention  # the plain loop's decode attention: auto | c | torch (decode_kernel.py)
        self._decoder = None  # (model, attention, PlainLlamaDecoder)
        self.compact_at = compact_at  # drop finished rows once at most this share of the batch is live
        self.pad_token_id = pad_token_id
        self.device = torch.device(device)
        self.stats = GenerationStats()
        self._cache_kw = cache_keyword(model)

    def _plain_decoder(self) -> PlainLlamaDecoder | None:
        """The plain decode loop for the current model (kept across calls: its fused projections and RoPE
        table are rebuilt only when needed, by :meth:`PlainLlamaDecoder.prepare`), or ``None``."""
        from ..model.plain_llama import is_plain_llama

        if not is_plain_llama(self.model):
            return None
        if self._decoder is None or self._decoder[0] is not self.model or self._decoder[1] != self.attention:
            self._decoder = (self.model, self.attention, PlainLlamaDecoder(self.model, self.attention))
        return self._decoder[2]

    def sync_weights(self, model) -> None:
        self.model = model
        self._cache_kw = cache_keyword(model)

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
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         **{self._cache_kw: cache})
        if isinstance(self.model, PreTrainedModel) and cache.get_seq_length() != width:
            raise RuntimeError(f"the model did not fill the KV cache (argument {self._cache_kw!r}); "
                               "this transformers version is not supported by the HF backend")
        logits = out.logits[:, -1, :]
        total = len(prefixes) * n
        caps = torch.tensor([min(params.max_new_tokens, max_new[i // n]) if max_new is not None
                             else params.max_new_tokens for i in range(total)], device=self.device)
        steps = int(caps.max())
        plain = self._plain_decoder() if self.plain else None
        prefix_mask = mask
        if n > 1:
            logits = logits.repeat_interleave(n, dim=0)
            mask = mask.repeat_interleave(n, dim=0)
            pos = pos.repeat_interleave(n, dim=0)
        if plain is not None:  # preallocated cache and mask: the prefix, then one column per step
            # with the C kernel each prefix's keys are kept once and finished rows leave the batch but
            # keep their cache rows (no cache copies); else a per-row cache with an additive padding bias
            shared = plain.shares_prefixes(cache)
            plain.prepare(int(pos.max()) + 1 + steps)
            kv = plain.cache(cache, total, width, steps, n)
            del cache
            if shared:
                pmask = prefix_mask.bool() if not bool(prefix_mask.all()) else None
            else:
                mask = torch.cat([mask.bool(), mask.new_ones((total, steps), dtype=torch.bool)], dim=-1)
                padded = not bool(mask[:, :width].all())
                # the bias in the activations' dtype (a float32 bias would promote bf16/fp16 scores)
                bias = torch.zeros(mask.shape, device=self.device, dtype=kv[0][0].dtype).masked_fill_(
                    ~mask, float("-inf"))
        elif n > 1:
            cache.batch_repeat_interleave(n)
        next_pos = pos[:, -1] + 1

        out_tok = torch.zeros((total, steps), dtype=torch.long, device=self.device)
        out_lp = torch.zeros((total, steps), device=self.device)
        out_ent = torch.zeros((total, steps), device=self.device)
        length = caps.clone()  # final length of each sample
        stopped = torch.zeros(total, dtype=torch.bool, device=self.device)
        rows = torch.arange(total, device=self.device)  # batch row -> output index
        live = torch.ones(total, dtype=torch.bool, device=self.device)  # batch row still generating
        generated, n_live = 0, total
        for step in range(steps):
            tok, lp, ent = sample_next(logits, params, gen)
            out_tok[rows, step], out_lp[rows, step], out_ent[rows, step] = tok, lp, ent
            generated += n_live
            hit_stop = live & torch.isin(tok, stop)
            stopped[rows[hit_stop]] = True
            ended = live & (hit_stop | (caps[rows] <= step + 1))
            length[rows[ended]] = step + 1
            live &= ~ended
            n_live = int(live.sum())
            if n_live == 0 or step == steps - 1:
                break
            if n_live <= self.compact_at * len(rows):  # drop finished rows from the batch
                keep = live.nonzero().squeeze(-1)
                rows, tok, next_pos, live = rows[keep], tok[keep], next_pos[keep], live[keep]
                if plain is None:
                    mask = mask[keep]
                    cache.batch_select_indices(keep)
                elif not shared:
                    kv = [[t[keep] for t in layer] for layer in kv]
                    mask, bias = mask[keep], bias[keep]
                    padded = not bool(mask[:, :width].all())
            if plain is not None and shared:
                # the model runs on the live rows only (their cache rows through `rows`); the sampling
                # batch keeps the finished rows until the next compaction (zero logits), so the random
                # stream, hence every sample, is the one the other paths draw
                sub = None if n_live == len(rows) else live.nonzero().squeeze(-1)
                args = (tok, next_pos, rows) if sub is None else (tok[sub], next_pos[sub], rows[sub])
                out = plain.step(args[0], args[1], kv, width, step, pmask=pmask, rows=args[2])
                if sub is None:
                    logits = out
                else:
                    logits = out.new_zeros((len(rows), out.shape[1]))
                    logits[sub] = out
            elif plain is not None:
                col = width + step
                logits = plain.step(tok, next_pos, kv, width, step, bias[:, None, None, :col + 1] if padded else None)
            else:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
                out = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                                 use_cache=True, **{self._cache_kw: cache})
                logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        lengths, toks, lps, ents = length.tolist(), out_tok.tolist(), out_lp.tolist(), out_ent.tolist()
        flat = [Completion(toks[i][:L], lps[i][:L], ents[i][:L], "stop" if stopped[i] else "length")
                for i, L in enumerate(lengths)]
        if was_training:
            self.model.train()
        self.stats.calls += 1
        self.stats.tokens_generated += generated
        self.stats.prefix_tokens_encoded += int(sum(len(p) for p in prefixes))
        self.stats.seconds += time.perf_counter() - t0
        return [flat[i * n:(i + 1) * n] for i in range(len(prefixes))]
