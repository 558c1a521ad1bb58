"""The power planner: ``python -m ibtpo power --from results/<preset> [--claim ID] [--target-mde X]``.

Reads a finished run (its resolved ``config.yaml``, the claims manifest and the evaluation files it
names, and the job times snakemake recorded under ``benchmarks/``), fits each accuracy claim's variance
components (``ibtpo.analysis.power``) at equal steps and at equal tokens, and prints, for designs —
seeds of the two compared methods, problems per benchmark, samples per problem, independent or paired
seeds — the predicted MDE of both comparisons and the estimated wall time of the whole preset on this
machine; then the cheapest design that reaches the target.

Target (default): *decisive* — the 95% interval narrower than the paper's effect ``E``, so that it
cannot hold both 0 and ``E`` and the verdict is never "inconclusive" (``MDE ≲ 0.7·E``; for a "does not
beat" claim: half-width below its margin). ``--target-mde X`` asks for MDE ≤ X instead.

Cost (our model, stated in the output): make_data and the SFT run alone (SFT uses both cores); every
other job runs ``--cores`` at a time, so its time counts ``1/cores``. Per method: its mean training
time; per checkpoint evaluation: the fixed part (imports, model load) plus lm-eval's time scaled by
``P'·k' / (P·k)``; probes only for the probed seeds (``seeds``). The model is checked against the run's
own wall time (first job start to last job end, from the benchmark files), and the estimate is scaled
by that ratio.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analysis.intervals import pairable
from ..analysis.power import Design, decisive_mde, fit, mde_range, predict


# ----------------------------------------------------------------------------------------- job times
def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """The time at least one job ran: the union of the ``(start, end)`` spans (a run resumed or extended
    later does not count the pause in between)."""
    total, cur_lo, cur_hi = 0.0, None, None
    for lo, hi in sorted(spans):
        if cur_hi is None or lo > cur_hi:
            total += 0.0 if cur_hi is None else cur_hi - cur_lo
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    return total + (cur_hi - cur_lo if cur_hi is not None else 0.0)


@dataclass
class Costs:
    """Seconds per job kind, from ``<run>/benchmarks/*.tsv`` (snakemake's ``benchmark:`` files)."""

    jobs: dict[str, float]          # job name -> seconds
    wall: float | None              # first start to last end of the run's jobs (seconds)
    eval_fixed: float               # seconds of an evaluation job outside lm-eval's simple_evaluate

    @classmethod
    def read(cls, run: Path, eval_file: Path | None) -> Costs:
        jobs, spans = {}, []
        for f in sorted((run / "benchmarks").glob("*.tsv")):
            lines = f.read_text().splitlines()
            if len(lines) < 2:
                continue
            s = float(lines[1].split("\t")[0])
            jobs[f.stem] = s
            end = f.stat().st_mtime
            spans.append((end - s, end))
        wall = busy_seconds(spans) if spans else None
        fixed = 0.0
        if eval_file is not None and eval_file.exists():
            sec = json.loads(eval_file.read_text()).get("seconds", {})
            evals = [v for k, v in jobs.items() if k.startswith("eval_") and "base" not in k]
            if sec.get("simple_evaluate") and evals:
                fixed = max(float(np.mean(evals)) - sec["simple_evaluate"], 0.0)
        return cls(jobs, wall, fixed)

    def mean(self, pattern: str) -> float | None:
        vals = [v for k, v in self.jobs.items() if re.fullmatch(pattern, k)]
        return float(np.mean(vals)) if vals else None

    def per_method(self, m: str) -> dict[str, float | None]:
        q = re.escape(m)
        return {"train": self.mean(rf"train_{q}_seed\d+"), "eval": self.mean(rf"eval_{q}_seed\d+_step\d+"),
                "probe": self.mean(rf"probe_{q}_seed\d+_step\d+"), "probe_csv": self.mean(rf"probe_csv_{q}_seed\d+")}


def preset_seconds(cfg: dict, costs: Costs, seeds: dict[str, int], eval_scale: float, cores: int) -> dict:
    """Estimated seconds of the whole preset when method ``m`` runs ``seeds[m]`` seeds (probes for the
    seeds of ``seeds`` only), every evaluation scaled by ``eval_scale`` (``P'k'/Pk`` on lm-eval's part).
    Returns ``{"serial", "parallel", "wall", "missing"}`` (``missing``: job kinds with no measured time)."""
    from ..config import checkpoint_steps

    n_ckpt = len(checkpoint_steps(cfg))
    serial = sum(costs.jobs.get(j, 0.0) for j in ("make_data", "build_base"))
    serial += sum(v for k, v in costs.jobs.items() if re.fullmatch(r"build_base_\d+", k))
    fixed = costs.eval_fixed

    def evals(t):
        return fixed + (t - fixed) * eval_scale

    par, missing = 0.0, []
    for k in ("eval_base", "eval_base_evalseed1"):
        par += evals(costs.jobs.get(k, 0.0)) if k in costs.jobs else 0.0
    par += sum(v for k, v in costs.jobs.items()
               if k in ("probe_base", "table1", "table2", "table3", "figures", "claims"))
    n_probe = len(cfg["seeds"])
    for m, S in seeds.items():
        c = costs.per_method(m)
        if c["train"] is None or c["eval"] is None:
            missing.append(m)
            continue
        probed = min(S, n_probe)
        par += S * (c["train"] + n_ckpt * evals(c["eval"]))
        par += probed * (n_ckpt * (c["probe"] or 0.0) + (c["probe_csv"] or 0.0))
    return {"serial": serial, "parallel": par, "wall": serial + par / cores, "missing": missing}


# ---------------------------------------------------------------------------------------- the plan
def _claim_target(claim: dict, target_mde: float | None):
    """(kind, value): ``mde`` ≤ value, or ``width`` of the interval < value (decisive against the paper's
    effect), or ``half`` (half-width ≤ margin: a "does not beat" claim); None when nothing is asked."""
    if target_mde is not None:
        return "mde", target_mde
    if claim["direction"] == "greater" and claim.get("effect"):
        return "width", claim["effect"]
    if claim["direction"] == "not_greater":
        return "half", claim["margin"]
    return None


def _reaches(est, target) -> bool:
    kind, value = target
    half = est.hi - est.mean
    return {"mde": est.mde <= value, "width": 2 * half < value, "half": half <= value}[kind]


def plan_claim(claim: dict, cmp_cells: dict, cfg: dict, costs: Costs, designs: list[Design], seeds_now: dict,
               cores: int, target_mde: float | None, scale_wall: float, seeded_b: bool = True) -> dict:
    """Fit the claim's comparisons and predict every design (independent seeds, and paired seeds where the
    run's two methods ran the same seeds). ``seeded_b``: B's rows are seeds (False for one base model)."""
    k = cfg["evaluation"]["k"]
    conf = cfg["report"]["confidence"]
    a, b = claim["a"], claim["b"]
    same = seeded_b and b != "base" and pairable(seeds_now.get(a), seeds_now.get(b))
    fits = {}
    for kind in ("equal_steps", "equal_tokens"):
        if cmp_cells.get(kind) is None:
            continue
        ga, gb = ([100 * g for g in x] for x in cmp_cells[kind])
        fits[(kind, "independent")] = fit(ga, gb, k, seeded_b=seeded_b)
        if same:
            fits[(kind, "paired")] = fit(ga, gb, k, paired=True)
    target = _claim_target(claim, target_mde)
    rows = []
    for analysis in ("independent", "paired"):
        if not any(an == analysis for _, an in fits):
            continue
        for d in designs:
            ests = {kind: predict(c, d, conf) for (kind, an), c in fits.items() if an == analysis}
            seeds = {m: len(s) for m, s in seeds_now.items()}
            seeds[a] = d.S_a
            if seeded_b and b != "base":
                seeds[b] = d.S_b
            eval_scale = d.P_factor * (d.k or k) / k
            sec = preset_seconds(cfg, costs, seeds, eval_scale, cores)
            rows.append({"analysis": analysis, "design": d, "S_a": d.S_a, "S_b": d.S_b if seeded_b else None,
                         "P_factor": d.P_factor, "k": d.k or k,
                         "mde": {kind: e.mde for kind, e in ests.items()},
                         "half": {kind: e.hi - e.mean for kind, e in ests.items()},
                         "df": {kind: e.df for kind, e in ests.items()},
                         "reaches": bool(target) and all(_reaches(e, target) for e in ests.values()),
                         "minutes": sec["wall"] * scale_wall / 60, "missing": sec["missing"]})
    best = min((r for r in rows if r["reaches"]), key=lambda r: (r["minutes"], max(r["mde"].values())), default=None)
    if best is not None:
        c = {kind: fits[(kind, best["analysis"])] for kind in best["mde"]}
        best["range"] = {kind: mde_range(fit_, best["design"], conf) for kind, fit_ in c.items()}
    ga, gb = cmp_cells["equal_steps"]
    own = Design(ga[0].shape[0], gb[0].shape[0])  # the run's own design: its rows (seeds) of A and B
    measured = {kind: predict(c, own, conf).mde for (kind, an), c in fits.items() if an == "independent"}
    return {"claim": claim, "target": target, "rows": rows, "best": best, "run_mde": measured,
            "run_seeds": own.S_a, "paired_available": same}


def designs_for(seeds: range, p_factors, ks, seeded_b: bool = True) -> list[Design]:
    """Every combination; both compared methods get the same seeds (B one row when it is the base model)."""
    return [Design(S, S if seeded_b else 1, pf, k) for S in seeds for pf in p_factors for k in ks]


def _target_text(plan: dict) -> str:
    t = plan["target"]
    if t is None:
        return "no target (no paper effect and no --target-mde)"
    kind, v = t
    if kind == "mde":
        return f"MDE ≤ {v:g} points"
    if kind == "width":
        row = plan["best"] or max(plan["rows"], key=lambda r: r["S_a"], default=None)
        df = min(row["df"].values()) if row else math.inf
        return (f"decisive against the paper's +{v:g}: the 95% interval narrower than {v:g} points, so it cannot hold "
                f"both 0 and +{v:g} (≈ MDE ≤ {decisive_mde(v, df):.2f})")
    return f"half-width ≤ the margin {v:g} (a zero effect is then called 'does not beat')"


def _shown(rows: list[dict]) -> list[dict]:
    """Every design when only the seeds vary; else, per analysis, problems and k, the cheapest design that
    reaches the target (or the largest searched, when none does)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["analysis"], r["P_factor"], r["k"]), []).append(r)
    if len(groups) > 2:
        rows = [min((r for r in g if r["reaches"]), key=lambda r: r["minutes"], default=max(g, key=lambda r: r["S_a"]))
                for g in groups.values()]
    return sorted(rows, key=lambda r: (r["minutes"], r["analysis"]))


def to_markdown(plans: list[dict], cfg: dict, costs: Costs, cores: int, scale_wall: float, P: list[int]) -> str:
    k = cfg["evaluation"]["k"]
    lines = [f"# Power plan ({cfg['preset']} preset)", "",
             f"Run: seeds {cfg['seeds']}" + (f", method_seeds {cfg['method_seeds']}" if cfg["method_seeds"] else "")
             + f"; {len(P)} benchmarks × {P} problems × k = {k} samples. Predictions: expected variance components "
             "of the report's own estimator (ibtpo/analysis/power.py) through its interval rule; `MDE` at 80% power, "
             "two-sided 5%. Minutes: the whole preset on this machine (" + (
                 f"model × {scale_wall:.2f}, the ratio of this run's measured wall time "
                 f"{costs.wall / 60:.1f} min to the model's" if costs.wall else
                 "model, not checked against a wall time") + f"; {cores} jobs at a time).", ""]
    for plan in plans:
        c = plan["claim"]
        lines += [f"## {c['id']}: {c['a']} − {c['b']}", ""]
        if plan.get("skipped"):
            lines += [plan["skipped"], ""]
            continue
        lines += [f"Target: {_target_text(plan)}.", ""]
        run = ", ".join(f"{kind.replace('_', ' ')} {v:.2f}" for kind, v in plan["run_mde"].items())
        lines.append(f"At the run's own design the model gives MDE {run} (the report's, by construction, up to "
                     "components clipped at 0).")
        if not plan["paired_available"] and c["b"] != "base":
            lines.append("Paired seeds: not available (the two methods did not run the same seeds).")
        lines += ["", "| analysis | seeds A/B | problems | k | MDE equal steps | MDE equal tokens | reaches "
                  "| minutes |", "|---|---|---|---|---|---|---|---|"]
        for r in _shown(plan["rows"]):
            mt = r["mde"].get("equal_tokens")
            lines.append(f"| {r['analysis']} | {r['S_a']}/{r['S_b'] if r['S_b'] is not None else '—'} | "
                         f"×{r['P_factor']:g} | {r['k']} | {r['mde']['equal_steps']:.2f} | "
                         f"{'' if mt is None else f'{mt:.2f}'} | {'yes' if r['reaches'] else 'no'} | "
                         f"{r['minutes']:.1f} |")
        b = plan["best"]
        lines.append("")
        if b is None:
            lines.append("No design in the searched range reaches the target.")
        else:
            rng = "; ".join(f"{kind.replace('_', ' ')} {b['mde'][kind]:.2f} (80% range {lo:.2f}–{hi:.2f})"
                            for kind, (lo, hi) in b["range"].items())
            lines.append(f"**Cheapest design reaching the target**: {b['analysis']} seeds, {b['S_a']} seeds of "
                         f"{c['a']}" + (f" and {b['S_b']} of {c['b']}" if b["S_b"] is not None else "")
                         + f", problems ×{b['P_factor']:g}, k = {b['k']}: predicted MDE {rng}; about "
                         f"{b['minutes']:.1f} min for the whole preset. The range holds the uncertainty of the run's "
                         "seed variances (few df); the point is the MDE at the observed variances.")
            if b["missing"]:
                lines.append(f"(No job times for {b['missing']}: their runs are not in the minutes.)")
        lines.append("")
    return "\n".join(lines)


def _rooted(obj, root: Path):
    """The manifest with every relative file path made absolute under ``root``."""
    if isinstance(obj, dict):
        return {k: _rooted(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rooted(v, root) for v in obj]
    if isinstance(obj, str) and obj.endswith((".json", ".jsonl")) and not Path(obj).is_absolute():
        return str(root / obj)
    return obj


def run(run_dir: str | Path, claim_ids: list[str] | None = None, target_mde: float | None = None,
        seeds: range = range(3, 13), cores: int = 2, all_designs: bool = False) -> tuple[list[dict], str]:
    from ..config import load_config
    from .claims import Evidence, accuracy_claims, comparison_cells, read_manifest

    run_dir = Path(run_dir)
    cfg_path, man_path = run_dir / "config.yaml", run_dir / "manifests" / "claims.json"
    def missing(p):
        return SystemExit(f"{p}: not found; --from needs a finished run's folder (results/<preset>, with the claims "
                          "report built)")

    if not cfg_path.exists():
        raise missing(cfg_path)
    cfg = load_config(cfg_path)
    if not cfg["methods"]:  # a claims manifest here would be another run's
        raise SystemExit(f"{cfg_path}: methods: [] is evaluate-only (nothing is trained): no claim to plan runs for")
    if not man_path.exists():
        raise missing(man_path)
    # the manifest's paths are relative to where the DAG ran: <root>/<results_dir>/<preset> is run_dir
    depth = len(Path(cfg["results_dir"], cfg["preset"]).parts)
    root = run_dir.resolve().parents[depth - 1] if not Path(cfg["results_dir"]).is_absolute() else Path("/")
    man = _rooted(read_manifest(man_path), root)
    ev = Evidence(cfg, man)
    seeds_now = man.get("seeds") or {m: cfg["seeds"] for m in man["rows"]}
    one_eval = next(iter(next(iter(man["rows"].values())).values()))[0]
    costs = Costs.read(run_dir, Path(one_eval))
    now = preset_seconds(cfg, costs, {m: len(s) for m, s in seeds_now.items()}, 1.0, cores)
    scale_wall = costs.wall / now["wall"] if costs.wall and now["wall"] else 1.0
    k = cfg["evaluation"]["k"]
    generated = all(cfg["data"]["benchmarks"][b]["source"] == "arithmetic" for b in cfg["evaluation"]["benchmarks"])
    p_factors = (0.5, 1.0, 2.0) if generated else (0.5, 1.0)  # a file's problems cannot be multiplied
    ks = sorted({max(2, k // 2), k, 2 * k})
    claims = [c for c in accuracy_claims() if claim_ids is None or c["id"] in claim_ids]
    known = [c["id"] for c in accuracy_claims()]
    unknown = set(claim_ids or []) - set(known)
    if unknown:
        raise SystemExit(f"--claim: unknown claim(s) {sorted(unknown)}; allowed: {known}")
    plans = []
    for c in claims:
        cells = comparison_cells(ev, c["a"], c["b"])
        if cells is None:
            continue
        few = [m for m in (c["a"], c["b"]) if ev.seeded(m) and len(seeds_now.get(m, [None] * 2)) < 2]
        if few:  # one run says nothing about the seed variance, the term that decides the design
            plans.append({"claim": c, "skipped": f"Not planned: {few} ran one seed, so the seed variance (the term "
                          "that decides how many seeds are needed) cannot be estimated. Run 3 seeds first."})
            continue
        seeded_b = ev.seeded(c["b"])
        designs = designs_for(seeds, p_factors if all_designs else (1.0,), ks if all_designs else (k,), seeded_b)
        plans.append(plan_claim(c, cells, cfg, costs, designs, seeds_now, cores, target_mde, scale_wall, seeded_b))
    n_problems = [g.shape[1] for g in ev.final(next(iter(man["rows"])))]
    return plans, to_markdown(plans, cfg, costs, cores, scale_wall, n_problems)


def add_arguments(p) -> None:
    p.add_argument("--from", dest="run_dir", required=True,
                   help="a finished run's folder, results/<preset> (config.yaml, manifests/claims.json, benchmarks/)")
    p.add_argument("--claim", action="append", help="claim id (repeatable; default: every accuracy claim measured)")
    p.add_argument("--target-mde", type=float, default=None,
                   help="plan for MDE ≤ this many points (default: decisive against the paper's effect)")
    p.add_argument("--max-seeds", type=int, default=12, help="largest number of seeds per method to consider")
    p.add_argument("--cores", type=int, default=2, help="jobs the DAG runs at a time (default %(default)s)")
    p.add_argument("--all-designs", action="store_true",
                   help="also vary problems per benchmark (×0.5, ×2 for generated sets) and samples k (½, 2×)")
    p.add_argument("--out", default=None, help="also write the plan here (.md) and as JSON beside it")


def plot(plans: list[dict], out_png: str | Path) -> Path | None:
    """One panel per planned claim: predicted MDE against seeds per method (equal steps solid, equal tokens
    dashed; independent and paired seeds), the target as a line, minutes of the whole preset under the
    axis; the run's own design marked. Written as PNG and SVG (``figures.save_figure``)."""
    plans = [p for p in plans if p.get("rows") and not p.get("skipped")]
    if not plans:
        return None
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    from .figures import save_figure

    k0 = min(r["k"] for r in plans[0]["rows"])
    fig, axes = plt.subplots(1, len(plans), figsize=(max(6.5, 5 * len(plans)), 3.8), constrained_layout=True,
                             squeeze=False)
    for ax, plan in zip(axes[0], plans):
        rows = [r for r in plan["rows"] if r["P_factor"] == 1 and r["k"] == k0]
        for i, analysis in enumerate(("independent", "paired")):
            rs = sorted((r for r in rows if r["analysis"] == analysis), key=lambda r: r["S_a"])
            for kind, ls in (("equal_steps", "-"), ("equal_tokens", "--")):
                pts = [(r["S_a"], r["mde"][kind]) for r in rs if kind in r["mde"]]
                if pts:
                    ax.plot(*zip(*pts), ls=ls, marker="o", ms=3, color=f"C{i}",
                            label=f"{analysis}, {kind.replace('_', ' ')}")
        for v in plan["run_mde"].values():
            ax.plot([plan["run_seeds"]], [v], marker="*", ms=12, color="k", ls="none")
        if plan["target"] and plan["target"][0] in ("mde", "width"):
            kind, v = plan["target"]
            y = v if kind == "mde" else decisive_mde(v, math.inf)
            ax.axhline(y, color="C3", lw=1, label=f"target (MDE ≈ {y:.2f})")
        ticks = sorted({r["S_a"] for r in rows})
        mins = {r["S_a"]: r["minutes"] for r in rows if r["analysis"] == "independent"}
        ax.set_xticks(ticks, [f"{t}\n{mins.get(t, float('nan')):.0f}′" for t in ticks], fontsize=7)
        ax.set_xlabel("seeds per method (minutes of the whole preset)")
        ax.set_ylabel("predicted MDE (points)")
        ax.set_title(f"{plan['claim']['a']} − {plan['claim']['b']}", fontsize=10)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="y", which="both", labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Power plan: predicted MDE (★ the run's own design)")
    return save_figure(fig, Path(out_png).parent, Path(out_png).stem)[0]


def _jsonable(plans: list[dict]) -> list[dict]:
    def row(r):
        return {k: v for k, v in r.items() if k != "design"}

    return [p if p.get("skipped") else
            {"claim": p["claim"], "target": p["target"], "run_mde": p["run_mde"],
             "best": None if p["best"] is None else row(p["best"]), "rows": [row(r) for r in p["rows"]]}
            for p in plans]


def main(args) -> int:
    plans, md = run(args.run_dir, args.claim, args.target_mde, range(2, args.max_seeds + 1), args.cores,
                    args.all_designs)
    print(md)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
        out.with_suffix(".json").write_text(json.dumps(_jsonable(plans), indent=1, default=str))
        plot(plans, out.with_suffix(".png"))
    return 0
