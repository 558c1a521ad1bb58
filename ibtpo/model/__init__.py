"""The policy: a character-level tokenizer, the tiny Llama, and its supervised warm-up."""
