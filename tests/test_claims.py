"""The claims report: equal-token reading of evaluation curves, both comparisons per claim, MDE,
harness checks and the A/A line. Expected values are computed here by hand."""

import json

import numpy as np
import pytest

from ibtpo.analysis.verdicts import INCONCLUSIVE, NOT_MEASURED, SUPPORTED, judge
from ibtpo.analysis.equal_tokens import at_budget, budget_cells, checkpoint_tokens
from ibtpo.analysis.intervals import estimate_diff


def test_at_budget_interpolates_between_the_bracketing_checkpoints():
    base, s1, s2 = np.array([0.0, 0.2]), np.array([0.4, 0.2]), np.array([1.0, 0.6])
    curve = [(0.0, base), (100.0, s1), (300.0, s2)]
    cells, how = at_budget(curve, 250.0)
    # w = (250 - 100) / (300 - 100) = 0.75 -> 0.25 * s1 + 0.75 * s2
    assert how == {"lo": 1, "hi": 2, "w": 0.75, "capped": False}
    assert cells == pytest.approx([0.25 * 0.4 + 0.75 * 1.0, 0.25 * 0.2 + 0.75 * 0.6])
    cells, how = at_budget(curve, 50.0)  # between the base (0 tokens) and the first checkpoint
    assert how["lo"] == 0 and cells == pytest.approx(0.5 * base + 0.5 * s1)
    cells, how = at_budget(curve, 400.0)  # beyond the run: its last checkpoint, flagged
    assert how["capped"] and cells == pytest.approx(s2)
    with pytest.raises(ValueError, match="not increasing"):
        at_budget([(0.0, base), (300.0, s1), (100.0, s2)], 200.0)
    stacked, _ = budget_cells([curve, curve], 300.0)
    assert stacked.shape == (2, 2) and stacked[1] == pytest.approx(s2)


def test_checkpoint_tokens_reads_metrics(tmp_path):
    m = tmp_path / "metrics.jsonl"
    m.write_text("".join(json.dumps({"step": s, "cum_gen_tokens": 10 * s}) + "\n" for s in range(1, 5)))
    assert checkpoint_tokens(m, [2, 4]) == {0: 0.0, 2: 20.0, 4: 40.0}
    with pytest.raises(ValueError, match=r"step\(s\) \[6\]"):
        checkpoint_tokens(m, [2, 6])


def test_judge_refuses_a_verdict_without_a_seed_term():
    one_seed = np.array([[1.0, 1.0, 0.5, 1.0, 0.75, 1.0]])
    zeros = np.zeros((1, 6))
    est = estimate_diff([one_seed], [zeros], seeded_a=True, seeded_b=False)
    assert est.lo > 0 and not est.seed_term_ok
    assert judge(est, "greater") == INCONCLUSIVE
    est = estimate_diff([one_seed], [zeros], seeded_a=False, seeded_b=False)  # e.g. two fixed checkpoints
    assert judge(est, "greater") == SUPPORTED
    assert judge(None) == NOT_MEASURED


# --------------------------------------------------------------------------- the report end to end
def _eval(path, cells, k=4):
    """An evaluation file whose problem i has round(cells[i] * k) correct samples of k."""
    samples = [{"id": f"p{i:03d}", "answer": "1", "responses": [""] * k,
                "correct": [1] * int(round(c * k)) + [0] * (k - int(round(c * k)))} for i, c in enumerate(cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"k": k, "metrics": {f"avg@{k}": float(np.mean(cells))}, "samples": samples}))
    return str(path)


