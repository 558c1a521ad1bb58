"""Train one (method, seed) run from the base policy; resumes from its latest checkpoint.

With ``train.num_processes > 1`` this runs once per process under ``accelerate launch`` (the
``train`` rule starts it so): each process joins the group (:mod:`ibtpo.distributed`), loads the
base model onto its own device and runs the same trainer; process 0 alone writes the run
directory's files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from transformers import AutoTokenizer

from .. import distributed
from ..data.problems import load_problems
from ..config import result_view
from ..grading import Grader
from ..model.load import load_policy
from ..provenance import provenance
from ..rollout.factory import make_backend, rollout_sampling
from ..trainer import Method, Trainer, TrainSettings


def run_fingerprint(cfg: dict, method: str, seed: int, base: str) -> str:
    """Everything that shapes a run's trajectory (the reward's answer rule too); a checkpoint is resumed
    only under the same one. Memory-only keys and new keys at their default are left out
    (:func:`ibtpo.config.result_view`): gradient checkpointing can be switched on to resume a run."""
    keys = {"method": cfg["method_defs"][method], "train": result_view("train", cfg["train"]),
            "rollout": result_view("rollout", cfg["rollout"]),
            "prompt_template": cfg["prompt_template"], "seed": seed, "base": str(base),
            "answer": cfg["evaluation"]["answer"]}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def set_aside_stale(run_dir: Path, fingerprint: str, log=print) -> None:
    """Checkpoints written under another configuration are moved aside (kept, never resumed)."""
    fp_file = run_dir / "run_fingerprint.txt"
    old = fp_file.read_text().strip() if fp_file.exists() else None
    if old != fingerprint and (run_dir / "ckpt").exists():
        stale = run_dir / f"stale-{old or 'unknown'}"
        stale.mkdir(exist_ok=True)
        for name in ("ckpt", "metrics.jsonl"):
            if (run_dir / name).exists():
                (run_dir / name).replace(stale / name)
        log(f"[train] configuration changed since {run_dir}/ckpt was written: moved it to {stale}, starting fresh")
    fp_file.write_text(fingerprint + "\n")


def run(cfg: dict, method: str, seed: int, base: str, train_data: str | Path, run_dir: str | Path, log=print) -> None:
    run_dir = Path(run_dir)
    settings = TrainSettings.of(cfg["train"], seed=seed)
    dist = distributed.init(cfg["device"], settings.num_processes)
    acc = dist.accelerator
    try:
        if acc.is_main_process:
            run_dir.mkdir(parents=True, exist_ok=True)
            set_aside_stale(run_dir, run_fingerprint(cfg, method, seed, base), log)
        acc.wait_for_everyone()
        mdef = cfg["method_defs"][method]
        device = str(dist.device)
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = load_policy(base, device)
        sampling = rollout_sampling(cfg, tokenizer)
        if acc.is_main_process:
            (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            extra = {"processes": acc.num_processes, "parallel": dist.strategy} if acc.num_processes > 1 else {}
            (run_dir / "provenance.json").write_text(json.dumps(
                provenance(job="train", method=method, seed=seed, base=str(base), answer=cfg["evaluation"]["answer"],
                           precision=settings.precision, gradient_checkpointing=settings.gradient_checkpointing,
                           **extra), indent=1))
        with Grader.from_spec(cfg["evaluation"]) as grader:
            trainer = Trainer(model, tokenizer, load_problems(train_data),
                              Method(method, mdef["sampler"], mdef["advantage"], mdef["loss"]),
                              settings, sampling, make_backend(cfg, model, tokenizer, device), grader, run_dir,
                              cfg["prompt_template"], device, log=log, dist=dist)
            trainer.fit()
            counts = distributed.sum_values({"calls": grader.calls, "timeouts": grader.timeouts})
            if acc.is_main_process:
                (run_dir / "grader.json").write_text(json.dumps({k: int(v) for k, v in counts.items()}))
        acc.wait_for_everyone()
    finally:
        acc.end_training()  # leaves the process group


def add_arguments(p) -> None:
    p.add_argument("--method", required=True, help="a method of the preset's method_defs")
    p.add_argument("--seed", type=int, required=True, help="the RL seed (data order, sampling)")
    p.add_argument("--base", required=True, help="the base policy's checkpoint directory")
    p.add_argument("--train-data", required=True, help="training problems JSONL (make-data's train.jsonl)")
    p.add_argument("--run-dir", required=True, help="the run's folder: ckpt/, metrics.jsonl, config, provenance")
    p.add_argument("--markers", nargs="*", default=[],
                   help="marker files to write when done, one per checkpoint step (<dir>/step_<N>.json)")


def write_markers(markers: list[str], run_dir: str | Path, method: str, seed: int) -> None:
    """One small JSON per checkpoint step (``<dir>/step_<N>.json``) naming its checkpoint: the train
    rule's declared outputs (the checkpoints themselves are not, so a failed job keeps them)."""
    from .. import checkpoint

    for marker in markers:
        step = int(Path(marker).stem.split("_")[-1])
        d = checkpoint.step_dir(Path(run_dir) / "ckpt", step)
        if not d.exists():
            raise SystemExit(f"[train] expected checkpoint {d} was not written")
        Path(marker).parent.mkdir(parents=True, exist_ok=True)
        Path(marker).write_text(json.dumps({"checkpoint": str(d), "step": step, "method": method, "seed": seed}))


def main(args) -> int:
    from . import job_config

    run(job_config(args), args.method, args.seed, args.base, args.train_data, args.run_dir)
    write_markers(args.markers, args.run_dir, args.method, args.seed)
    return 0
