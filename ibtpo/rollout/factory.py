"""The rollout a preset config asks for: its generation backend and its sampling settings.

Every job that samples from a policy (train, preflight, probe, Table 3) builds them here.
"""

from __future__ import annotations

from .backend import SamplingParams


def make_backend(cfg: dict, model, tokenizer, device: str | None = None, model_path: str | None = None):
    """The preset's generation backend on ``device`` (default ``cfg['device']``; a process's own
    device in a multi-process run). ``model_path``: where a vLLM engine reads the model's config and
    tokenizer (default: where ``model`` was loaded from)."""
    name = cfg["rollout"]["backend"]
    if name == "hf":
        from .hf_backend import HFBackend

        return HFBackend(model, tokenizer.pad_token_id, device or cfg["device"], decode=cfg["rollout"]["decode"],
                         dtype=cfg["rollout"]["dtype"])
    if name == "vllm":
        from .vllm_backend import build_backend

        return build_backend(cfg, model, model_path)  # GPU-only extra: a clear error where vLLM is missing
    raise ValueError(f"rollout.backend: unknown backend {name!r}; allowed: ['hf', 'vllm']")


def rollout_sampling(cfg: dict, tokenizer) -> SamplingParams:
    """The preset's rollout sampling settings, stopping at the tokenizer's EOS."""
    ro = cfg["rollout"]
    return SamplingParams(temperature=ro["temperature"], top_p=ro["top_p"], top_k=ro["top_k"],
                          max_new_tokens=ro["max_new_tokens"], stop_token_ids=(tokenizer.eos_token_id,))
