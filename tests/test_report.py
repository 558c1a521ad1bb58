"""What reviewers read: the claims verdict rule, result tables, the probe and
the figures. Expected values are computed here from the definitions, not by the code under test."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.stats

from ibtpo.analysis.verdicts import (INCONCLUSIVE, NOT_MEASURED, NOT_SUPPORTED, SMALLER, SUPPORTED, SUPPORTED_SMALLER,
                                   combine, verdict)
from ibtpo.rollout.tree import Tree


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
    # with the paper's effect E = 2.9: an upper end below E rules the reported effect out
    (-1.0, 2.0, "greater", {"reported": 2.9}, SMALLER),             # sign open, +2.9 excluded
    (0.2, 2.6, "greater", {"reported": 2.9}, SUPPORTED_SMALLER),    # a real gain, smaller than the paper's
    (0.2, 3.4, "greater", {"reported": 2.9}, SUPPORTED),            # consistent with the paper
    (-1.0, 3.4, "greater", {"reported": 2.9}, INCONCLUSIVE),        # holds both 0 and +2.9
    (-3.0, -0.2, "greater", {"reported": 2.9}, NOT_SUPPORTED),      # below 0: not supported says more
    (-2.0, 0.8, "not_greater", {"margin": 1.0, "reported": 2.9}, SUPPORTED),  # only "greater" claims take E
])
def test_verdict_rule(lo, hi, direction, kw, expected):
    assert verdict(lo, hi, direction, **kw) == expected


def test_verdict_combination_and_errors():
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, NOT_SUPPORTED]) == NOT_SUPPORTED
    assert combine([SUPPORTED, NOT_MEASURED]) == NOT_MEASURED
    # a comparison that rules the paper's effect out marks the claim, unless one is not supported
    assert combine([SUPPORTED, SUPPORTED_SMALLER]) == SUPPORTED_SMALLER
    assert combine([SUPPORTED, SMALLER]) == SMALLER
    assert combine([INCONCLUSIVE, SUPPORTED_SMALLER]) == SMALLER
    assert combine([SMALLER, SMALLER]) == SMALLER
    assert combine([SUPPORTED_SMALLER, SUPPORTED_SMALLER]) == SUPPORTED_SMALLER
    assert combine([SMALLER, NOT_SUPPORTED]) == NOT_SUPPORTED
    assert combine([SMALLER, NOT_MEASURED]) == NOT_MEASURED
    with pytest.raises(ValueError, match="empty"):
        verdict(1.0, 0.0)


# ----------------------------------------------------------------------------------- tables
def _eval_file(path, correct_by_problem, k=2):
    samples = [{"id": f"p{i}", "answer": "1", "responses": [""] * k, "correct": c}
               for i, c in enumerate(correct_by_problem)]
    avg = float(np.mean([np.mean(c) for c in correct_by_problem]))
    path.write_text(json.dumps({"k": k, "metrics": {f"avg@{k}": avg}, "samples": samples}))
    return str(path)


def test_method_table_means_stds_and_difference(tmp_path):
    from ibtpo.analysis.results import method_table, write_all

    # method a: seeds score 50% and 100% on bench x (2 problems, k=2); method b: 0% and 50%
    a = [_eval_file(tmp_path / "a0.json", [[1, 0], [0, 1]]), _eval_file(tmp_path / "a1.json", [[1, 1], [1, 1]])]
    b = [_eval_file(tmp_path / "b0.json", [[0, 0], [0, 0]]), _eval_file(tmp_path / "b1.json", [[1, 0], [1, 0]])]
    df = method_table({"a": {"x": a}, "b": {"x": b}}, ["x"], {"a": "A", "b": "B"}, diffs=[("a", "b")])
    ra, rb, rd = (df[df["method"] == m].iloc[0] for m in ("a", "b", "a-b"))
    assert ra["x"] == 75.0 and ra["x_std"] == pytest.approx(round(np.std([50, 100], ddof=1), 2))
    assert rb["x"] == 25.0 and rd["x"] == 50.0 and rd["kind"] == "difference"
    # two seeds (50, 100), every problem alike: SE = 25 points with 1 df, 75 ± 12.7·25 is clipped to [0, 100]
    assert ra["Avg"] == ra["x"] and ra["x_lo"] == 0.0 and ra["x_hi"] == 100.0
    # a − b: seed terms var(50, 100)/2 = 625 and var(0, 50)/2 = 625 points² (the paired problem term is 0),
    # Welch df 1250² / (625²/1 + 625²/1) = 2
    se, t = math.sqrt(625 + 625), scipy.stats.t.ppf
    assert rd["x_mde"] == pytest.approx((t(0.975, 2) + t(0.80, 2)) * se, abs=0.006) and pd.isna(ra["x_mde"])
    assert (rd["x_lo"], rd["x_hi"]) == (-100.0, 100.0)  # 50 ± 4.30·35.4, clipped to the range of a difference
    files = write_all(df, tmp_path / "t", ["x", "Avg"], "T")
    md = files[1].read_text()
    assert "**75.0 ± 35.4" in md and "A − B" in md  # best method bolded, difference row present
    assert r"\textbf{75.0" in files[2].read_text()


def test_method_table_intervals_follow_the_formula(tmp_path):
    """The table's intervals and MDE recomputed from the formula of ``ibtpo.analysis.intervals``
    (scipy for t quantiles, Welch's df and the one-sample t interval)."""
    from ibtpo.analysis.results import method_table

    rng = np.random.default_rng(5)
    k, P = 4, 30
    correct = {"a": rng.binomial(1, 0.6, size=(3, P, k)), "b": rng.binomial(1, 0.4, size=(3, P, k)),
               "base": rng.binomial(1, 0.3, size=(1, P, k))}
    rows = {m: {"x": [_eval_file(tmp_path / f"{m}{s}.json", c[s].tolist(), k) for s in range(len(c))]}
            for m, c in correct.items()}
    df = method_table(rows, ["x"], {}, diffs=[("a", "b")])
    r = {m: df[df["method"] == m].iloc[0] for m in ("a", "b", "base", "a-b")}
    X = {m: 100 * c.mean(axis=2) for m, c in correct.items()}  # (seeds, problems), points
    A, B, t = X["a"], X["b"], scipy.stats.t.ppf
    close = dict(abs=0.006)  # the table rounds to 2 decimals

    # one method: seed term var_s(seed means)/3 with 2 df, problem term var_p(problem means)/30 with 29 df,
    # half-width sqrt(t_2² v_seed + t_29² v_prob)
    v_seed, v_prob = np.var(A.mean(1), ddof=1) / 3, np.var(A.mean(0), ddof=1) / P
    half = math.sqrt(t(0.975, 2) ** 2 * v_seed + t(0.975, P - 1) ** 2 * v_prob)
    assert (r["a"]["x_lo"], r["a"]["x_hi"]) == (pytest.approx(A.mean() - half, **close),
                                                pytest.approx(A.mean() + half, **close))
    # the base model is not seed-varied: the one-sample t interval over its problems
    ci = scipy.stats.ttest_1samp(X["base"][0], 0.0).confidence_interval(0.95)
    assert (r["base"]["x_lo"], r["base"]["x_hi"]) == (pytest.approx(ci.low, **close), pytest.approx(ci.high, **close))

    # a − b: the seed terms of both (independent runs) with Welch's df, the paired problem term with 29 df
    va, vb = np.var(A.mean(1), ddof=1) / 3, np.var(B.mean(1), ddof=1) / 3
    df_seed = scipy.stats.ttest_ind(A.mean(1), B.mean(1), equal_var=False).df  # (va + vb)² / (va²/2 + vb²/2)
    assert df_seed == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2))
    v_prob = np.var(A.mean(0) - B.mean(0), ddof=1) / P
    half = math.sqrt(t(0.975, df_seed) ** 2 * (va + vb) + t(0.975, P - 1) ** 2 * v_prob)
    se = math.sqrt(va + vb + v_prob)
    df_eff = scipy.optimize.brentq(lambda d: t(0.975, d) - half / se, 1, 1e6)  # t_{df} = half / se
    mean = A.mean() - B.mean()
    assert r["a-b"]["x"] == pytest.approx(mean, **close)
    assert (r["a-b"]["x_lo"], r["a-b"]["x_hi"]) == (pytest.approx(mean - half, **close),
                                                    pytest.approx(mean + half, **close))
    assert r["a-b"]["x_mde"] == pytest.approx(half + t(0.80, df_eff) * se, **close)
    assert r["a-b"]["Avg_mde"] == r["a-b"]["x_mde"]


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
    write_jsonl(tmp_path / "bench" / "arith_ops3.jsonl",
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
    cfg = {"preset": "t", "train": {"steps": 1}, "evaluation": {"benchmarks": ["amc24"], "k": 2, "answer": "boxed"},
           "method_defs": {"grpo": {"label": "GRPO"}, "ibtpo": {"label": "IB-TPO"}},
           "report": {"bootstrap": 200, "confidence": 0.95, "paper_dir": str(shared), "paper_model": "Qwen3-8B-Base",
                      "paper_columns": {"amc24": "AMC24", "math500": "MATH-500"}}}
    rows = {m: {"amc24": [_eval_file(tmp_path / f"{m}.json", [[1, 0]])]} for m in ("grpo", "ibtpo")}
    df = table1.run(cfg, rows, tmp_path / "table2", "table2")
    got = dict(zip(df["method"], df["amc24_paper"]))
    assert got["grpo"] == 39.4 and got["ibtpo"] == 46.0  # ../shared/paper/table2_ablation.csv
    assert "amc24 (paper)" in (tmp_path / "table2.md").read_text()


def test_table1_evaluate_only_holds_the_base_and_external_rows(tmp_path):
    """methods: [] (evaluate-only): Table 1 from the base model's and an external checkpoint's files alone: those
    two rows, no difference row (GRPO − base needs GRPO), no bold, a title that says nothing was trained."""
    from ibtpo.jobs import table1

    cfg = {"preset": "my", "train": {"steps": 4}, "evaluation": {"benchmarks": ["x", "y"], "k": 2, "answer": "boxed"},
           "method_defs": {"grpo": {"label": "GRPO"}}, "external": {"released": {"path": "ckpt", "label": "Released"}},
           "report": {"confidence": 0.95}}
    rows = {"base": {b: [_eval_file(tmp_path / f"base_{b}.json", [[1, 0], [0, 0], [1, 1]])] for b in ("x", "y")},
            "released": {b: [_eval_file(tmp_path / f"rel_{b}.json", [[1, 1], [1, 0], [1, 1]])] for b in ("x", "y")}}
    df = table1.run(cfg, rows, tmp_path / "table1", "table1", seeds={})
    assert list(df["method"]) == ["base", "released"] and list(df["kind"]) == ["method", "external"]
    assert list(df["label"]) == ["Base model", "Released"] and list(df["n_seeds"]) == [1, 1]
    assert df.set_index("method").loc["base", "x"] == 50.0 and df.set_index("method").loc["released", "Avg"] == 83.33
    assert df["x_std"].isna().all() and not df["x_lo"].isna().any()  # one evaluation each: interval, no std
    md = (tmp_path / "table1.md").read_text()
    assert "evaluate-only" in md.splitlines()[0] and "nothing trained" in md.splitlines()[0]
    assert "**" not in md and "Difference rows" not in md and "Released" in md
    assert r"\textbf" not in (tmp_path / "table1.tex").read_text()
    assert pd.read_csv(tmp_path / "table1.csv")["method"].tolist() == ["base", "released"]


def test_method_table_pairs_seeds_only_when_asked_and_the_seeds_match(tmp_path):
    from ibtpo.analysis.intervals import estimate_diff, estimate_paired
    from ibtpo.analysis.results import load_cells, method_table

    rng = np.random.default_rng(5)
    files = {}
    for m in ("a", "b"):
        files[m] = [_eval_file(tmp_path / f"{m}{s}.json", [[int(v) for v in rng.integers(0, 2, 2)] for _ in range(30)])
                    for s in range(3)]
    rows = {m: {"x": fs} for m, fs in files.items()}
    ca, cb = [load_cells(files["a"])], [load_cells(files["b"])]
    seeds = {"a": [0, 1, 2], "b": [0, 1, 2]}

    def diff_row(**kw):
        df = method_table(rows, ["x"], {}, diffs=[("a", "b")], **kw)
        return df[df["method"] == "a-b"].iloc[0]

    paired, indep = estimate_paired(ca, cb).scale(100), estimate_diff(ca, cb).scale(100)
    assert diff_row(seeds=seeds, pairing="seeds")["x_mde"] == pytest.approx(round(paired.mde, 2))
    assert diff_row(seeds=seeds)["x_mde"] == pytest.approx(round(indep.mde, 2))  # independent by default
    assert diff_row(seeds={"a": [0, 1, 2], "b": [0, 1, 3]}, pairing="seeds")["x_mde"] == pytest.approx(
        round(indep.mde, 2))
    assert paired.mde != pytest.approx(indep.mde)
