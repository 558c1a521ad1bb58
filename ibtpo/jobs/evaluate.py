"""Evaluate one checkpoint on every benchmark of the preset with the preset's evaluation spec; first, every
prompt must fit the checkpoint's positions (:mod:`ibtpo.data.context_budget`, ``evaluation.overlong``)."""

from __future__ import annotations

from pathlib import Path

from . import add_checkpoint, checkpoint_arg, job_config
from ..data.context_budget import fit_evaluation
from ..eval.run import evaluate_checkpoint
from ..eval.tasks import evaluation_spec


def run(cfg: dict, checkpoint: str | Path, bench_dir: str | Path, out_dir: str | Path, seed: int = 0) -> dict:
    ev = cfg["evaluation"]
    benchmarks = {b: {"path": str(Path(bench_dir) / f"{b}.jsonl")} for b in ev["benchmarks"]}
    benchmarks, notes = fit_evaluation(cfg, str(checkpoint), benchmarks, out_dir)  # before any generation
    return evaluate_checkpoint(str(checkpoint), benchmarks, evaluation_spec(cfg), str(out_dir), device=cfg["device"],
                               seed=seed, model=ev["model"], notes=notes)


def add_arguments(p) -> None:
    add_checkpoint(p)
    p.add_argument("--bench-dir", required=True, help="folder of <benchmark>.jsonl files (make-data's bench/)")
    p.add_argument("--out-dir", required=True, help="writes <benchmark>.json (metrics, per-problem records) here")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of the evaluation (default %(default)s)")


def main(args) -> int:
    run(job_config(args), checkpoint_arg(args), args.bench_dir, args.out_dir, seed=args.seed)
    return 0
