"""Method × benchmark result tables with seeds, t-based intervals and the paper side by side.

Inputs are evaluation files (one per run and benchmark, ``ibtpo/eval/run.py``) holding per-problem
records. Per method and benchmark a cell matrix ``X[s, p]`` = fraction of problem p's k samples that
run s got right (so ``mean X`` = avg@k). The wide table (one row per method) has, per benchmark
``b`` and for ``Avg`` (per seed the mean over benchmarks, then over seeds):

    b          mean over seeds of avg@k (%)
    b_std      sample std over seeds (empty with one seed)
    b_lo/b_hi  95% t-interval over RL seeds, problems and the k samples (``ibtpo.analysis.intervals``,
               ``SCHEME_TEXT``), clipped to [0, 100]; a trained method with one seed has no seed term
               in it (``n_seeds`` says so), the base model (``unseeded``) none by construction

plus ``n_seeds``. Difference rows (``A − B``, e.g. IB-TPO − GRPO) carry the interval of the difference
(seeds independent, problems paired) and ``b_mde``: the minimum detectable effect at 80% power,
two-sided 5% (points). With ``report.paper_*`` set, ``b_paper`` and ``b_vs_paper`` (ours − paper)
sit next to each benchmark; a cell the paper did not report stays empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .intervals import estimate, estimate_diff, estimate_paired, pairable


def load_cells(files: list[str | Path]) -> np.ndarray:
    """``(n_seeds, n_problems)`` per-problem accuracy, problems aligned by id across seeds."""
    rows, ids = [], None
    for f in files:
        rec = json.loads(Path(f).read_text())
        samples = sorted(rec["samples"], key=lambda s: s["id"])
        these = [s["id"] for s in samples]
        if ids is not None and these != ids:
            raise ValueError(f"{f}: evaluated on different problems than {files[0]}")
        ids = these
        rows.append([float(np.mean(s["correct"])) for s in samples])
    return np.array(rows)


def method_table(rows: dict[str, dict[str, list]], benchmarks: list[str], labels: dict[str, str],
                 diffs: list[tuple[str, str]] = (), confidence: float = 0.95,
                 unseeded: tuple[str, ...] = ("base",), seeds: dict[str, list[int]] | None = None,
                 pairing: str = "independent") -> pd.DataFrame:
    """``rows[method][benchmark]`` = result files of the method's seeds (same seed order per benchmark).

    ``unseeded``: methods whose rows are not seeds (one base model; with ``policy.base_models > 1`` the
    base row's files are the k base models, which are seeds). ``seeds``: each method's RL seeds in the
    order of its files; with ``pairing="seeds"`` a difference of two trained methods with the same seeds
    pairs them (``estimate_paired``), else the seeds are independent (``estimate_diff``).
    """
    cells = {m: {b: load_cells(per[b]) for b in benchmarks} for m, per in rows.items()}
    records = []
    for m, per in cells.items():
        vals = {b: 100 * per[b].mean(axis=1) for b in benchmarks}
        vals["Avg"] = np.mean([vals[b] for b in benchmarks], axis=0)
        rec = {"method": m, "label": labels.get(m, m), "kind": "method", "n_seeds": len(vals["Avg"])}
        for name in benchmarks + ["Avg"]:
            groups = [per[name]] if name != "Avg" else [per[b] for b in benchmarks]
            ci = estimate(groups, confidence, seeded=m not in unseeded, bounds=(0.0, 1.0)).scale(100)
            v = vals[name]
            rec |= {name: round(float(v.mean()), 2),
                    f"{name}_std": round(float(v.std(ddof=1)), 2) if len(v) > 1 else None,
                    f"{name}_lo": round(ci.lo, 2), f"{name}_hi": round(ci.hi, 2)}
        records.append(rec)
    for a, b in diffs:
        if a not in cells or b not in cells:
            continue
        rec = {"method": f"{a}-{b}", "label": f"{labels.get(a, a)} − {labels.get(b, b)}", "kind": "difference",
               "n_seeds": min(cells[a][benchmarks[0]].shape[0], cells[b][benchmarks[0]].shape[0])}
        paired = (pairing == "seeds" and a not in unseeded and b not in unseeded
                  and pairable((seeds or {}).get(a), (seeds or {}).get(b)))
        for name in benchmarks + ["Avg"]:
            bs = [name] if name != "Avg" else benchmarks
            ga, gb = [cells[a][x] for x in bs], [cells[b][x] for x in bs]
            ci = (estimate_paired(ga, gb, confidence, bounds=(-1.0, 1.0)) if paired else
                  estimate_diff(ga, gb, confidence, seeded_a=a not in unseeded, seeded_b=b not in unseeded,
                                bounds=(-1.0, 1.0))).scale(100)
            rec |= {name: round(ci.mean, 2), f"{name}_std": None,
                    f"{name}_lo": round(ci.lo, 2), f"{name}_hi": round(ci.hi, 2), f"{name}_mde": round(ci.mde, 2)}
        records.append(rec)
    return pd.DataFrame.from_records(records)


def add_paper(df: pd.DataFrame, paper_csv: str | Path, model: str, columns: dict[str, str],
              rows: dict[str, str], row_key: str = "method") -> pd.DataFrame:
    """Add the paper's reported value (``<b>_paper``) and ours − paper (``<b>_vs_paper``)."""
    paper = pd.read_csv(paper_csv)
    if "model" in paper:
        paper = paper[paper["model"] == model]
    for col in set(columns.values()) - set(paper.columns):
        raise ValueError(f"{paper_csv}: no column {col!r} (has {list(paper.columns)}); check report.paper_columns")
    df = df.copy()
    for b, pcol in columns.items():
        if b not in df:
            continue
        reported = []
        for m in df["method"]:
            hit = paper[paper[row_key] == rows.get(m, "\0")] if m in rows else paper.iloc[0:0]
            reported.append(float(hit[pcol].iloc[0]) if len(hit) and pd.notna(hit[pcol].iloc[0]) else None)
        df[f"{b}_paper"] = reported
        df[f"{b}_vs_paper"] = [round(o - p, 2) if p is not None and pd.notna(o) else None
                               for o, p in zip(df[b], reported)]
    return df


# ---------------------------------------------------------------------------------------- formats


def _fmt(r, c) -> str:
    v = r.get(c)
    if v is None or pd.isna(v):
        return ""
    s = f"{v:.1f}"
    if pd.notna(r.get(f"{c}_std", None)) and r.get(f"{c}_std") is not None:
        s += f" ± {r[f'{c}_std']:.1f}"
    if f"{c}_lo" in r and pd.notna(r[f"{c}_lo"]):
        s += f" [{r[f'{c}_lo']:.1f}, {r[f'{c}_hi']:.1f}]"
    if f"{c}_mde" in r and pd.notna(r[f"{c}_mde"]):  # difference rows: what the run could have detected
        s += f" (MDE {r[f'{c}_mde']:.1f})"
    return s


def _best(df: pd.DataFrame, cols: list[str], higher: dict[str, bool]) -> dict[str, float]:
    """Best mean per column among method rows (difference rows excluded)."""
    meth = df[df["kind"] == "method"] if "kind" in df else df
    out = {}
    for c in cols:
        v = pd.to_numeric(meth[c], errors="coerce").dropna()
        if len(v):
            out[c] = v.max() if higher.get(c, True) else v.min()
    return out


def to_markdown(df: pd.DataFrame, cols: list[str], title: str, notes: str = "",
                higher: dict[str, bool] | None = None, paper: bool = False, bold: bool = True) -> str:
    higher = higher or {}
    best = _best(df, cols, higher) if bold else {}
    seeds = "n_seeds" in df
    head = ["method"] + (["seeds"] if seeds else [])
    for c in cols:
        head += [c] + ([f"{c} (paper)", "Δ"] if paper and f"{c}_paper" in df else [])
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        cells = [str(r["label"])] + ([str(r["n_seeds"])] if seeds else [])
        for c in cols:
            s = _fmt(r, c)
            if r.get("kind", "method") == "method" and c in best and pd.notna(r[c]) and r[c] == best[c]:
                s = f"**{s}**"
            cells.append(s)
            if paper and f"{c}_paper" in df:
                p, d = r[f"{c}_paper"], r[f"{c}_vs_paper"]
                cells += ["" if p is None or pd.isna(p) else f"{p:.1f}", "" if d is None or pd.isna(d) else f"{d:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + (f"\n{notes}\n" if notes else "")


def _tex_escape(s: str) -> str:
    return (str(s).replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%").replace("_", r"\_")
            .replace("#", r"\#").replace("±", r"$\pm$").replace("−", "$-$").replace("Δ", r"$\Delta$"))


def to_latex(df: pd.DataFrame, cols: list[str], caption: str, higher: dict[str, bool] | None = None,
             paper: bool = False, bold: bool = True) -> str:
    higher = higher or {}
    best = _best(df, cols, higher) if bold else {}
    head = ["Method"]
    for c in cols:
        head += [c] + ([f"{c} (paper)"] if paper and f"{c}_paper" in df else [])
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}", r"\toprule",
             " & ".join(_tex_escape(h) for h in head) + r" \\", r"\midrule"]
    for _, r in df.iterrows():
        cells = [_tex_escape(r["label"])]
        for c in cols:
            v = r[c]
            s = "" if v is None or pd.isna(v) else f"{v:.1f}"
            if s and r.get(f"{c}_std") is not None and pd.notna(r.get(f"{c}_std")):
                s += rf"$\pm${r[f'{c}_std']:.1f}"
            if s and r.get("kind", "method") == "method" and c in best and v == best[c]:
                s = rf"\textbf{{{s}}}"
            cells.append(s)
            if paper and f"{c}_paper" in df:
                p = r[f"{c}_paper"]
                cells.append("" if p is None or pd.isna(p) else f"{p:.1f}")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex_escape(caption)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_all(df: pd.DataFrame, stem: str | Path, cols: list[str], title: str, notes: str = "",
              higher: dict[str, bool] | None = None, csv_df: pd.DataFrame | None = None,
              bold: bool = True) -> list[Path]:
    """``<stem>.csv``, ``<stem>.md``, ``<stem>.tex`` (best value per column in bold, unless ``bold`` is
    false). ``csv_df``: the frame stored as CSV when it differs from the displayed one (default ``df``)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paper = any(c.endswith("_paper") for c in df.columns)
    (df if csv_df is None else csv_df).to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(to_markdown(df, cols, title, notes, higher, paper, bold))
    stem.with_suffix(".tex").write_text(to_latex(df, cols, title, higher, paper, bold))
    return [stem.with_suffix(s) for s in (".csv", ".md", ".tex")]
