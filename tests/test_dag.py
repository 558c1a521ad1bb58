"""The DAG itself: dry-run plans, a bad config fails before any job, the smoke preset builds table 1,
and a second run has nothing to do."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PLAN = Path(".snakemake") / "plan"  # where a dry run writes the resolved config and the manifests (Snakefile)
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir, *args, timeout=900):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.fixture()
def workdir(tmp_path):
    # pipelines/ is read relative to the Snakefile; results/ is written under the work directory
    (tmp_path / "results").mkdir()
    return tmp_path


def test_dry_run_plans_every_job_of_the_tiny_preset(workdir):
    r = snakemake(workdir, "-n", "--cores", "2", "results/table1.csv")
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout + r.stderr
    from ibtpo.config import load_config

    from ibtpo.config import seeds_of

    cfg = load_config("tiny")
    runs = sum(len(seeds_of(cfg, m)) for m in cfg["methods"])  # method_seeds: more seeds where the variance is
    assert runs > len(cfg["methods"]) * len(cfg["seeds"])
    n_ckpt = cfg["train"]["steps"] // cfg["train"]["checkpoint_every"]
    counts = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["train"] == runs and counts["evaluate"] == runs * n_ckpt  # every checkpoint is evaluated
    assert counts["evaluate_base"] == counts["build_base"] == counts["make_data"] == counts["table1"] == 1


def _job_counts(out: str) -> dict:
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


def test_dry_run_default_target_probes_every_checkpoint_and_table2_trains_the_ablations(workdir):
    from ibtpo.config import load_config, seeds_of

    cfg = load_config("tiny")
    n_ckpt = cfg["train"]["steps"] // cfg["train"]["checkpoint_every"]
    r = snakemake(workdir, "-n", "--cores", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    c = _job_counts(r.stdout + r.stderr)
    probed = len(cfg["methods"]) * len(cfg["seeds"])  # method_seeds' extra seeds are evaluated, not probed
    assert c["probe"] == probed * n_ckpt and c["probe_base"] == 1 and c["figures"] == c["claims"] == 1
    assert "table2" not in c  # ablations are beyond the default target's time budget
    r = snakemake(workdir, "-n", "--cores", "2", "results/table2.csv")
    assert r.returncode == 0, r.stderr + r.stdout
    c = _job_counts(r.stdout + r.stderr)
    assert c["train"] == sum(len(seeds_of(cfg, m)) for m in cfg["ablations"]) and c["table2"] == 1


def test_base_models_switch_trains_each_seed_from_its_own_base(workdir):
    """policy.base_models = 2: two SFT bases, RL seed j from base j mod 2, every base evaluated (the base
    row of the tables then has one file per base)."""
    conf = workdir / "bases.yaml"
    conf.write_text("extends: smoke\nseeds: [0, 1, 2]\npolicy:\n  base_models: 2\n")
    r = snakemake(workdir, "-n", "-p", "--cores", "2", "results/table1.csv", "--configfile", str(conf))
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout + r.stderr
    c = _job_counts(out)
    assert c["build_base"] == c["build_base_extra"] == c["evaluate_base_extra"] == 1
    assert "build-base --index 1" in out
    for seed, base in ((0, "base"), (1, "base_1"), (2, "base")):
        assert f"--seed {seed} --base results/smoke/{base} " in out, (seed, base)
    conf.write_text("extends: smoke\nseeds: [0]\npolicy:\n  base_models: 2\n")
    r = snakemake(workdir, "-n", "--cores", "2", "results/table1.csv", "--configfile", str(conf))
    assert r.returncode != 0 and "policy.base_models: 2 exceeds the number of seeds (1)" in r.stdout + r.stderr


def test_method_seeds_train_extra_seeds_from_the_shared_bases_and_probe_only_seeds(workdir):
    """method_seeds: grpo runs seeds 0-3, the others 0-1; seed 3 (all seeds: 0, 1, 3) starts from base
    3rd-seed mod 2 = base 0 for every method that runs it; probes only for the seeds of `seeds`; the table
    and claims manifests carry each method's seeds."""
    conf = workdir / "ms.yaml"
    conf.write_text("extends: smoke\nseeds: [0, 1]\nmethod_seeds: {grpo: [0, 1, 3]}\npolicy:\n  base_models: 2\n")
    r = snakemake(workdir, "-n", "-p", "--cores", "2", "--configfile", str(conf))
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout + r.stderr
    c = _job_counts(out)
    from ibtpo.config import load_config

    cfg = load_config(conf)
    n_ckpt = cfg["train"]["steps"] // cfg["train"]["checkpoint_every"]
    n_methods = len(cfg["methods"])
    assert c["train"] == 2 * n_methods + 1 and c["evaluate"] == (2 * n_methods + 1) * n_ckpt
    assert c["probe"] == 2 * n_methods * n_ckpt
    assert "--method grpo --seed 3 --base results/smoke/base " in out
    assert "--method grpo --seed 1 --base results/smoke/base_1 " in out
    man = json.loads((workdir / PLAN / "results" / "smoke" / "manifests" / "claims.json").read_text())
    assert man["seeds"]["grpo"] == [0, 1, 3] and man["seeds"]["ibtpo"] == [0, 1]
    assert len(man["rows"]["grpo"][cfg["evaluation"]["benchmarks"][0]]) == 3 and len(man["probes"]["grpo"]) == 2
    t1 = json.loads((workdir / PLAN / "results" / "smoke" / "manifests" / "table1.json").read_text())
    assert t1["seeds"]["grpo"] == [0, 1, 3]
    conf.write_text("extends: smoke\nmethod_seeds: {grpo_g12: [0, 1]}\n")
    r = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(conf))
    assert r.returncode != 0
    assert "method_seeds.grpo_g12: 'grpo_g12' is not trained by this preset" in r.stdout + r.stderr


