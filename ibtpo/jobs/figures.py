"""Training-dynamics figures (the paper's Figures 1, 3 and 5, at the preset's scale).

Per (method, seed, checkpoint step) one row of ``dynamics.csv``: cumulative generated tokens (from
the run's ``metrics.jsonl``), accuracy (avg@k averaged over the benchmarks, from the evaluation
files) and the probe's IB-Score, Cov(η1, η2), token entropy, Eff-Rate and Avg-Rate (step 0 is the
base model, shared by every method). Figures, each as PNG and SVG, one line per method (mean over
seeds) with a band from the lowest to the highest seed:

- ``dynamics_step``   the five quantities against optimizer step;
- ``dynamics_tokens`` the same against cumulative generated tokens (tree and chain methods are
  only comparable at equal compute);
- ``training_curves`` the per-step training log (reward, Eff-Rate, sample entropy), smoothed;
- ``fork_position``   where the tree methods fork, from the training log (``fork_position``: mean
  share of the response written before a fork; ``fork_root_share``: share of forks at the root;
  :mod:`ibtpo.analysis.forks`), smoothed like ``training_curves``; methods whose logs carry no fork
  statistics (chains) are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PANELS = [("accuracy", "accuracy avg@k (%)"), ("entropy", "token entropy (probe)"),
          ("effective", "Eff-Rate (probe, %)"), ("ib_score", "IB-Score (probe)"), ("cov_eta", "Cov(η1, η2) (probe)")]
FORK_PANELS = [("fork_position", "fork position (share of response)"),
               ("fork_root_share", "forks at the root (%)")]
TRAIN_PANELS = [("reward_mean", "train reward"), ("eff_rate", "train Eff-Rate"),
                ("sample_entropy", "train token entropy")]


def read_metrics(path: str | Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows)


def accuracy(eval_files: list[str | Path]) -> float:
    """avg@k (%) averaged over benchmarks."""
    vals = []
    for f in eval_files:
        rec = json.loads(Path(f).read_text())
        vals.append(100 * rec["metrics"][f"avg@{rec['k']}"])
    return float(np.mean(vals))


def dynamics(runs: dict, base_eval: list, base_probe: str | Path, labels: dict[str, str]) -> pd.DataFrame:
    """``runs[method][seed] = {"metrics": path, "steps": {step: {"eval": [files], "probe": path}}}``
    (``probe`` absent for seeds that are not probed: ``method_seeds``' extra seeds)."""
    base_acc, base_probe = accuracy(base_eval), json.loads(Path(base_probe).read_text())["summary"]
    rows = []
    for m, seeds in runs.items():
        for s, run in seeds.items():
            met = read_metrics(run["metrics"]).set_index("step")
            probed = all("probe" in f for f in run["steps"].values())
            rows.append({"method": m, "label": labels.get(m, m), "seed": int(s), "step": 0, "cum_tokens": 0,
                         "accuracy": base_acc, **(base_probe if probed else {})})
            for step, files in sorted(run["steps"].items()):  # a seed that is not probed: NaN probe panels
                probe = json.loads(Path(files["probe"]).read_text())["summary"] if "probe" in files else {}
                rows.append({"method": m, "label": labels.get(m, m), "seed": int(s), "step": int(step),
                             "cum_tokens": int(met.loc[int(step), "cum_gen_tokens"]),
                             "accuracy": accuracy(files["eval"]), **probe})
    df = pd.DataFrame(rows)
    df["effective"] = 100 * df["effective"]
    df["avg_rate"] = 100 * df["avg_rate"]
    return df


def _band_plot(ax, df: pd.DataFrame, x: str, y: str, label_of: dict) -> None:
    for i, (m, g) in enumerate(df.groupby("method", sort=False)):
        g = g.dropna(subset=[y])  # probe panels: the probed seeds only
        agg = g.groupby("step").agg(x=(x, "mean"), mean=(y, "mean"), lo=(y, "min"), hi=(y, "max")).sort_values("x")
        color = f"C{i}"
        ax.plot(agg["x"], agg["mean"], marker="o", ms=3, color=color, label=f"{label_of[m]} (n={g['seed'].nunique()})")
        ax.fill_between(agg["x"], agg["lo"], agg["hi"], color=color, alpha=0.15, lw=0)


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.svg`` under ``out_dir`` and close it."""
    paths = [out_dir / f"{stem}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths


def plot_dynamics(df: pd.DataFrame, out_dir: str | Path, title: str,
                  external: dict[str, float] | None = None) -> list[Path]:
    """The five quantities against step and tokens; ``external``: label -> accuracy (%) of a checkpoint
    trained elsewhere, a marker at step 0 of the accuracy panel."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    label_of = dict(zip(df["method"], df["label"]))
    written = []
    for x, xlabel, stem in (("step", "optimizer step", "dynamics_step"),
                            ("cum_tokens", "cumulative generated tokens", "dynamics_tokens")):
        fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4), constrained_layout=True)
        for ax, (y, ylabel) in zip(axes, PANELS):
            _band_plot(ax, df, x, y, label_of)
            if y == "accuracy":
                for j, (label, acc) in enumerate((external or {}).items()):
                    ax.plot([0], [acc], marker="*", ms=10, ls="none", color=f"C{9 - j % 10}",
                            label=f"{label} (external)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{title} — mean over seeds, band = min..max seed")
        written += save_figure(fig, out_dir, stem)
    return written


