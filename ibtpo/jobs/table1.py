"""Table 1: avg@k of the final checkpoint per method and benchmark, mean and std over seeds.

Wide CSV: one row per method (plus the base model), columns ``<benchmark>`` (mean over seeds of
avg@k, in %) and ``<benchmark>_std`` (sample std over seeds; empty with one seed), then ``Avg`` /
``Avg_std`` where a seed's Avg is its mean over benchmarks. ``n_seeds`` says how many runs a row
averages. Markdown shows ``mean ± std``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def avg_at_k(path: str | Path) -> float:
    rec = json.loads(Path(path).read_text())
    return 100.0 * rec["metrics"][f"avg@{rec['k']}"]


def build(rows: dict[str, dict[str, list[str]]], benchmarks: list[str], labels: dict[str, str]) -> pd.DataFrame:
    """``rows[method][benchmark]`` = result files of that method's seeds (same seed order per benchmark)."""
    records = []
    for method, per_bench in rows.items():
        vals = {b: np.array([avg_at_k(f) for f in per_bench[b]]) for b in benchmarks}
        seed_avg = np.mean([vals[b] for b in benchmarks], axis=0)
        rec = {"method": method, "label": labels.get(method, method), "n_seeds": len(seed_avg)}
        for name, v in list(vals.items()) + [("Avg", seed_avg)]:
            rec[name] = round(float(v.mean()), 2)
            rec[f"{name}_std"] = round(float(v.std(ddof=1)), 2) if len(v) > 1 else None
        records.append(rec)
    return pd.DataFrame.from_records(records)


def to_markdown(df: pd.DataFrame, benchmarks: list[str], title: str) -> str:
    cols = benchmarks + ["Avg"]
    lines = [f"# {title}", "", "| method | seeds | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [f"{r[c]:.1f}" + (f" ± {r[c + '_std']:.1f}" if pd.notna(r[c + "_std"]) else "") for c in cols]
        lines.append(f"| {r['label']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(cfg: dict, rows: dict, out_csv: str | Path, out_md: str | Path) -> pd.DataFrame:
    benchmarks = cfg["evaluation"]["benchmarks"]
    labels = {"base": "Base model", **{m: d.get("label", m) for m, d in cfg["method_defs"].items()}}
    df = build(rows, benchmarks, labels)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    ev = cfg["evaluation"]
    title = (f"Table 1 ({cfg['preset']} preset): avg@{ev['k']} (%) of the final checkpoint "
             f"(step {cfg['train']['steps']}), mean ± std over seeds")
    Path(out_md).write_text(to_markdown(df, benchmarks, title))
    return df