def test_evaluate_only_plans_no_training_job(workdir):
    """methods: [] (evaluate-only): the default target and results/table1.csv plan make_data, the base model's and
    the external checkpoint's evaluations and Table 1; no train, probe or SFT job when policy.base names a
    checkpoint (with base: build, only the SFT of the base row). Table 1's manifest holds the base and external
    rows only; targets that need trained methods are refused at planning with one line."""
    (workdir / "ckpt").mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json"):  # what the planning check looks for
        (workdir / "ckpt" / f).write_text("{}")
    conf = workdir / "eo.yaml"
    conf.write_text("extends: smoke\npreset: eo\nmethods: []\npolicy: {base: ckpt}\n"
                    "external:\n  released: {path: ckpt, label: Released weights}\n")
    untrained = {"train", "probe", "probe_base", "evaluate", "build_base", "table3", "figures", "claims"}
    for target in ([], ["results/table1.csv"]):
        r = snakemake(workdir, "-n", "--cores", "1", *target, "--configfile", str(conf))
        assert r.returncode == 0, r.stderr + r.stdout
        c = _job_counts(r.stdout + r.stderr)
        assert not untrained & set(c), c
        assert c["make_data"] == c["evaluate_base"] == c["evaluate_external"] == c["table1"] == 1, c
    man = json.loads((workdir / PLAN / "results" / "eo" / "manifests" / "table1.json").read_text())
    assert set(man["rows"]) == {"base", "released"} and man["seeds"] == {}
    r = snakemake(workdir, "-n", "--cores", "1", "--config", "preset=smoke", "methods=[]")  # base: build
    assert r.returncode == 0, r.stderr + r.stdout
    c = _job_counts(r.stdout + r.stderr)
    assert c["build_base"] == c["evaluate_base"] == c["table1"] == 1 and not (untrained - {"build_base"}) & set(c)
    for target, rule in (("results/table3.csv", "table3"), ("results/claims.md", "claims"),
                         ("results/table2.csv", "table2")):
        r = snakemake(workdir, "-n", "--cores", "1", target, "--configfile", str(conf))
        assert r.returncode != 0 and f"{rule}: methods: [] is evaluate-only (nothing is trained)" in r.stdout + r.stderr


def test_bad_config_fails_before_any_job(workdir):
    r = snakemake(workdir, "-n", "--cores", "2", "results/table1.csv", "--config", "preset=smoke", "seeds=[]")
    assert r.returncode != 0
    assert "seeds" in (r.stdout + r.stderr)
    assert not (workdir / "results" / "smoke" / "data").exists()


