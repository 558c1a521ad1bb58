"""What reviewers read: bootstrap intervals, the claims verdict rule, result tables, the probe and
the figures. Expected values are computed here from the definitions, not by the code under test."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from ibtpo.analysis.bootstrap import bootstrap_diff, bootstrap_mean
from ibtpo.analysis.claims import INCONCLUSIVE, NOT_MEASURED, NOT_SUPPORTED, SUPPORTED, combine, verdict
from ibtpo.rollout.tree import Tree


# ----------------------------------------------------------------------------------- bootstrap
def test_bootstrap_constant_sample_is_a_point():
    ci = bootstrap_mean([np.full((3, 50), 0.25)], n_resamples=500)
    assert ci.mean == ci.lo == ci.hi == 0.25


def test_bootstrap_seed_resampling_known_distribution():
    # seed 0 got every problem wrong, seed 1 every problem right: resampling the two seeds gives
    # stat 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 95% interval is [0, 1].
    X = np.array([[0.0] * 20, [1.0] * 20])
    ci = bootstrap_mean([X], n_resamples=4000, seed=1)
    assert ci.mean == 0.5 and ci.lo == 0.0 and ci.hi == 1.0


def test_bootstrap_one_seed_matches_scipy_and_the_normal_approximation():
    rng = np.random.default_rng(0)
    x = rng.binomial(1, 0.3, size=400).astype(float)
    ours = bootstrap_mean([x[None, :]], n_resamples=4000, seed=3)
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=3).confidence_interval
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert abs(ours.lo - ref.low) < 0.01 and abs(ours.hi - ref.high) < 0.01
    assert abs((ours.hi - ours.lo) / 2 - half) < 0.15 * half


def test_bootstrap_mean_over_benchmarks():
    a, b = np.full((2, 10), 0.2), np.full((2, 30), 0.6)
    assert bootstrap_mean([a, b], n_resamples=200).mean == pytest.approx(0.4)  # mean of benchmark means


def test_paired_difference_of_a_constant_shift_is_exact():
    rng = np.random.default_rng(1)
    a = rng.random((1, 80))
    ci = bootstrap_diff([a + 0.1], [a], n_resamples=1000)
    assert ci.mean == pytest.approx(0.1) and ci.lo == pytest.approx(0.1) and ci.hi == pytest.approx(0.1)


def test_difference_of_identical_methods_contains_zero():
    rng = np.random.default_rng(2)
    a = rng.binomial(1, 0.5, size=(3, 100)).astype(float)
    ci = bootstrap_diff([a], [a[::-1]], n_resamples=2000)
    assert ci.lo < 0 < ci.hi


# ---------------------------------------------------------------------------------- verdict rule
@pytest.mark.parametrize("lo,hi,direction,kw,expected", [
    (0.5, 3.0, "greater", {}, SUPPORTED),
    (-3.0, -0.2, "greater", {}, NOT_SUPPORTED),
    (-1.0, 2.0, "greater", {}, INCONCLUSIVE),
    (-2.0, 0.8, "not_greater", {"margin": 1.0}, SUPPORTED),      # rules out a gain above the margin
    (0.3, 2.5, "not_greater", {"margin": 1.0}, NOT_SUPPORTED),   # a significant gain
    (-1.0, 2.5, "not_greater", {"margin": 1.0}, INCONCLUSIVE),
    (0.98, 1.03, "within", {"bounds": (0.95, 1.05)}, SUPPORTED),
    (1.40, 1.60, "within", {"bounds": (0.95, 1.05)}, NOT_SUPPORTED),
    (1.00, 1.20, "within", {"bounds": (0.95, 1.05)}, INCONCLUSIVE),
    (None, None, "greater", {}, NOT_MEASURED),
])
def test_verdict_rule(lo, hi, direction, kw, expected):
    assert verdict(lo, hi, direction, **kw) == expected


def test_verdict_combination_and_errors():
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, NOT_SUPPORTED]) == NOT_SUPPORTED
    assert combine([SUPPORTED, NOT_MEASURED]) == NOT_MEASURED
    with pytest.raises(ValueError, match="empty"):
        verdict(1.0, 0.0)


# ----------------------------------------------------------------------------------- tables
def _eval_file(path, correct_by_problem, k=2):
    samples = [{"id": f"p{i}", "answer": "1", "responses": [""] * k, "correct": c} for i, c in enumerate(correct_by_problem)]
    avg = float(np.mean([np.mean(c) for c in correct_by_problem]))
    path.write_text(json.dumps({"k": k, "metrics": {f"avg@{k}": avg}, "samples": samples}))
    return str(path)


def test_method_table_means_stds_and_difference(tmp_path):
    from ibtpo.analysis.results import method_table, write_all

    # method a: seeds score 50% and 100% on bench x (2 problems, k=2); method b: 0% and 50%
    a = [_eval_file(tmp_path / "a0.json", [[1, 0], [0, 1]]), _eval_file(tmp_path / "a1.json", [[1, 1], [1, 1]])]
    b = [_eval_file(tmp_path / "b0.json", [[0, 0], [0, 0]]), _eval_file(tmp_path / "b1.json", [[1, 0], [1, 0]])]
    df = method_table({"a": {"x": a}, "b": {"x": b}}, ["x"], {"a": "A", "b": "B"}, diffs=[("a", "b")], n_boot=300)
    ra, rb, rd = (df[df["method"] == m].iloc[0] for m in ("a", "b", "a-b"))
    assert ra["x"] == 75.0 and ra["x_std"] == pytest.approx(round(np.std([50, 100], ddof=1), 2))
    assert rb["x"] == 25.0 and rd["x"] == 50.0 and rd["kind"] == "difference"
    assert ra["Avg"] == ra["x"] and 0 <= ra["x_lo"] <= 75 <= ra["x_hi"] <= 100
    files = write_all(df, tmp_path / "t", ["x", "Avg"], "T")
    md = files[1].read_text()
    assert "**75.0 ± 35.4" in md and "A − B" in md  # best method bolded, difference row present
    assert r"\textbf{75.0" in files[2].read_text()


def test_paper_side_by_side_keeps_missing_cells_empty(tmp_path):
    from ibtpo.analysis.results import add_paper

    (tmp_path / "paper.csv").write_text("model,method,MATH-500,AIME24\nM,GRPO,66.8,\nM,IB-TPO,70.1,\nN,GRPO,1,2\n")
    df = pd.DataFrame({"method": ["grpo", "ibtpo", "base"], "math500": [60.0, 71.0, 50.0], "aime24": [1.0, 2.0, 0.0]})
    out = add_paper(df, tmp_path / "paper.csv", "M", {"math500": "MATH-500", "aime24": "AIME24"},
                    {"grpo": "GRPO", "ibtpo": "IB-TPO"})
    assert list(out["math500_paper"][:2]) == [66.8, 70.1] and pd.isna(out["math500_paper"][2])
    assert out["math500_vs_paper"][0] == pytest.approx(60.0 - 66.8) and out["aime24_paper"].isna().all()
    with pytest.raises(ValueError, match="no column 'GPQA'"):
        add_paper(df, tmp_path / "paper.csv", "M", {"math500": "GPQA"}, {})


# ------------------------------------------------------------------------------------ probe
def _tree(rewards_by_child, prob_by_child):
    t = Tree({"id": "q", "problem": "q", "answer": "1"}, [1])
    for rewards, p in zip(rewards_by_child, prob_by_child):
        c = t.add_node(0, [5, 5], [math.log(p)] * 2, [0.5, 0.7])
        for r in rewards:
            t.set_reward(t.add_node(c, [6], [0.0], [0.1]), r)
    return t


def test_probe_record_by_hand():
    from ibtpo.jobs.probe import tree_record

    t = _tree([[1, 1], [1, 0]], [0.6, 0.2])  # children: p_hat 1 and 0.5; root p_hat 0.75
    beta = 5.0
    pi = np.array([0.6, 0.2])  # length_norm (the default): exp(mean log-prob), not renormalised
    eta1 = np.array([1 / 0.75, 0.5 / 0.75]) - (1 + 1 / beta)
    root_ib = (1 + beta) * np.mean(eta1 * pi)
    root_cov = np.mean(eta1 * pi) - eta1.mean() * pi.mean()
    # the two inner children: child 1 (both leaves correct, p_hat = 1): eta1 = 1 - 1.2 each, leaf pi = exp(0) = 1
    c1 = (1 + beta) * (1 - 1.2) * 1.0
    # child 2 (p_hat 0.5): leaf ratios 2 and 0
    c2 = (1 + beta) * np.mean((np.array([2.0, 0.0]) - 1.2) * 1.0)
    rec = tree_record(t)
    assert rec["root_ib"] == pytest.approx(root_ib) and rec["root_cov"] == pytest.approx(root_cov)
    assert rec["ib_score_all"] == pytest.approx(np.mean([root_ib, c1, c2]))
    assert rec["cov_eta_all"] == pytest.approx(np.mean([root_cov, 0.0, 0.0]))
    # every node branches here (root: 2 children, each child: 2 leaves)
    assert rec["ib_score"] == rec["ib_score_all"] and rec["n_branching"] == 3
    assert rec["entropy"] == pytest.approx(np.mean([0.5, 0.7, 0.5, 0.7] + [0.1] * 4))
    assert rec["effective"] == 1.0 and rec["avg_rate"] == 0.75 and rec["tokens"] == 8


def test_probe_averages_over_branching_nodes_only():
    from ibtpo.jobs.probe import tree_record

    t = Tree({"id": "q", "problem": "q", "answer": "1"}, [1])
    a, b = (t.add_node(0, [5], [math.log(0.5)], [0.2]) for _ in range(2))
    a2 = t.add_node(a, [5], [0.0], [0.2])            # a has a single child: not a branching node
    t.set_reward(t.add_node(a2, [6], [0.0], [0.1]), 1)
    t.set_reward(t.add_node(b, [6], [0.0], [0.1]), 0)
    # root: children p_hat 1 and 0, root p_hat 0.5: eta1 = (2 - 1.2, 0 - 1.2), pi = (1/2, 1/2)
    root_ib = 6 * np.mean(np.array([0.8, -1.2]) * 0.5)
    rec = tree_record(t)  # length_norm: the root's children have pi .5 each; every other child pi exp(0) = 1
    assert rec["n_branching"] == 1 and rec["ib_score"] == pytest.approx(root_ib)
    assert rec["ib_score_all"] == pytest.approx(np.mean([root_ib, -1.2, -1.2, -1.2]))  # a, a2, b: one child each


def test_probe_is_the_same_for_every_method(tmp_path, tok):
    """Same problems, same seed, whatever the method: two runs of the probe on one checkpoint agree."""
    from ibtpo.config import load_config
    from ibtpo.data.problems import write_jsonl
    from ibtpo.jobs import probe
    from ibtpo.model.tiny import build_tiny_llama

    cfg = load_config("smoke")
    ck = tmp_path / "ck"
    build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, seed=0).save_pretrained(ck)
    tok.save_pretrained(ck)
    write_jsonl(tmp_path / "bench" / "arith_id.jsonl",
                [{"id": f"q{i}", "problem": f"Compute {i}+1.", "answer": str(i + 1)} for i in range(10)])
    outs = [probe.run(cfg, ck, tmp_path / "bench", tmp_path / f"{m}.json") for m in ("grpo", "ibtpo")]
    assert outs[0]["problem_ids"] == [f"q{i}" for i in range(cfg["probe"]["n_problems"])]
    assert outs[0]["problems"] == outs[1]["problems"] and outs[0]["summary"] == outs[1]["summary"]


# ----------------------------------------------------------------------------------- figures
def test_figures_from_a_fixture_of_run_logs(tmp_path):
    from ibtpo.jobs import figures

    def probe_file(path, cov):
        s = {"ib_score": -1.0, "cov_eta": cov, "root_ib": 0, "root_cov": 0, "entropy": 0.5, "effective": 0.5,
             "avg_rate": 0.25, "tokens": 100.0}
        path.write_text(json.dumps({"summary": s, "problems": []}))
        return str(path)

    base_eval = [_eval_file(tmp_path / "base.json", [[0, 0], [1, 0]])]  # 25%
    runs = {}
    for m in ("grpo", "ibtpo"):
        runs[m] = {}
        for s in (0, 1):
            met = tmp_path / f"{m}{s}.jsonl"
            met.write_text("".join(json.dumps({"step": i, "cum_gen_tokens": 100 * i, "reward_mean": 0.1 * i,
                                               "eff_rate": 0.5, "sample_entropy": 0.3}) + "\n" for i in range(1, 5)))
            steps = {st: {"eval": [_eval_file(tmp_path / f"{m}{s}_{st}.json", [[1, 1], [s, 0]])],  # (100 + 50 s) / 2 %
                          "probe": probe_file(tmp_path / f"p{m}{s}_{st}.json", 0.01 * st)} for st in (2, 4)}
            runs[m][s] = {"metrics": str(met), "steps": steps}
    df = figures.run(runs, base_eval, probe_file(tmp_path / "pbase.json", 0.0), {"grpo": "GRPO"},
                     tmp_path / "fig", "fixture")
    for stem in ("dynamics_step", "dynamics_tokens", "training_curves"):
        for ext in ("png", "svg"):
            assert (tmp_path / "fig" / f"{stem}.{ext}").stat().st_size > 1000
    row = df[(df["method"] == "ibtpo") & (df["seed"] == 1) & (df["step"] == 4)].iloc[0]
    assert row["accuracy"] == 75.0 and row["cum_tokens"] == 400 and row["cov_eta"] == pytest.approx(0.04)
    assert df[(df["step"] == 0)]["accuracy"].eq(25.0).all() and len(df) == 2 * 2 * 3


# ------------------------------------------------------------------------------ stale checkpoints
def test_checkpoints_of_another_configuration_are_set_aside(tmp_path):
    from ibtpo.jobs.train import set_aside_stale

    run = tmp_path / "run"
    run.mkdir()
    set_aside_stale(run, "aaa", log=lambda *_: None)   # a fresh run records its fingerprint
    (run / "ckpt" / "step_10").mkdir(parents=True)
    set_aside_stale(run, "aaa", log=lambda *_: None)   # same configuration: resume from it
    assert (run / "ckpt" / "step_10").exists()
    msgs = []
    set_aside_stale(run, "bbb", log=msgs.append)       # changed: kept aside, never resumed
    assert not (run / "ckpt").exists() and (run / "stale-aaa" / "ckpt" / "step_10").exists() and "moved" in msgs[0]


def test_table2_reads_the_papers_ablation_rows(tmp_path):
    from ibtpo.jobs import table1

    shared = __import__("conftest").REPO.parent / "shared" / "paper"
    cfg = {"preset": "t", "train": {"steps": 1}, "evaluation": {"benchmarks": ["amc24"], "k": 2},
           "method_defs": {"grpo": {"label": "GRPO"}, "ibtpo": {"label": "IB-TPO"}},
           "report": {"bootstrap": 200, "confidence": 0.95, "paper_dir": str(shared), "paper_model": "Qwen3-8B-Base",
                      "paper_columns": {"amc24": "AMC24", "math500": "MATH-500"}}}
    rows = {m: {"amc24": [_eval_file(tmp_path / f"{m}.json", [[1, 0]])]} for m in ("grpo", "ibtpo")}
    df = table1.run(cfg, rows, tmp_path / "table2", "table2")
    got = dict(zip(df["method"], df["amc24_paper"]))
    assert got["grpo"] == 39.4 and got["ibtpo"] == 46.0  # ../shared/paper/table2_ablation.csv
    assert "amc24 (paper)" in (tmp_path / "table2.md").read_text()
