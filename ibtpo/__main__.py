"""Command line: ``python -m ibtpo <job> --config <preset or file> ...``.

Jobs: ``make-data``, ``build-base``, ``train``, ``evaluate``, ``table1``. The Snakefile calls these;
they can also be run by hand. ``--config`` takes a preset name (``tiny``), a preset file, or the
resolved config a DAG run writes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .ib_score import PI_MODES, ZERO_PARENT, IBParams


def _quiet_transformers() -> None:
    """No per-file progress bars from transformers in job logs (our own per-step lines remain)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ibtpo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny", help="preset name or config YAML (default: tiny)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for this job")
    sub = ap.add_subparsers(dest="job", required=True)
    p = sub.add_parser("make-data", help="generate / load the preset's problem sets as JSONL")
    p.add_argument("--out-dir", required=True)
    p = sub.add_parser("build-base", help="tokenizer + tiny Llama + supervised warm-up")
    p.add_argument("--sft-data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--index", type=int, default=0,
                   help="base model i of policy.base_models: SFT seed policy.sft.seed + i (default 0)")
    p = sub.add_parser("train", help="train one method/seed (resumes from its last checkpoint)")
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--train-data", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--markers", nargs="*", default=[], help="files to write when done, one per checkpoint step")
    p = sub.add_parser("evaluate", help="evaluate one checkpoint on the preset's benchmarks")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint")
    g.add_argument("--marker", help="a train job's checkpoint marker file")
    p.add_argument("--bench-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("score-tree", help="IB-Score and IB-TPO advantages of a tree JSON (see ibtpo/score_tree.py)")
    p.add_argument("tree")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--beta", type=float, default=IBParams.beta, help="IB beta (default %(default)s)")
    p.add_argument("--lam", type=float, default=0.1, help="weight of A_IB in A (default %(default)s)")
    p.add_argument("--pi-mode", default=IBParams.pi_mode, choices=PI_MODES,
                   help="step probability normalisation, METHOD.md §1 (default %(default)s)")
    p.add_argument("--zero-parent", default=IBParams.zero_parent, choices=ZERO_PARENT,
                   help="rule when the parent has no correct leaf (default %(default)s)")
    p.add_argument("--advantage", default="ibtpo", choices=["ibtpo", "treerl"])
    p.add_argument("--treerl-variant", default="paper", choices=["paper", "code"])
    p = sub.add_parser("table3", help="branching statistics: chains G=8/12 vs IBTree on base and trained policy")
    p.add_argument("--base", required=True)
    p.add_argument("--trained", required=True, help="checkpoint dir or a train job's marker file")
    p.add_argument("--trained-label", default="trained")
    p.add_argument("--problems", required=True)
    p.add_argument("--n-problems", type=int, default=64)
    p.add_argument("--csv", required=True)
    p.add_argument("--details", help="per-problem tokens and rewards (JSON)")
    p = sub.add_parser("probe", help="IB-Score probe of one checkpoint on the preset's fixed probe set")
    p.add_argument("--checkpoint", help="checkpoint directory (or use --marker)")
    p.add_argument("--marker", help="a train job's marker file naming the checkpoint")
    p.add_argument("--bench-dir", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("preflight", help="one full-size update step and generation: fail early if it does not fit")
    p.add_argument("--base", required=True)
    p.add_argument("--train-data", required=True)
    p.add_argument("--out", help="JSON report")
    p.add_argument("--max-memory-gb", type=float, default=None, help="fail when a phase's peak exceeds this (GiB)")
    p = sub.add_parser("table1", help="results/table1.{csv,md} from evaluation files")
    p.add_argument("--rows", required=True, help="JSON: {method: {benchmark: [files per seed]}}")
    p.add_argument("--csv", required=True)
    p.add_argument("--md", required=True)
    args = ap.parse_args(argv)
    if args.job == "score-tree":
        from .score_tree import TreeFormatError, main as score_main

        try:
            ib = IBParams(args.beta, args.pi_mode, args.zero_parent)
            print(score_main(args.tree, args.json, lam=args.lam, ib=ib, advantage=args.advantage,
                             treerl_variant=args.treerl_variant))
        except TreeFormatError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0

    from .config import load_config

    cfg = load_config(args.config)
    _threads(args.threads or cfg.get("threads_per_job"))
    if args.job not in ("make-data", "table1"):
        _quiet_transformers()
    if args.job == "make-data":
        from .jobs import make_data

        for name, path in make_data.run(cfg, args.out_dir).items():
            print(f"[make-data] {name}: {path}")
    elif args.job == "build-base":
        from .jobs import build_base

        print(f"[build-base] wrote {build_base.run(cfg, args.sft_data, args.out, args.index)}")
    elif args.job == "train":
        from . import checkpoint
        from .jobs import train

        train.run(cfg, args.method, args.seed, args.base, args.train_data, args.run_dir)
        for marker in args.markers:  # "<path>/step_<N>.json"
            step = int(Path(marker).stem.split("_")[-1])
            d = checkpoint.step_dir(Path(args.run_dir) / "ckpt", step)
            if not d.exists():
                raise SystemExit(f"[train] expected checkpoint {d} was not written")
            Path(marker).parent.mkdir(parents=True, exist_ok=True)
            Path(marker).write_text(json.dumps({"checkpoint": str(d), "step": step, "method": args.method, "seed": args.seed}))
    elif args.job == "evaluate":
        from .jobs import evaluate

        ckpt = args.checkpoint or evaluate.checkpoint_of(args.marker)
        evaluate.run(cfg, ckpt, args.bench_dir, args.out_dir, seed=args.seed)
    elif args.job == "table3":
        from .jobs import evaluate, table3

        trained = evaluate.checkpoint_of(args.trained) if args.trained.endswith(".json") else args.trained
        df = table3.run(cfg, {"base": args.base, args.trained_label: trained}, args.problems, args.csv,
                        n_problems=args.n_problems, details_json=args.details)
        print(df.to_string(index=False))
    elif args.job == "probe":
        from .jobs import evaluate, probe

        probe.run(cfg, args.checkpoint or evaluate.checkpoint_of(args.marker), args.bench_dir, args.out)
    elif args.job == "preflight":
        from .jobs import preflight

        try:
            preflight.run(cfg, args.base, args.train_data, args.out, max_memory_gb=args.max_memory_gb)
        except preflight.PreflightFailed as e:
            print(e, file=sys.stderr)
            return 1
    elif args.job == "table1":
        from .jobs import table1

        df = table1.run(cfg, json.loads(Path(args.rows).read_text()), args.csv, args.md)
        print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