def test_another_results_dir_holds_every_output(tmp_path):
    """With ``results_dir: out`` every file the DAG plans (tables 1-3, claims, figures, power, logs,
    benchmarks, manifests, the resolved config, last_run.json) lies under out/: nothing under results/.
    The top-level targets keep their names under it (out/table1.csv)."""
    r = snakemake(tmp_path, "-n", "-p", "--cores", "1", "all", "out/table2.csv", "out/smoke/power.md",
                  "--config", "preset=smoke", "results_dir=out", "run_ablations=true", "ablations=[grpo_ibadv]")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    c = _job_counts(out)
    assert c["table1"] == c["table2"] == c["table3"] == c["claims"] == c["figures"] == c["power"] == 1
    files = [f.strip() for line in out.splitlines() if line.startswith(("    output:", "    log:", "    benchmark:"))
             for f in line.split(":", 1)[1].split(",")]
    assert {"out/table1.csv", "out/table2.md", "out/table3.tex", "out/claims.json", "out/smoke/power.md",
            "out/smoke/figures/dynamics_step.png"} <= set(files)
    assert [f for f in files if not f.startswith("out/")] == []
    assert "results/" not in out  # no job's command names results/ either (--out, --md, --config ...)
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "out").exists()  # a dry run writes nothing (no last run, config or manifest) ...
    assert (tmp_path / PLAN / "out" / "smoke" / "config.yaml").exists()  # ... but under .snakemake/plan/


