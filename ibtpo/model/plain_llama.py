"""The hand-written Llama: which models it serves, and its single-query decode step.

Two paths re-implement a ``LlamaForCausalLM`` forward on the layers' own modules, in
``LlamaModel.forward``'s order: the plain decode loop's step here (:class:`LlamaDecodeStep`, used by
the decode paths of :mod:`ibtpo.rollout.decode`) and the packed prefix-trie forward of
:func:`ibtpo.logprobs.packed_logprobs`. Both serve exactly the models :func:`is_plain_llama` accepts;
anything else keeps the HF forward.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def is_plain_llama(model) -> bool:
    """A ``LlamaForCausalLM`` (exactly) with SDPA attention, default RoPE, as many KV heads as query
    heads, SiLU, no tensor-parallel split and no hooks on its modules: what both paths re-implement."""
    from transformers import LlamaForCausalLM

    cfg = getattr(model, "config", None)
    if type(model) is not LlamaForCausalLM or cfg is None:
        return False
    rope = getattr(cfg, "rope_parameters", None) or {}
    if (cfg._attn_implementation != "sdpa" or rope.get("rope_type", "default") != "default"
            or cfg.num_key_value_heads != cfg.num_attention_heads or cfg.hidden_act != "silu"
            or getattr(cfg, "pretraining_tp", 1) != 1):
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """HF's RoPE helper: ``[x1, x2] -> [-x2, x1]`` on the last dimension's halves."""
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


# attend(layer, q (B, H, 1, D), k (B, H, D), v (B, H, D), scale) -> (B, H, 1, D): the decode path's cache
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


class LlamaDecodeStep:
    """One decode step of a plain Llama (query length 1) without the HF forward's per-step objects:
    ``LlamaModel.forward`` / ``LlamaDecoderLayer`` / ``LlamaAttention``, the attention left to the caller
    (which owns the KV cache). Kept across generate calls: the fused projections are rebuilt only when a
    parameter changed (:meth:`prepare`)."""

    def __init__(self, model):
        self.model = model
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
        if not self.fuse_weights:
            return lambda x: torch.cat([m(x) for m in modules], dim=-1)
        w = torch.cat([m.weight for m in modules])
        b = None if modules[0].bias is None else torch.cat([m.bias for m in modules])
        return lambda x: F.linear(x, w, b)

    def __call__(self, tok: torch.Tensor, pos: torch.Tensor, attend: Attend) -> torch.Tensor:
        """Logits ``(B, V)`` after feeding ``tok`` (B,) at positions ``pos`` (B,), after :meth:`prepare` for
        this call's positions; each layer's attention is ``attend(layer, q, k, v, scale)``, which also
        stores the new key / value in the caller's cache."""
        h = self.base.embed_tokens(tok)  # (B, d)
        B = h.shape[0]
        cos_t, sin_t = self._rope
        cos, sin = cos_t[pos][:, None, None, :], sin_t[pos][:, None, None, :]  # broadcast over q/k and heads
        for i, (layer, (qkv_proj, gate_up_proj)) in enumerate(zip(self.layers, self._fused)):
            att = layer.self_attn
            residual = h
            x = layer.input_layernorm(h)
            qkv = qkv_proj(x).view(B, 3, -1, att.head_dim)  # (B, q/k/v, heads, head_dim)
            qk = qkv[:, :2] * cos + rotate_half(qkv[:, :2]) * sin  # HF's apply_rotary_pos_emb on q and k
            a = attend(i, qk[:, 0, :, None], qk[:, 1], qkv[:, 2], att.scaling)
            h = residual + att.o_proj(a.reshape(B, -1))
            residual = h
            gate, up = gate_up_proj(layer.post_attention_layernorm(h)).chunk(2, dim=-1)
            h = residual + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)
        return self.lm_head(self.base.norm(h))
