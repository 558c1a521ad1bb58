"""The power planner (ibtpo/analysis/power.py, ibtpo/jobs/power.py): variance components worked out by
hand, the run's own design reproducing the report's interval, designs moving the terms as the formulas
say, the cost model on hand-made job times, and the planner end to end on a hand-made run folder.
Its calibration against simulated runs is in tests/test_calibration.py."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from ibtpo.analysis.intervals import estimate_diff, estimate_paired
from ibtpo.analysis.power import Design, decisive_mde, fit, predict, residual_ms, sampling_var


def test_residual_mean_square_and_sampling_part_by_hand():
    # x = row effect + column effect exactly: no residual
    x = np.add.outer([0.0, 10.0], [20.0, 30.0, 70.0])
    assert residual_ms(x) == pytest.approx(0.0, abs=1e-12)
    # a 2 x 2 table with an interaction of ±1 in every cell: residuals ±1, SS 4, df 1
    assert residual_ms(np.array([[1.0, -1.0], [-1.0, 1.0]])) == pytest.approx(4.0)
    assert math.isnan(residual_ms(np.ones((1, 5))))
    # cells 50% and 100% (points) with k = 4: mean X(1-X) = (0.25 + 0) / 2, / (k - 1) = 1/24 -> 1e4/24 points²
    assert sampling_var(np.array([[50.0, 100.0]]), 4) == pytest.approx(1e4 / 24)


def _cells(rng, S, P, shift=0.0):
    """Two 'benchmarks' of S seeds x P problems, k = 4, in points; seed effects spread over ±8 points."""
    out = []
    seed = rng.permutation(np.linspace(-0.08, 0.08, S))[:, None]
    for mu in (0.2, 0.5):
        p = np.clip(mu + shift + 0.15 * rng.standard_normal((1, P)) + seed
                    + 0.05 * rng.standard_normal((S, P)), 0.01, 0.99)
        out.append(100 * rng.binomial(4, p) / 4)
    return out


def test_the_runs_own_design_reproduces_the_reports_interval():
    rng = np.random.default_rng(0)
    ga, gb = _cells(rng, 3, 60, 0.05), _cells(rng, 3, 60)
    c = fit(ga, gb, 4)
    pred = predict(c, Design(3, 3))
    ref = estimate_diff([g / 100 for g in ga], [g / 100 for g in gb]).scale(100)
    # nothing clipped at 0 here: the expected components at the run's own design are its observed ones
    assert c.a.a > 0 and c.b.a > 0 and min(c.d) > 0
    assert pred.mean == pytest.approx(ref.mean) and pred.se == pytest.approx(ref.se)
    assert pred.mde == pytest.approx(ref.mde) and pred.df == pytest.approx(ref.df)
    # paired seeds: the same for estimate_paired
    cp = fit(ga, gb, 4, paired=True)
    refp = estimate_paired([g / 100 for g in ga], [g / 100 for g in gb]).scale(100)
    assert predict(cp, Design(3, 3)).mde == pytest.approx(refp.mde)


def test_designs_move_the_terms_as_the_formulas_say():
    rng = np.random.default_rng(1)
    ga, gb = _cells(rng, 3, 80, 0.05), _cells(rng, 3, 80)
    c = fit(ga, gb, 4)
    m = 2
    ea, eb = c.a.resid(1.0), c.b.resid(1.0)
    # 8 seeds a side: v_seed = (σ²_a + Σ σ²_e/P / m²) / 8, the problem part (σ²_d + e_A/8 + e_B/8) / (m² P)
    p8 = predict(c, Design(8, 8))
    want_a = (c.a.a + sum(e / 80 for e in ea) / m**2) / 8
    want_b = (c.b.a + sum(e / 80 for e in eb) / m**2) / 8
    want_p = sum((d + x / 8 + y / 8) / (m * m * 80) for d, x, y in zip(c.d, ea, eb))
    assert p8.terms["seed_a"] == pytest.approx(want_a) and p8.terms["seed_b"] == pytest.approx(want_b)
    assert p8.terms["problem"] == pytest.approx(want_p)
    assert p8.term_df["seed_a"] == 7 and p8.mde < predict(c, Design(3, 3)).mde
    # twice the samples: only the k-sample part of the residual halves
    e2 = np.maximum(np.array(c.a.e) - np.array(c.a.q), 0) + np.array(c.a.q) / 2
    assert c.a.resid(0.5) == pytest.approx(e2)
    assert predict(c, Design(3, 3, 1.0, 8)).terms["problem"] < predict(c, Design(3, 3)).terms["problem"]
    # twice the problems halves the problem term's denominator
    assert predict(c, Design(3, 3, 2.0)).term_df["problem"] > predict(c, Design(3, 3)).term_df["problem"]


def test_the_decisive_mde_makes_the_interval_as_wide_as_the_effect():
    rng = np.random.default_rng(2)
    c = fit(_cells(rng, 8, 100, 0.03), _cells(rng, 8, 100), 4)
    est = predict(c, Design(8, 8))
    target = decisive_mde(2.9, est.df)
    # scale the standard error so the MDE equals the target: the interval's width is then 2.9
    se = target / (est.mde / est.se)
    from scipy import stats
    assert 2 * stats.t.ppf(0.975, est.df) * se == pytest.approx(2.9)
    assert 0.65 * 2.9 < target < 0.8 * 2.9


# ------------------------------------------------------------------------- the job on a run folder
def _write_eval(path, cells, k=4, seconds=None):
    samples = [{"id": f"p{i:03d}", "correct": [1] * int(round(c * k)) + [0] * (k - int(round(c * k)))}
               for i, c in enumerate(cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"k": k, "metrics": {f"avg@{k}": float(np.mean(cells))}, "samples": samples}
    if seconds:
        rec["seconds"] = seconds
    path.write_text(json.dumps(rec))
    return str(path)


def _bench(d, name, s):
    (d / "benchmarks").mkdir(parents=True, exist_ok=True)
    (d / "benchmarks" / f"{name}.tsv").write_text(f"s\th:m:s\n{s}\t0:00:00\n")


def test_power_job_on_a_hand_made_run(tmp_path, capsys):
    """A smoke-shaped run folder with hand-made evaluation files and job times: the planner reads it,
    reproduces the report's MDE at the run's design, finds more seeds cheaper than the target asks, and its
    minutes follow the cost model worked out here."""
    from ibtpo.config import load_config
    from ibtpo.jobs import power

    cfg = load_config("smoke")
    cfg["evaluation"]["benchmarks"] = cfg["evaluation"]["benchmarks"][:1]
    bench = cfg["evaluation"]["benchmarks"][0]
    cfg["methods"], cfg["seeds"], cfg["method_seeds"] = ["grpo", "ibtpo"], [0, 1, 2], {}
    cfg["train"].update(steps=10, checkpoint_every=5)
    run = tmp_path / "results" / "smoke"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(json.dumps(cfg))
    rng = np.random.default_rng(3)
    P = 120
    diff = rng.uniform(0.1, 0.9, P)
    rows, curves = {}, {}
    for m, gain, tok in (("grpo", 0.0, 100), ("ibtpo", 0.05, 100)):
        rows[m], curves[m] = {bench: []}, {}
        gain = gain + rng.normal(0, 0.15, P)  # method x problem interaction: the paired problem term is not 0
        for s in range(3):
            seed_eff = (-0.06, 0.0, 0.07)[s] if m == "grpo" else (0.05, -0.04, 0.0)[s]
            steps = {}
            for st in (5, 10):
                p = np.clip(diff + gain + seed_eff, 0, 1)
                f = _write_eval(run / "eval" / m / f"seed{s}" / f"step_{st}" / f"{bench}.json",
                                rng.binomial(4, p) / 4, seconds={"simple_evaluate": 6.0})
                steps[st] = {bench: f}
            met = run / "runs" / m / f"seed{s}" / "metrics.jsonl"
            met.parent.mkdir(parents=True, exist_ok=True)
            met.write_text("".join(json.dumps({"step": i, "cum_gen_tokens": tok * i}) + "\n" for i in range(1, 11)))
            curves[m][s] = {"metrics": str(met), "base": {bench: steps[5][bench]}, "steps": steps}
            rows[m][bench].append(steps[10][bench])
            _bench(run, f"train_{m}_seed{s}", 30.0 if m == "grpo" else 50.0)
            for st in (5, 10):
                _bench(run, f"eval_{m}_seed{s}_step{st}", 10.0)
                _bench(run, f"probe_{m}_seed{s}_step{st}", 4.0)
            _bench(run, f"probe_csv_{m}_seed{s}", 1.0)
    for name, s in (("make_data", 2.0), ("build_base", 100.0), ("eval_base", 10.0), ("eval_base_evalseed1", 10.0)):
        _bench(run, name, s)
    base = {bench: [_write_eval(run / "eval" / "base" / f"{bench}.json", rng.binomial(4, diff) / 4)]}
    (run / "manifests").mkdir()
    (run / "manifests" / "claims.json").write_text(json.dumps(
        {"rows": rows, "base": base, "curves": curves, "seeds": {"grpo": [0, 1, 2], "ibtpo": [0, 1, 2]}}))

    # the run's jobs: make_data (0-2 s), SFT (2-102 s), then a pause, and every other job ending at 602 s (the
    # longest, 50 s, from 552 s): busy 2 + 100 + 50 = 152 s
    t0 = 1.7e9
    for f in (run / "benchmarks").glob("*.tsv"):
        end = {"make_data": 2, "build_base": 102}.get(f.stem, 602)
        os.utime(f, (t0 + end, t0 + end))
    assert power.Costs.read(run, None).wall == pytest.approx(152.0)
    plans, md = power.run(run, ["ibtpo_beats_grpo"], target_mde=None, seeds=range(3, 9))
    plan = plans[0]
    # the run's own design: the report's MDE (same tokens here: equal steps only)
    from ibtpo.analysis.results import load_cells
    ref = estimate_diff([load_cells(rows["ibtpo"][bench])], [load_cells(rows["grpo"][bench])]).scale(100)
    assert plan["run_mde"]["equal_steps"] == pytest.approx(ref.mde, rel=1e-6)
    assert "equal_tokens" not in plan["run_mde"]
    # cost model by hand for 5 seeds of grpo and ibtpo: serial make_data + SFT; in parallel (2 cores) the base
    # evaluations and per seed train + 2 evaluations (fixed part 10 - 6 = 4 s, the rest scaled by 1), probes
    # for the 3 probed seeds only (2 x 4 s + 1 s each)
    row = next(r for r in plan["rows"] if r["S_a"] == 5 and r["analysis"] == "independent")
    par = 20.0 + 5 * (30 + 2 * 10) + 5 * (50 + 2 * 10) + 2 * 3 * (2 * 4 + 1)
    # the minutes are the model scaled by the run's measured wall time over the model's for the run's own
    # design (3 seeds each; probes of all 3): here the benchmark files say the run was busy 152 s
    own = 102.0 + (20.0 + 3 * (30 + 2 * 10) + 3 * (50 + 2 * 10) + 2 * 3 * (2 * 4 + 1)) / 2
    assert row["minutes"] == pytest.approx((102.0 + par / 2) / 60 * 152.0 / own)
    # twice the problems: the lm-eval part of every evaluation (6 s of 10) doubles
    wide = power.preset_seconds(cfg, power.Costs.read(run, Path(rows["grpo"][bench][0])), {"grpo": 5, "ibtpo": 5},
                                2.0, 2)
    assert wide["parallel"] == pytest.approx(par + (2 + 10 * 2) * 6.0)
    # more seeds, smaller MDE; the best design reaches the target and is the cheapest that does
    ind = sorted((r for r in plan["rows"] if r["analysis"] == "independent"), key=lambda r: r["S_a"])
    assert all(a["mde"]["equal_steps"] > b["mde"]["equal_steps"] for a, b in zip(ind, ind[1:]))
    best = plan["best"]
    if best is not None:
        assert best["reaches"] and all(r["minutes"] >= best["minutes"] for r in plan["rows"] if r["reaches"])
    assert "## ibtpo_beats_grpo: ibtpo − grpo" in md and "| paired |" in md
    assert power.plot(plans, tmp_path / "plan.png").stat().st_size > 10_000 and (tmp_path / "plan.svg").exists()
    with pytest.raises(SystemExit, match="unknown claim"):
        power.run(run, ["no_such_claim"])
    with pytest.raises(SystemExit, match="not found"):
        power.run(tmp_path / "nothing")


def test_power_refuses_an_evaluate_only_run(tmp_path):
    """methods: [] trains nothing: no claim to plan for (a claims manifest in the folder would be another run's)."""
    from ibtpo.config import load_config
    from ibtpo.jobs import power

    run = tmp_path / "results" / "eo"
    (run / "manifests").mkdir(parents=True)
    (run / "config.yaml").write_text(json.dumps(load_config("smoke", overrides={"methods": []})))
    (run / "manifests" / "claims.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"methods: \[\] is evaluate-only \(nothing is trained\): no claim"):
        power.run(run)


def test_busy_time_is_the_union_of_the_job_spans():
    from ibtpo.jobs.power import busy_seconds

    # two overlapping jobs (0-10, 5-12), a pause, then a job with one nested inside it (20-25, 21-22)
    assert busy_seconds([(20, 25), (0, 10), (21, 22), (5, 12)]) == 12 + 5
    assert busy_seconds([]) == 0.0
