"""``evaluation.answer``: which part of a response is its answer, for training rewards and evaluation alike.

``boxed`` (the default): the content of the last ``\\boxed{...}``; a response without one is wrong and
math-verify is not asked. ``any``: math-verify's default extraction from the whole response (its last
expression). Expected grades are written by hand; the ``any`` column is only filled where the outcome
is math-verify's documented reading (tests/test_grader.py pins the rest of it).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ibtpo.config import ConfigError, load_config, schema
from ibtpo.grading import ANSWER_MODES, Grader, answer_text, close_shared, integer_fast_path, shared_grader

TRUNCATED = "2+3=5\n\n5*4="                          # cut off before the answer line (and mid-line)
NO_ANSWER_LINE = "2+3=5\n\n5*4=20"                   # all steps, cut off before "The answer is ..."
FULL = "2+3=5\n\n5*4=20\n\nThe answer is \\boxed{20}"

# (gold, response, grade under "boxed", grade under "any" or None where not asserted)
CASES = [
    ("12", "3*4=12", False, True),                                   # unboxed expression
    ("5", "7+3=10\n\n10-5=5", False, True),                          # unboxed last step
    ("20", TRUNCATED, False, None),
    ("20", NO_ANSWER_LINE, False, True),                             # math-verify reads the last step's 20
    ("20", FULL, True, True),
    ("20", FULL.replace("{20}", "{21}"), False, False),
    ("20", "2+3=5\n\nThe answer is \\boxed{2", False, None),       # cut off inside its box
    ("20", "\\boxed{20}\n\nso the answer is \\boxed{2", False, None),  # the last box is unbalanced
    ("5", "At first \\boxed{3}.\n\nNo, recheck: \\boxed{5}", True, None),  # the last box
    ("3", "At first \\boxed{3}.\n\nNo, recheck: \\boxed{5}", False, None),
    ("5", "\\boxed{3} then \\boxed{5}", True, False),                # "any": math-verify reads the set {3, 5}
    ("5", "\\boxed 5", False, True),                                 # no braced box; "any" reads the 5
    ("5", "The final answer is $\\boxed{5}$. I hope it is correct.", True, True),
    ("-3", "so x = $\\boxed{-3}$.", True, True),
    ("\\frac{1}{2}", "\\boxed{0.5}", True, True),                    # LaTeX golds grade as before
    ("\\frac{1}{2}", "\\boxed{\\frac12}", True, True),
    ("0.5", "So $\\boxed{\\frac{1}{2}}$.", True, True),
    ("\\frac{1}{3}", "\\boxed{0.5}", False, False),
    ("\\text{(C)}", "The answer is \\boxed{C}", True, True),
    ("x^2", "\\boxed{x \\cdot x}", True, True),
    ("5", "no boxed answer here, just words", False, False),
    ("5", "", False, False),
]


@pytest.fixture(scope="module")
def graders():
    gs = {(mode, fast): Grader(timeout_s=5.0, answer=mode, fast_integer_path=fast)
          for mode in ANSWER_MODES for fast in (True, False)}
    yield gs
    for g in gs.values():
        g.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "math-verify-only"])
@pytest.mark.parametrize("mode", ANSWER_MODES)
def test_hand_computed_grades_per_mode(graders, mode, fast):
    col = 2 if mode == "boxed" else 3
    cases = [(c[0], c[1], c[col]) for c in CASES if c[col] is not None]
    got = graders[(mode, fast)].grade_many([(g, p) for g, p, _ in cases])
    assert [(g, p, ok) for (g, p, _), ok in zip(cases, got)] == cases


def test_boxed_decides_unboxed_responses_without_math_verify():
    with Grader(timeout_s=5.0) as g:
        assert g.answer == "boxed"
        assert g.grade_many([("12", "3*4=12"), ("20", TRUNCATED), ("20", NO_ANSWER_LINE), ("5", "\\boxed{5")]) \
            == [False] * 4
        assert g.worker_starts == 0 and g._supervisor.worker is None and g.no_box == 4 and g.stats()["no_box"] == 4
        # the last box is the answer, so several boxes still take the integer fast path (with "any" they must
        # go to math-verify, which reads boxes on one line as a set)
        assert integer_fast_path("5", "\\boxed{3} then \\boxed{5}") is None
        assert g.grade("5", "\\boxed{3} then \\boxed{5}") is True
        assert g.fast_path_hits == 1 and g.worker_starts == 0 and g.calls == 5


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="answer must be one of"):
        Grader(answer="maybe")


def test_process_wide_graders_are_keyed_by_timeout_and_mode():
    try:
        assert shared_grader(2.0).answer == "boxed" and shared_grader(2.0) is shared_grader(2.0, "boxed")
        assert shared_grader(2.0, "any") is shared_grader(2.0, "any") is not shared_grader(2.0, "boxed")
        assert shared_grader(2.0, "any").answer == "any" and shared_grader(3.0, "any").timeout_s == 3.0
    finally:
        close_shared()


# ------------------------------------------------------------------------------------------ config
def test_config_default_is_boxed_and_a_bad_mode_names_the_key():
    prop = schema()["properties"]["evaluation"]["properties"]["answer"]
    assert prop["default"] == "boxed" and prop["enum"] == list(ANSWER_MODES) and prop["description"]
    for preset in ("tiny", "smoke"):
        assert load_config(preset)["evaluation"]["answer"] == "boxed"
    assert load_config("smoke", overrides={"evaluation": {"answer": "any"}})["evaluation"]["answer"] == "any"
    with pytest.raises(ConfigError, match=r"evaluation\.answer: 'maybe' is not one of \['boxed', 'any'\]"):
        load_config("smoke", overrides={"evaluation": {"answer": "maybe"}})


def test_grader_defaults_match_the_schema():
    """Callers without a config (bench/, ``shared_grader()``) grade as a default config does."""
    ev = schema()["properties"]["evaluation"]["properties"]
    g = Grader()
    assert (g.timeout_s, g.answer) == (ev["grader_timeout_s"]["default"], ev["answer"]["default"])
    g.close()


def test_grader_from_a_config():
    for mode in ANSWER_MODES:
        cfg = load_config("smoke", overrides={"evaluation": {"answer": mode, "grader_timeout_s": 3.5}})
        with Grader.from_spec(cfg["evaluation"]) as g:
            assert (g.answer, g.timeout_s) == (mode, 3.5)


def test_report_sentence():
    assert answer_text("boxed") == ("Answers: the last `\\boxed{}` of a response (a response without one is wrong) "
                                    "(`evaluation.answer: boxed`).")
    assert "(`evaluation.answer: any`)" in answer_text("any")


# ------------------------------------------------------------------------------------- eval spec
def _bench(tmp_path: Path) -> str:
    p = tmp_path / "b.jsonl"
    p.write_text(json.dumps({"id": "a", "problem": "3*4", "answer": "12"}) + "\n")
    return str(p)


@pytest.mark.parametrize("mode", [None, *ANSWER_MODES])
def test_the_task_directory_carries_the_mode_and_its_hooks_grade_by_it(tmp_path, mode):
    from ibtpo.eval.tasks import evaluation_spec, write_tasks

    spec = {"prompt_template": "{problem}\n", "k": 2, **({"answer": mode} if mode else {})}
    names = write_tasks({"toy": {"path": _bench(tmp_path)}}, spec, tmp_path / "tasks")
    tdir = tmp_path / "tasks" / names["toy"]
    assert json.loads((tdir / "eval_spec.json").read_text())["answer"] == (mode or "boxed")
    mod_spec = importlib.util.spec_from_file_location(f"ibtpo_answer_mode_utils_{mode}", tdir / "utils.py")
    utils = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(utils)
    try:
        out = utils.process_results({"id": "a", "problem": "3*4", "answer": "12"},
                                    [["3*4=12", "3*4=12\n\nThe answer is \\boxed{12}"]])
        assert out["correct"] == ([1, 1] if mode == "any" else [0, 1])
    finally:
        close_shared()
    # a config's eval spec carries it too
    cfg = load_config("smoke", overrides={"evaluation": {"answer": "any"}})
    assert evaluation_spec(cfg)["answer"] == "any"


def test_a_bad_mode_in_an_eval_spec_names_the_key(tmp_path):
    from ibtpo.eval.tasks import resolve_spec

    with pytest.raises(ValueError, match=r"evaluation\.answer: 'maybe' is not one of"):
        resolve_spec({"prompt_template": "{problem}", "k": 2, "answer": "maybe"})


# ----------------------------------------------------------------------------------- train job
def test_the_train_job_rewards_with_the_configured_mode(tmp_path, tok, monkeypatch):
    """The train job's grader (the one its Trainer rewards with) is built from ``evaluation``; its
    provenance records the mode."""
    from ibtpo.data.problems import write_jsonl
    from ibtpo.jobs import train
    from ibtpo.model.tiny import build_tiny_llama

    base = tmp_path / "base"
    build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, seed=0).save_pretrained(base)
    tok.save_pretrained(base)
    data = tmp_path / "train.jsonl"
    write_jsonl(data, [{"id": "q0", "problem": "3*4", "answer": "12"}])
    seen = {}

    class Recorder:  # stands in for the Trainer: grades two responses with the grader it was given
        def __init__(self, *args, **kwargs):
            self.grader = args[7]

        def fit(self):
            seen[self.grader.answer] = self.grader.grade_many([("12", "3*4=12"), ("12", "\\boxed{12}")])

    monkeypatch.setattr(train, "Trainer", Recorder)
    for mode in ANSWER_MODES:
        cfg = load_config("smoke", overrides={"evaluation": {"answer": mode}})
        run_dir = tmp_path / f"run_{mode}"
        train.run(cfg, "grpo", 0, str(base), data, run_dir, log=lambda *a: None)
        assert json.loads((run_dir / "provenance.json").read_text())["answer"] == mode
        assert json.loads((run_dir / "grader.json").read_text())["calls"] == 2
    assert seen == {"boxed": [False, True], "any": [True, True]}


# ---------------------------------------------------------------------- benchmark reference solutions
def test_reference_solutions_under_boxed():
    """The benchmarks' worked solutions (tests/test_gold.py grades them under ``any``), under ``boxed``: the same
    agreement except two AIME 2024 solutions whose last box is not the answer as written (read by hand)."""
    import os

    from ibtpo.data.benchmarks import load_registry_rows

    data = Path(os.environ.get("IBTPO_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    expected_wrong = {
        ("aime24", "60"),  # the solution boxes nothing: it ends "$180 + 24 = 204$. -sepehr2010"
        ("aime24", "70"),  # its last box is \boxed{104.} (trailing period), which math-verify cannot read
        ("aime24", "75"),  # \boxed{\textbf{(073)}}: wrong under "any" too (tests/test_gold.py SOLUTION_ALLOWED)
    }
    wrong = set()
    with Grader(timeout_s=10.0) as g:
        for b in ("math500", "aime24"):
            rows, _ = load_registry_rows({"source": "registry", "name": b}, data)
            ok = g.grade_many([(r["answer"], r["solution"]) for r in rows])
            wrong |= {(b, r["id"]) for r, k in zip(rows, ok) if not k}
        assert g.timeouts == 0
    assert wrong == expected_wrong
