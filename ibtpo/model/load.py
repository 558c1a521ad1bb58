"""Loading a policy checkpoint: the one way every job (train, probe, table3, preflight) does it."""

from __future__ import annotations

from pathlib import Path

import torch


def load_policy(path: str | Path, device: str | torch.device):
    """The causal LM at ``path`` (a checkpoint directory or an HF id): float32 weights whatever the
    checkpoint's dtype (the trainer and the probes compute in fp32), on ``device``, transformers'
    default attention implementation, in eval mode (as ``from_pretrained`` returns it; the trainer
    switches to train mode for its update)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
