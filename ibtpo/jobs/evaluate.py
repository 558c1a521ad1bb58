"""Evaluate one checkpoint on every benchmark of the preset with the preset's evaluation spec."""

from __future__ import annotations

import json
from pathlib import Path

from ..eval.run import evaluate_checkpoint


def run(cfg: dict, checkpoint: str | Path, bench_dir: str | Path, out_dir: str | Path, seed: int = 0) -> dict:
    ev = cfg["evaluation"]
    spec = {"prompt_template": cfg["prompt_template"], **{k: ev[k] for k in (
        "temperature", "top_p", "top_k", "max_new_tokens", "k", "pass_at", "batch_size", "grader_timeout_s")}}
    benchmarks = {b: {"path": str(Path(bench_dir) / f"{b}.jsonl")} for b in ev["benchmarks"]}
    return evaluate_checkpoint(str(checkpoint), benchmarks, spec, str(out_dir), device=cfg["device"], seed=seed,
                               model=ev["model"])


def checkpoint_of(marker: str | Path) -> str:
    """Train jobs declare small marker files; each names its checkpoint directory."""
    return json.loads(Path(marker).read_text())["checkpoint"]
