"""IB-Score probe: the paper's analysis tool applied uniformly to every checkpoint of every method.

For one checkpoint as the policy, build trees on a fixed probe set (``probe.benchmark``, its first
``probe.n_problems`` problems) with a fixed sampler (IBTree (4,9,1,1) by default) and a fixed seed —
the same problems and seed for every method and step, baselines included — and record per problem:

- ``ib_score``   mean IB-Score over the tree's *branching* nodes (two or more children; METHOD.md §2,
  ``ibtpo.ib_score``). A node with one child has ``Cov = 0`` and its score is its child's confidence
  times ``-(1+beta)/beta`` (ratio 1), not a comparison of alternatives, and a tree's many single-child
  step nodes would drown the signal: averaging over branching nodes is our choice; ``ib_score_all`` /
  ``cov_eta_all`` keep the mean over every non-leaf node;
- ``cov_eta``    mean ``Cov(eta1, eta2)`` over the same branching nodes (the exploitation term);
- ``root_ib`` / ``root_cov``  the same at the root only;
- ``entropy``    mean per-token entropy of the generated tokens (policy at the sampling temperature);
- ``effective``  1 if the tree's leaf rewards are not all equal (Eff-Rate), ``avg_rate`` the mean leaf reward;
- ``tokens``     generated tokens (a shared prefix counted once).

The JSON holds the per-problem records (bootstrap over problems) and their means. The probe uses
the preset's rollout sampling settings; β and the IB-Score switches (``pi_mode``, ``zero_parent``) are
``probe.ib`` (one :class:`~ibtpo.ib_score.IBParams`, shared by the probe's IBTree sampler and the
scores; defaults as METHOD.md: ``length_norm``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from ..data.problems import load_problems
from ..grading import Grader
from ..ib_score import IBParams, cov_eta, ib_score, non_leaf_nodes
from ..model.load import load_policy
from ..registry import build_sampler
from ..rollout.context import RolloutContext
from ..rollout.factory import make_backend, rollout_sampling
from ..rollout.tree import Tree

SUMMARY_KEYS = ("ib_score", "cov_eta", "ib_score_all", "cov_eta_all", "root_ib", "root_cov", "entropy",
                "effective", "avg_rate", "tokens", "n_branching")


def tree_record(tree: Tree, ib: IBParams = IBParams()) -> dict:
    """The probe's statistics of one finished tree (see the module docstring)."""
    inner = non_leaf_nodes(tree)
    scores = {n: ib_score(tree, n, ib) for n in inner}
    cov = {n: cov_eta(tree, n, ib) for n in inner}
    branching = [n for n in inner if len(tree.nodes[n].children) >= 2] or [0]
    ent = [e for node in tree.nodes[1:] for e in node.entropies]
    rewards = tree.rewards()
    return {
        "id": tree.problem["id"],
        "ib_score": float(np.mean([scores[n] for n in branching])),
        "cov_eta": float(np.mean([cov[n] for n in branching])),
        "ib_score_all": float(np.mean(list(scores.values()))),
        "cov_eta_all": float(np.mean(list(cov.values()))),
        "n_branching": len(branching),
        "root_ib": scores[0],
        "root_cov": cov[0],
        "entropy": float(np.mean(ent)) if ent else float("nan"),
        "effective": float(len(set(rewards)) > 1),
        "avg_rate": float(np.mean(rewards)),
        "tokens": float(tree.generated_tokens),
        "n_inner": len(inner),
        "n_leaves": len(rewards),
    }


def summarize(records: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in records])) for k in SUMMARY_KEYS}


def probe_problems(cfg: dict, bench_dir: str | Path) -> list[dict]:
    """The fixed probe set: the same problems for every method and step."""
    pr = cfg["probe"]
    return load_problems(Path(bench_dir) / f"{pr['benchmark']}.jsonl")[: pr["n_problems"]]


def run(cfg: dict, checkpoint: str | Path, bench_dir: str | Path, out_json: str | Path, batch: int = 16) -> dict:
    pr = cfg["probe"]
    problems = probe_problems(cfg, bench_dir)
    ib = IBParams.of(pr.get("ib"))
    sampler = build_sampler(pr["sampler"], ib)
    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    model = load_policy(checkpoint, cfg["device"])
    trees = []
    with Grader.from_spec(cfg["evaluation"]) as grader:
        ctx = RolloutContext(make_backend(cfg, model, tok), tok, grader, rollout_sampling(cfg, tok),
                             cfg["prompt_template"])
        for i in range(0, len(problems), batch):
            trees += sampler.sample(problems[i:i + batch], ctx, seed=pr["seed"] + i)
            print(f"[probe] {min(i + batch, len(problems))}/{len(problems)} problems", flush=True)
    records = [tree_record(t, ib) for t in trees]
    out = {"checkpoint": str(checkpoint), "probe": pr, "problem_ids": [p["id"] for p in problems],
           "summary": summarize(records), "problems": records}
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(out_json) + ".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(out_json)
    print("[probe] " + " ".join(f"{k}={v:.4g}" for k, v in out["summary"].items()))
    return out



def add_arguments(p) -> None:
    from . import add_checkpoint

    add_checkpoint(p)
    p.add_argument("--bench-dir", required=True, help="folder of <benchmark>.jsonl files (make-data's bench/)")
    p.add_argument("--out", required=True, help="output JSON: per-tree records and their summary")


def main(args) -> int:
    from . import checkpoint_arg, job_config

    cfg = job_config(args)
    if "probe" not in cfg:
        raise SystemExit(f"probe: the preset {cfg['preset']!r} has no probe: section")
    run(cfg, checkpoint_arg(args), args.bench_dir, args.out)
    return 0
