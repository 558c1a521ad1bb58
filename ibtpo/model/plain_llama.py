"""Which models the hand-written Llama paths serve: the plain decode loop
(:class:`ibtpo.rollout.hf_backend.PlainLlamaDecoder`) and the packed prefix-trie forward
(:func:`ibtpo.logprobs.packed_logprobs`). Anything else keeps the HF forward."""

from __future__ import annotations


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
