"""Tables 1 and 2: avg@k of each method's final checkpoint per benchmark (``ibtpo.analysis.results``).

Table 1 holds the preset's ``methods`` (plus the base model and the ``external:`` checkpoints), Table 2 its
``ablations`` (the paper's Table 2 rows). With ``methods: []`` (evaluate-only) Table 1 holds the base model and
the external checkpoints alone: no difference rows, no bold (nothing was trained here). Each cell: mean ± std
over seeds and a 95% t-interval over seeds, problems and samples (``ibtpo.analysis.intervals``); difference
rows (``IB-TPO − GRPO``, ``GRPO − base``; in Table 2 each ablation − GRPO) carry the interval of the paired
difference and its minimum detectable effect. Written as ``.csv``, ``.md`` and ``.tex``; with ``report.paper_*``
set, the paper's reported numbers and ours − paper sit next to each benchmark.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.intervals import scheme_text
from ..analysis.results import add_paper, method_table, write_all
from ..grading import answer_text

PAPER_FILES = {"table1": "table1.csv", "table2": "table2_ablation.csv"}
# rows of the paper's Table 2 (../shared/paper/table2_ablation.csv, column "configuration")
TABLE2_PAPER_ROWS = {"grpo": "GRPO", "grpo_ibtree": "GRPO + IBTree",
                     "grpo_ibadv": "GRPO + IB advantage (independent chains)",
                     "randtree_ibadv": "Random tree + IB advantage", "eptree_ibadv": "EPTree + IB advantage",
                     "ibtpo": "IB-TPO (IBTree + IB advantage)"}


def labels(cfg: dict) -> dict[str, str]:
    """Row labels: the base model, every method (its ``label``) and every external checkpoint."""
    return {"base": "Base model", **{m: d.get("label", m) for m, d in cfg["method_defs"].items()},
            **{n: e.get("label", n) for n, e in cfg.get("external", {}).items()}}


def run(cfg: dict, rows: dict, stem: str | Path, which: str = "table1", seeds: dict | None = None) -> pd.DataFrame:
    """``rows[method][benchmark]``: evaluation files, one per seed in the order of ``seeds[method]``."""
    benchmarks = cfg["evaluation"]["benchmarks"]
    rep = cfg["report"]
    diffs = [("ibtpo", "grpo")] + ([(m, "grpo") for m in rows if m not in ("grpo", "ibtpo", "base")]
                                   if which == "table2" else [("grpo", "base")])
    if "grpo_g12" in rows:  # the equal-trajectories comparison (decisive preset; Table 2)
        diffs.append(("ibtpo", "grpo_g12"))
    base_seeded = cfg.get("policy", {}).get("base_models", 1) > 1
    external = [n for n in cfg.get("external", {}) if n in rows]  # one evaluation each: no seed term
    df = method_table(rows, benchmarks, labels(cfg), diffs=diffs, confidence=rep["confidence"],
                      unseeded=(() if base_seeded else ("base",)) + tuple(external), seeds=seeds,
                      pairing=rep.get("pairing", "independent"))
    if external:
        df.loc[df["method"].isin(external), "kind"] = "external"  # shown, never bold: not trained here
    if rep.get("paper_dir") and rep.get("paper_columns"):
        own_rows = {n: e["paper_row"] for n, e in cfg.get("external", {}).items() if "paper_row" in e}
        key, paper_rows = (("method", {**rep.get("paper_rows", {}), **own_rows}) if which == "table1"
                           else ("configuration", TABLE2_PAPER_ROWS))
        paper = pd.read_csv(Path(rep["paper_dir"]) / PAPER_FILES[which], nrows=0)
        # Table 2: 3 benchmarks
        columns = {b: c for b, c in {**rep["paper_columns"], "Avg": "Avg"}.items() if c in paper.columns}
        df = add_paper(df, Path(rep["paper_dir"]) / PAPER_FILES[which], rep.get("paper_model", ""),
                       columns, paper_rows, row_key=key)
    evaluate_only = all(m == "base" or m in external for m in rows)  # methods: []: nothing trained here
    title, notes = _title_notes(cfg, which, external, evaluate_only)
    write_all(df, stem, benchmarks + ["Avg"], title, notes, bold=not evaluate_only)
    return df


def _title_notes(cfg: dict, which: str, external: list[str], evaluate_only: bool) -> tuple[str, str]:
    """The table's title and the notes under it. Evaluate-only: what its rows are, no difference rows, no bold."""
    ev, rep = cfg["evaluation"], cfg["report"]
    name = "Table 1" if which == "table1" else "Table 2 (ablations)"
    if evaluate_only:
        title = (f"{name} ({cfg['preset']} preset, evaluate-only): avg@{ev['k']} (%) of the base model"
                 + (" and the external checkpoints" if external else "") + "; nothing trained (methods: [])")
        several = cfg.get("policy", {}).get("base_models", 1) > 1
        notes = ("Cells: mean" + (" ± sample std over the base models" if several else "") + " [CI]. "
                 f"{scheme_text(rep['confidence'])} Avg: the mean over benchmarks. Nothing was trained here: no "
                 "difference rows, no bold. " + answer_text(ev["answer"]))
    else:
        title = (f"{name} ({cfg['preset']} preset): avg@{ev['k']} (%) at the final checkpoint "
                 f"(step {cfg['train']['steps']})")
        seeds_how = ("each method's seeds independent, or paired seed by seed where both methods ran the same "
                     "seeds (report.pairing: seeds)" if rep.get("pairing") == "seeds"
                     else "each method's seeds independent")
        notes = (f"Cells: mean ± sample std over seeds [CI]. {scheme_text(rep['confidence'])} Difference rows: "
                 f"paired by problem, {seeds_how}; (MDE) = minimum detectable effect. Avg: per seed the mean over "
                 "benchmarks. Bold: best method per column. " + answer_text(ev["answer"]))
    if external:
        notes += (" External checkpoints (" + ", ".join(labels(cfg)[n] for n in external) + "): evaluated once "
                  "with the same evaluation spec; their intervals hold the problem term only.")
    return title, notes


def add_arguments(p) -> None:
    p.add_argument("--rows", required=True,
                   help='JSON manifest {"rows": {method: {benchmark: [evaluation file per seed]}}, "seeds": {method: '
                        '[seed, ...]}} ("base": one file per base model); a bare rows mapping is read as rows')
    p.add_argument("--out", required=True, help="output stem: writes <out>.csv, <out>.md and <out>.tex")
    p.add_argument("--table", default="table1", choices=sorted(PAPER_FILES),
                   help="which table: its title, difference rows and paper file (default %(default)s)")


def main(args) -> int:
    from . import job_config, read_json

    man = read_json(args.rows)
    rows, seeds = (man["rows"], man.get("seeds")) if "rows" in man else (man, None)
    run(job_config(args, quiet_transformers=False), rows, args.out, args.table, seeds)
    print(Path(args.out).with_suffix(".md").read_text())
    return 0
