"""One CSV per run: the probe's summary at every checkpoint (step 0 = the base model)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import read_json


def run(method: str, seed: int, base: str | Path, steps: dict[int, str | Path], out_csv: str | Path) -> pd.DataFrame:
    """``steps``: checkpoint step -> that checkpoint's probe JSON; ``base``: the base model's (step 0)."""
    recs = [{"method": method, "seed": seed, "step": step, **read_json(f)["summary"]}
            for step, f in [(0, base)] + sorted(steps.items())]
    df = pd.DataFrame(recs)
    df.to_csv(out_csv, index=False)
    return df


def add_arguments(p) -> None:
    p.add_argument("--method", required=True, help="the run's method (a column of the CSV)")
    p.add_argument("--seed", type=int, required=True, help="the run's seed (a column of the CSV)")
    p.add_argument("--base", required=True, help="the base model's probe JSON (step 0)")
    p.add_argument("--steps", nargs="+", required=True, metavar="STEP=FILE",
                   help="each checkpoint's probe JSON, as step=path")
    p.add_argument("--out", required=True, help="output CSV")


def main(args) -> int:
    steps = {}
    for item in args.steps:
        step, sep, path = item.partition("=")
        if not sep or not step.isdigit():
            raise SystemExit(f"probe-csv --steps: {item!r} is not STEP=FILE")
        steps[int(step)] = path
    run(args.method, args.seed, args.base, steps, args.out)
    return 0