def plot_training(metrics: dict[str, dict[int, str]], labels: dict[str, str], out_dir: str | Path, title: str,
                  window: int = 5) -> list[Path]:
    """Per-step training log, rolling mean over ``window`` steps, against step and tokens."""
    out_dir = Path(out_dir)
    frames = []
    for m, seeds in metrics.items():
        for s, path in seeds.items():
            d = read_metrics(path)
            for col, _ in TRAIN_PANELS:
                d[col] = d[col].rolling(window, min_periods=1).mean()
            frames.append(d.assign(method=m, label=labels.get(m, m), seed=int(s)))
    df = pd.concat(frames, ignore_index=True)
    df["eff_rate"] = 100 * df["eff_rate"]
    label_of = dict(zip(df["method"], df["label"]))
    fig, axes = plt.subplots(2, len(TRAIN_PANELS), figsize=(4 * len(TRAIN_PANELS), 6.4), constrained_layout=True)
    for row, (x, xlabel) in enumerate((("step", "optimizer step"), ("cum_gen_tokens", "cumulative generated tokens"))):
        for ax, (y, ylabel) in zip(axes[row], TRAIN_PANELS):
            _band_plot(ax, df, x, y, label_of)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{title} — training log, rolling mean over {window} steps")
    return save_figure(fig, out_dir, "training_curves")


def plot_forks(metrics: dict[str, dict[int, str]], labels: dict[str, str], out_dir: str | Path, title: str,
               window: int = 5) -> list[Path]:
    """Fork position and root share against step, one line per method whose log has fork metrics
    (rolling mean over ``window`` logged steps; a step without forks adds nothing to it). Written even
    when no method forks (an empty figure saying so), since the pipeline declares it."""
    out_dir = Path(out_dir)
    frames = []
    for m, seeds in metrics.items():
        for s, path in seeds.items():
            d = read_metrics(path)
            if "fork_position" not in d or d["fork_position"].isna().all():
                continue
            for col, _ in FORK_PANELS:
                d[col] = d[col].rolling(window, min_periods=1).mean()
            frames.append(d.assign(method=m, label=labels.get(m, m), seed=int(s)))
    fig, axes = plt.subplots(1, len(FORK_PANELS), figsize=(4.5 * len(FORK_PANELS), 3.4), constrained_layout=True)
    if frames:
        df = pd.concat(frames, ignore_index=True)
        df["fork_root_share"] = 100 * df["fork_root_share"]
        label_of = dict(zip(df["method"], df["label"]))
        for ax, (y, ylabel) in zip(axes, FORK_PANELS):
            _band_plot(ax, df.dropna(subset=[y]), "step", y, label_of)
            ax.set_ylabel(ylabel)
        axes[0].legend(fontsize=8)
    else:
        axes[0].text(0.5, 0.5, "no tree method in this run", ha="center", va="center", transform=axes[0].transAxes)
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} — where the trees fork, rolling mean over {window} steps")
    return save_figure(fig, out_dir, "fork_position")


def run(runs: dict, base_eval: list, base_probe: str | Path, labels: dict[str, str], out_dir: str | Path,
        title: str, external: dict[str, list] | None = None) -> pd.DataFrame:
    """``external``: name -> evaluation files of a checkpoint trained elsewhere (step-0 markers)."""
    df = dynamics(runs, base_eval, base_probe, labels)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    df.to_csv(Path(out_dir) / "dynamics.csv", index=False)
    plot_dynamics(df, out_dir, title, {labels.get(n, n): accuracy(fs) for n, fs in (external or {}).items()})
    logs = {m: {s: r["metrics"] for s, r in seeds.items()} for m, seeds in runs.items()}
    plot_training(logs, labels, out_dir, title)
    plot_forks(logs, labels, out_dir, title)
    return df



def add_arguments(p) -> None:
    p.add_argument("--manifest", required=True,
                   help='JSON {"runs": {method: {seed: {"metrics": file, "steps": {step: {"eval": [files], '
                        '"probe": file}}}}}, "base_eval": [files], "base_probe": file}')
    p.add_argument("--out-dir", required=True, help="folder for the figures and dynamics.csv")
    p.add_argument("--title", default="", help="figure title prefix (default: '<preset> preset')")


def main(args) -> int:
    from . import job_config, read_json

    cfg = job_config(args, quiet_transformers=False)
    man = read_json(args.manifest)
    runs = {m: {int(s): {**r, "steps": {int(st): v for st, v in r["steps"].items()}} for s, r in seeds.items()}
            for m, seeds in man["runs"].items()}  # JSON keys are strings; seeds and steps are numbers
    from .table1 import labels

    run(runs, man["base_eval"], man["base_probe"], labels(cfg), args.out_dir, args.title or f"{cfg['preset']} preset",
        external=man.get("external_eval"))
    return 0
