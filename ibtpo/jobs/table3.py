"""Table 3 at toy scale: chains G=8 and G=12, random branching (4,9,1,1), entropy-guided EPTree
(4,2,1,1) and IBTree (4,9,1,1) on the same problems, with the base model and a trained checkpoint
as the policy (Eff-Rate, Avg-Rate, tokens, wall time, and for tree samplings where they fork:
``fork_root_share`` = % of forks at the root, ``fork_position`` = mean % of the response written
before a fork, :mod:`ibtpo.analysis.forks`; empty for chains). Written as .csv/.md/.tex; the
per-problem generated tokens and rewards go to a JSON (the claims report bootstraps the token ratio
from it), with the fork statistics as fractions (``None`` for chains) and ``n_forks``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from transformers import AutoTokenizer

from ..analysis.branching import sampler_stats
from ..analysis.forks import fork_stats
from ..analysis.results import write_all
from ..data.problems import load_problems
from ..grading import Grader
from ..ib_score import IBParams
from ..model.load import load_policy
from ..registry import build_sampler
from ..rollout.context import RolloutContext
from ..rollout.factory import make_backend, rollout_sampling

SAMPLINGS = [
    ("independent", {"name": "chains", "G": 8}),
    ("independent", {"name": "chains", "G": 12}),
    ("random branching", {"name": "random_tree", "B0": 4, "L": 9, "K": 1, "B": 1}),
    ("entropy-guided (TreeRL)", {"name": "eptree", "M": 4, "N": 2, "L": 1, "T": 1}),
    ("IB-guided", {"name": "ibtree", "B0": 4, "L": 9, "K": 1, "B": 1}),  # with the preset's probe.ib
]


def _pct(x: float | None) -> float | None:
    """A fraction as a percentage (1 decimal); ``None`` (no forks) stays empty in the table."""
    return None if x is None else round(100 * x, 1)


def run(cfg: dict, checkpoints: dict[str, str], problems_path: str, out_csv: str | Path, n_problems: int = 64,
        samplings=SAMPLINGS, seed: int = 0, details_json: str | Path | None = None) -> pd.DataFrame:
    problems = load_problems(problems_path)[:n_problems]
    ib = IBParams.of((cfg.get("probe") or {}).get("ib"))  # the preset's IB parameters (probe.ib)
    rows, details = [], []
    with Grader.from_spec(cfg["evaluation"]) as grader:
        for label, path in checkpoints.items():
            tok = AutoTokenizer.from_pretrained(path)
            model = load_policy(path, cfg["device"])
            ctx = RolloutContext(make_backend(cfg, model, tok), tok, grader, rollout_sampling(cfg, tok),
                                 cfg["prompt_template"])
            for name, spec in samplings:
                sampler = build_sampler(spec, ib)
                if spec["name"] == "ibtree":  # the IB parameters in use, where a reader sees them
                    name = f"{name} (beta={ib.beta:g}, pi={ib.pi_mode})"
                s = sampler_stats(sampler, problems, ctx, seed=seed)
                fk = fork_stats(s["trees"])
                details.append({"policy": label, "sampling": name, "G": s["G"],
                                **{k: fk[k] for k in ("fork_root_share", "fork_position", "n_forks")},
                                "problem_ids": [t.problem["id"] for t in s["trees"]],
                                "tokens": [t.generated_tokens for t in s["trees"]],
                                "rewards": [t.rewards() for t in s["trees"]]})
                rows.append({"policy": label, "sampling": name, "G": s["G"], "eff_rate": round(s["eff_rate"], 1),
                             "avg_rate": round(s["avg_rate"], 1),
                             "tokens_per_problem": round(s["tokens_per_problem"], 1),
                             "fork_root_share": _pct(fk["fork_root_share"]), "fork_position": _pct(fk["fork_position"]),
                             "seconds": round(s["seconds"], 2), "n_problems": len(problems)})
                print(f"[table3] {label:>8} {name:<22} G={s['G']:.0f} eff={s['eff_rate']:.1f}% "
                      f"avg={s['avg_rate']:.1f}% tokens/problem={s['tokens_per_problem']:.0f} t={s['seconds']:.1f}s"
                      + (f" forks root={100 * fk['fork_root_share']:.0f}% pos={fk['fork_position']:.2f}"
                         if fk["n_forks"] else ""))
    df = pd.DataFrame(rows)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    write_all(df.assign(kind="method",
                        label=df["policy"] + " / " + df["sampling"] + " G=" + df["G"].map("{:.0f}".format)),
              Path(out_csv).with_suffix(""),
              ["eff_rate", "avg_rate", "tokens_per_problem", "fork_root_share", "fork_position"],
              f"Table 3 ({cfg['preset']} preset): sampling statistics on {len(problems)} problems",
              higher={"tokens_per_problem": False, "fork_root_share": False}, csv_df=df)
    if details_json:
        Path(details_json).write_text(json.dumps(details))
    return df



def add_arguments(p) -> None:
    p.add_argument("--base", required=True, help="the base model's checkpoint directory")
    p.add_argument("--trained", required=True,
                   help="the trained policy: checkpoint directory or a train job's marker file")
    p.add_argument("--trained-label", default="trained", help="its row label, e.g. ibtpo@30 (default %(default)s)")
    p.add_argument("--problems", required=True, help="problems JSONL (the first --n-problems are used)")
    p.add_argument("--n-problems", type=int, default=64, help="problems per sampler (default %(default)s)")
    p.add_argument("--csv", required=True, help="output table (.csv; .md and .tex next to it)")
    p.add_argument("--details", help="per-problem tokens and rewards (JSON), for the claims report")


def main(args) -> int:
    from . import checkpoint_of, job_config

    trained = checkpoint_of(args.trained) if args.trained.endswith(".json") else args.trained
    df = run(job_config(args), {"base": args.base, args.trained_label: trained}, args.problems, args.csv,
             n_problems=args.n_problems, details_json=args.details)
    print(df.to_string(index=False))
    return 0