def _fixture(tmp_path, n=40):
    """Base at 25%; GRPO (chains) +25 points at step 10; IB-TPO (tree) +25 at step 5 and +50 at step 10 but
    with twice GRPO's tokens per step, so at GRPO's final budget it is read at step 5."""
    rng = np.random.default_rng(0)
    base_cells = np.tile([0.0, 0.25, 0.5, 0.25], n // 4)
    bench = ["b1"]
    base = {"b1": [_eval(tmp_path / "base.json", base_cells)]}
    aa = {"b1": [_eval(tmp_path / "base_aa.json", np.roll(base_cells, 4))]}  # same marginal, other samples
    rows, curves = {}, {}
    for m, per_step, gain in (("grpo", 100, {5: 0.0, 10: 0.25}), ("ibtpo", 200, {5: 0.25, 10: 0.5})):
        curves[m], rows[m] = {}, {"b1": []}
        for s in range(3):
            metrics = tmp_path / m / f"seed{s}" / "metrics.jsonl"
            metrics.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_text("".join(json.dumps({"step": st, "cum_gen_tokens": per_step * st}) + "\n"
                                       for st in range(1, 11)))
            steps = {}
            for st, g in gain.items():
                cells = np.clip(base_cells + g + rng.choice([-0.25, 0.0, 0.25], size=n, p=[0.2, 0.6, 0.2]), 0, 1)
                steps[st] = {"b1": _eval(tmp_path / m / f"seed{s}" / f"step{st}.json", cells)}
            curves[m][s] = {"metrics": str(metrics), "base": {"b1": base["b1"][0]}, "steps": steps}
            rows[m]["b1"].append(steps[10]["b1"])
    cfg = {"preset": "t", "evaluation": {"benchmarks": bench, "k": 4, "answer": "boxed"},
           "report": {"confidence": 0.95, "bootstrap": 200},
           "method_defs": {"grpo": {"label": "GRPO"}, "ibtpo": {"label": "IB-TPO"}}}
    return cfg, {"rows": rows, "base": base, "base_aa": aa, "curves": curves, "probes": {}}


def test_claims_compare_at_equal_steps_and_equal_tokens(tmp_path):
    from ibtpo.analysis.results import load_cells
    from ibtpo.jobs import claims

    cfg, manifest = _fixture(tmp_path)
    out = claims.build(cfg, manifest)
    by = {c["id"]: c for c in out}
    c = by["ibtpo_beats_grpo"]
    # equal steps: IB-TPO step 10 - GRPO step 10, ~ +25 points
    ga = [load_cells(manifest["rows"]["ibtpo"]["b1"])]
    gb = [load_cells(manifest["rows"]["grpo"]["b1"])]
    ref = estimate_diff(ga, gb).scale(100)
    assert c["equal_steps"]["mean"] == pytest.approx(ref.mean) and c["equal_steps"]["mde"] == pytest.approx(ref.mde)
    # equal tokens: GRPO's final budget is 1000 tokens = IB-TPO's step 5 exactly (w = 0 between steps 5 and 10)
    at5 = [np.stack([load_cells([manifest["curves"]["ibtpo"][s]["steps"][5]["b1"]])[0] for s in range(3)])]
    ref_t = estimate_diff(at5, gb).scale(100)
    assert c["equal_tokens"]["mean"] == pytest.approx(ref_t.mean)
    assert abs(c["equal_tokens"]["mean"]) < abs(c["equal_steps"]["mean"])  # the step advantage was compute
    assert "1,000 tokens" in c["note"] and "5–10 (w 0.0) for every seed" in c["note"]
    assert c["verdict"] == claims.combine([c["equal_steps"]["verdict"], c["equal_tokens"]["verdict"]])
    # harness checks: GRPO - base per benchmark (one benchmark here), and the A/A line
    assert by["check_grpo_vs_base_b1"]["section"] == "check"
    aa = by["check_aa_base"]
    assert aa["verdict"] == INCONCLUSIVE and aa["estimate"]["mean"] == pytest.approx(0.0)
    # the markdown carries both comparisons and the MDE
    md = claims.to_markdown(cfg, out)
    assert "| equal steps [CI] (MDE) | equal tokens [CI] (MDE) |" in md and "## Harness checks" in md
    assert f"(MDE {ref.mde:.1f})" in md and "t-intervals" in md
    assert "Answers: the last `\\boxed{}` of a response" in md and "(`evaluation.answer: boxed`)" in md
    assert by["grpo_cliphigher_not_better"]["verdict"] == NOT_MEASURED


def test_paired_seeds_and_the_smaller_than_reported_verdict(tmp_path):
    """report.pairing: seeds compares run s of IB-TPO with run s of GRPO (estimate_paired on their cells);
    an IB-TPO identical to GRPO seed by seed then has the interval [0, 0], which rules the paper's +2.9 out:
    'smaller than reported' (its sign stays open). Independent seeds give the Welch interval instead."""
    from ibtpo.analysis.verdicts import SMALLER
    from ibtpo.analysis.intervals import estimate_paired
    from ibtpo.analysis.results import load_cells
    from ibtpo.jobs import claims

    cfg, manifest = _fixture(tmp_path)
    manifest["curves"]["ibtpo"] = manifest["curves"]["grpo"]  # the same runs: same cells, same tokens
    manifest["rows"]["ibtpo"] = manifest["rows"]["grpo"]
    manifest["seeds"] = {"grpo": [0, 1, 2], "ibtpo": [0, 1, 2]}
    cfg["report"]["pairing"] = "seeds"
    c = {x["id"]: x for x in claims.build(cfg, manifest)}["ibtpo_beats_grpo"]
    g = [load_cells(manifest["rows"]["grpo"]["b1"])]
    ref = estimate_paired(g, g).scale(100)
    assert (c["equal_steps"]["lo"], c["equal_steps"]["hi"]) == (ref.lo, ref.hi) == (0.0, 0.0)
    assert c["verdict"] == SMALLER and "paired (3 seeds)" in c["note"]
    md = claims.to_markdown(cfg, [c], manifest["seeds"])
    assert "*smaller than reported*" in md and "compared seed by seed" in md and "grpo 3, ibtpo 3" in md
    # independent seeds: the two seed terms stay (the same runs on both sides count twice)
    cfg["report"]["pairing"] = "independent"
    c = {x["id"]: x for x in claims.build(cfg, manifest)}["ibtpo_beats_grpo"]
    ind = estimate_diff(g, g).scale(100)
    assert c["equal_steps"]["hi"] == pytest.approx(ind.hi) and ind.hi > 0
    # seeds that differ between the methods are never paired
    manifest["seeds"]["ibtpo"] = [0, 1, 5]
    cfg["report"]["pairing"] = "seeds"
    assert not claims.Evidence(cfg, manifest).paired("ibtpo", "grpo")
