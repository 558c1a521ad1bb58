"""Supervised warm-up that turns a freshly built tiny model into the RL *base model*.

Completion-only cross-entropy on ``template(problem) + solution + <eos>``; AdamW with linear
warm-up, then a constant LR (``schedule: constant``) or a cosine decay to ``min_lr_frac * lr`` at the
last step (``schedule: cosine``), gradient clipping; batches drawn by a seeded RNG. The step count (not
wall time) fixes the budget, so the base model is deterministic given the config. It is
deliberately under-trained (roughly 20-60% on the in-distribution test): RL needs room to improve.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch


def encode_examples(tokenizer, problems: list[dict], template: str) -> list[tuple[list[int], list[int]]]:
    out = []
    for p in problems:
        prompt = tokenizer(template.format(problem=p["problem"]), add_special_tokens=False)["input_ids"]
        target = tokenizer(p["solution"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append((prompt, target))
    return out


def lr_factor(step: int, steps: int, warmup: int, schedule: str = "constant", min_lr_frac: float = 0.0) -> float:
    """LR multiplier at optimizer step ``step`` (0-based): ``(step+1)/warmup`` during warm-up, then 1
    (constant) or ``min + (1-min) * (1 + cos(pi * t)) / 2`` with ``t`` from 0 after warm-up to 1 at the
    last step (cosine)."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    if schedule == "constant":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, steps - 1 - warmup))
    return min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))


def sft(model, tokenizer, problems: list[dict], template: str, steps: int, batch_size: int = 32, lr: float = 2e-3,
        warmup: int = 100, weight_decay: float = 0.01, grad_clip: float = 1.0, seed: int = 0,
        schedule: str = "constant", min_lr_frac: float = 0.0, log=print, log_every: int = 50) -> list[dict]:
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"policy.sft.schedule: {schedule!r}; allowed: ['constant', 'cosine']")
    examples = encode_examples(tokenizer, problems, template)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup, schedule, min_lr_frac))
    model.train()
    history, t0, pad = [], time.perf_counter(), tokenizer.pad_token_id
    for step in range(1, steps + 1):
        batch = [examples[i] for i in rng.integers(0, len(examples), batch_size)]
        width = max(len(p) + len(t) for p, t in batch)
        ids = torch.full((batch_size, width), pad, dtype=torch.long)
        labels = torch.full((batch_size, width), -100, dtype=torch.long)
        attn = torch.zeros((batch_size, width), dtype=torch.long)
        for i, (p, t) in enumerate(batch):
            seq = p + t
            ids[i, :len(seq)] = torch.as_tensor(seq)
            labels[i, len(p):len(seq)] = torch.as_tensor(t)
            attn[i, :len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            rec = {"step": step, "loss": loss.item(), "elapsed_s": time.perf_counter() - t0}
            history.append(rec)
            log(f"[sft] step {step}/{steps} loss={rec['loss']:.4f} elapsed={rec['elapsed_s']:.0f}s")
    model.eval()
    return history
