"""The tiny policy: a small ``LlamaForCausalLM`` over the character tokenizer.

Llama, not Qwen2: in transformers 5.x a qwen2 checkpoint reloads with a tokenizer that
silently drops spaces and newlines.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


def build_tiny_llama(tokenizer: PreTrainedTokenizerFast, n_layer: int = 4, d_model: int = 128, n_head: int = 4,
                     d_mlp: int = 512, max_positions: int = 512, seed: int = 0) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_head,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
