"""Atomic checkpoints: HF-format weights + tokenizer + trainer state in ``step_{N}/``.

A checkpoint is written to ``step_{N}.tmp/`` and renamed to ``step_{N}/`` only when complete, so
a crash mid-save never leaves a directory that looks like a checkpoint; leftover ``.tmp``
directories are removed on the next start. ``trainer_state.pt`` holds what resuming needs:
optimizer and scheduler state, RNG states, the step counter and cumulative counters.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dir(ckpt_root: str | Path, step: int) -> Path:
    return Path(ckpt_root) / f"step_{step}"


def save(ckpt_root: str | Path, step: int, model, tokenizer, state: dict) -> Path:
    final = step_dir(ckpt_root, step)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def list_steps(ckpt_root: str | Path) -> list[int]:
    root = Path(ckpt_root)
    if not root.exists():
        return []
    steps = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).exists():
            steps.append(int(m.group(1)))
    return sorted(steps)


def clean_partial(ckpt_root: str | Path) -> None:
    root = Path(ckpt_root)
    if root.exists():
        for p in root.glob("step_*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def latest(ckpt_root: str | Path) -> int | None:
    steps = list_steps(ckpt_root)
    return steps[-1] if steps else None