@pytest.mark.slow
def test_smoke_preset_builds_table1_and_rerun_is_a_no_op(workdir):
    r = snakemake(workdir, "--cores", "2", "--config", "preset=smoke")  # default target: everything
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    t3 = pd.read_csv(workdir / "results" / "table3.csv")
    assert list(t3["G"]) == [8, 12, 12, 12, 12] * 2 and set(t3["policy"]) == {"base", "ibtpo@4"}
    for name in ("table1", "table3"):
        for ext in ("csv", "md", "tex"):
            assert (workdir / "results" / f"{name}.{ext}").stat().st_size > 100, (name, ext)
    figs = workdir / "results" / "smoke" / "figures"
    for stem in ("dynamics_step", "dynamics_tokens", "training_curves"):
        assert (figs / f"{stem}.png").exists() and (figs / f"{stem}.svg").exists()
    probe = pd.read_csv(workdir / "results" / "smoke" / "probe" / "ibtpo" / "seed0.csv")
    assert list(probe["step"]) == [0, 2, 4] and probe["ib_score"].notna().all()
    claims = json.loads((workdir / "results" / "claims.json").read_text())
    verdicts = {c["id"]: c["verdict"] for c in claims["claims"]}
    assert verdicts["grpo_cliphigher_not_better"] == "not measured at this preset"  # not in the smoke run
    assert verdicts["ibtpo_beats_grpo"] in ("supported", "not supported", "inconclusive")
    assert "## Verdict rule" in (workdir / "results" / "claims.md").read_text()
    rep = snakemake(workdir, "--config", "preset=smoke", "--report", "results/report.html")
    assert rep.returncode == 0, (rep.stdout + rep.stderr)[-3000:]
    assert (workdir / "results" / "report.html").stat().st_size > 100_000
    df = pd.read_csv(workdir / "results" / "table1.csv")
    assert list(df["method"]) == ["base", "grpo", "ibtpo", "ibtpo-grpo", "grpo-base"]  # + the difference rows
    for col in ("arith_ops2", "arith_ops3", "arith_ops4", "arith_wide", "Avg"):
        assert df[df["kind"] == "method"][col].between(0, 100).all()
    md = (workdir / "results" / "table1.md").read_text()
    assert "| GRPO |" in md and "| IB-TPO |" in md and "Base model" in md
    run = workdir / "results" / "smoke" / "runs" / "grpo" / "seed0"
    for f in ("config.yaml", "provenance.json", "metrics.jsonl"):
        assert (run / f).exists(), f
    evals = sorted(p.relative_to(workdir / "results" / "smoke" / "eval").as_posix()
                   for p in (workdir / "results" / "smoke" / "eval").rglob("step_*/*.json"))
    assert len(evals) == 4 * (2 + 2 * 2)  # base (eval seeds 0, 1) + 2 methods x steps 2 and 4, four benchmarks each
    again = snakemake(workdir, "--cores", "2", "--config", "preset=smoke")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    # every job recorded its time; the planner target reads them (smoke ran one seed: nothing to plan)
    assert (workdir / "results" / "smoke" / "benchmarks" / "train_grpo_seed0.tsv").exists()
    pw = snakemake(workdir, "results/smoke/power.md", "--cores", "1", "--config", "preset=smoke")
    assert pw.returncode == 0, (pw.stdout + pw.stderr)[-3000:]
    assert "Not planned: ['ibtpo', 'grpo'] ran one seed" in (workdir / "results" / "smoke" / "power.md").read_text()

    # determinism: a second run from clean gives a byte-identical table 1 (table 3 holds wall
    # times, provenance.json and metrics.jsonl hold timestamps and timings: those differ)
    other = workdir / "second"
    (other / "results").mkdir(parents=True)
    r2 = snakemake(other, "--cores", "2", "results/table1.csv", "results/smoke/probe/grpo/seed0/step_4.json",
                   "--config", "preset=smoke")
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-4000:]
    assert (other / "results" / "table1.csv").read_bytes() == (workdir / "results" / "table1.csv").read_bytes()
    p1, p2 = (json.loads((d / "results" / "smoke" / "probe" / "grpo" / "seed0" / "step_4.json").read_text())
              for d in (workdir, other))
    assert p1["problems"] == p2["problems"]

    # moving data_dir, which the smoke preset never reads, reruns nothing
    moved = snakemake(workdir, "-n", "--cores", "2", "--config", "preset=smoke", "data_dir=/nowhere/else")
    assert moved.returncode == 0 and "Nothing to be done" in moved.stdout + moved.stderr, moved.stdout[-2000:]

    # the README's bare report command reports the preset that was run last (here smoke, not tiny: a dry
    # run of tiny plans it but runs nothing, so it records nothing)
    assert json.loads((workdir / "results" / "last_run.json").read_text())["preset"] == "smoke"
    planned = snakemake(workdir, "-n", "--cores", "1", "--config", "preset=tiny")
    assert planned.returncode == 0, (planned.stdout + planned.stderr)[-2000:]
    assert json.loads((workdir / "results" / "last_run.json").read_text())["preset"] == "smoke"
    bare = snakemake(workdir, "--report", "results/report_bare.html")
    assert bare.returncode == 0, (bare.stdout + bare.stderr)[-3000:]
    assert "the last run's, 'smoke'" in bare.stdout + bare.stderr
    assert (workdir / "results" / "report_bare.html").stat().st_size > 100_000

    # an external checkpoint (here the smoke base model itself, by path) becomes a row of Table 1: the
    # same weights under the same evaluation spec and seed give exactly the base row's numbers
    ext = workdir / "ext.yaml"
    ext.write_text("extends: smoke\nexternal:\n  released: {path: results/smoke/base, label: Released weights}\n")
    r3 = snakemake(workdir, "--cores", "2", "results/table1.csv", "--configfile", str(ext))
    assert r3.returncode == 0, (r3.stdout + r3.stderr)[-4000:]
    assert "evaluate_external" in r3.stdout + r3.stderr and "rule train:" not in r3.stdout + r3.stderr
    t1 = pd.read_csv(workdir / "results" / "table1.csv").set_index("method")
    assert t1.loc["released", "kind"] == "external" and t1.loc["released", "label"] == "Released weights"
    for col in ("arith_ops2", "arith_ops3", "arith_ops4", "arith_wide", "Avg"):
        assert t1.loc["released", col] == t1.loc["base", col], col
    assert "| Released weights |" in (workdir / "results" / "table1.md").read_text()

    # the top level shows one run: every relative link of the published claims report resolves from there;
    # an evaluate-only run of the same preset then publishes Table 1 alone and removes the earlier run's
    # claims and Table 3 from the top level (their preset copies stay), and a dry run of another preset
    # changes nothing there
    top = workdir / "results"
    links = re.findall(r"\]\(([^)#]+)\)", (top / "claims.md").read_text())
    assert "smoke/figures/dynamics_step.png" in links and all((top / f).exists() for f in links), links
    eo = snakemake(workdir, "--cores", "2", "results/table1.csv", "--config", "preset=smoke", "methods=[]")
    assert eo.returncode == 0, (eo.stdout + eo.stderr)[-3000:]
    assert "rule train:" not in eo.stdout + eo.stderr and "[publish] removed results/claims.md" in eo.stderr
    reports = {"table1.csv", "table1.md", "table1.tex", "table2.csv", "table3.csv", "claims.md", "claims.json"}
    assert sorted(p.name for p in top.iterdir() if p.name in reports) == ["table1.csv", "table1.md", "table1.tex"]
    assert (top / "smoke" / "claims.md").exists() and (top / "smoke" / "table3.csv").exists()
    assert pd.read_csv(top / "table1.csv")["method"].tolist() == ["base"]
    before = {p: p.stat().st_mtime_ns for p in top.rglob("*")}
    assert snakemake(workdir, "-n", "--cores", "1", "--config", "preset=tiny").returncode == 0
    assert {p: p.stat().st_mtime_ns for p in top.rglob("*")} == before
