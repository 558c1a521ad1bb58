"""Evaluation: pass@k / avg@k by hand, task hooks on fixed strings, the `ibtpo` lm-eval model, and
end-to-end `evaluate_checkpoint` runs through lm-eval on a tiny random Llama (model="ibtpo" and "hf")."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from ibtpo.eval.metrics import aggregate, avg_at_k, pass_at_k, problem_metrics  # noqa: E402
from ibtpo.eval.tasks import normalize_benchmark, resolve_spec, write_tasks  # noqa: E402

SPEC = dict(prompt_template="Problem: {problem}\nSolution:", temperature=1.0, top_p=0.95, top_k=0,
            max_new_tokens=24, k=2, pass_at=[1, 2], batch_size=4, grader_timeout_s=5.0)


# ----------------------------------------------------------------------------- metrics
def test_pass_at_k_hand_computed():
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)          # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)         # pass@1 = c/n
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)          # 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert pass_at_k(10, 3, 4) == pytest.approx(1 - 35 / 210)  # 1 - C(7,4)/C(10,4)
    for k in range(1, 6):
        assert pass_at_k(5, 0, k) == 0.0                      # no correct sample
        assert pass_at_k(5, 5, k) == 1.0                      # all correct
    assert pass_at_k(4, 3, 2) == 1.0                          # n - c < k: every pair has a correct one
    for n in range(1, 9):                                     # agrees with the binomial form
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_avg_and_aggregate_hand_computed():
    assert avg_at_k([1, 0, 0, 1]) == 0.5
    assert problem_metrics([1, 0, 0, 0], [1, 2, 4]) == pytest.approx({"avg@k": 0.25, "pass@1": 0.25,
                                                                      "pass@2": 0.5, "pass@4": 1.0})
    agg = aggregate([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], [1, 2, 4])
    assert agg == pytest.approx({"avg@k": 1.25 / 3, "pass@1": 1.25 / 3, "pass@2": 1.5 / 3, "pass@4": 2 / 3})
    with pytest.raises(ValueError):
        aggregate([[1, 0], [1]], [1])                         # unequal k
    with pytest.raises(ValueError):
        resolve_spec({**SPEC, "pass_at": [1, 4]})             # pass@4 needs k >= 4


# ----------------------------------------------------------------------------- data and task hooks
def _write_bench(path, n=6, **extra):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"p{i}", "problem": f"{i} + {i + 1}", "answer": str(2 * i + 1), **extra}) + "\n")
    return str(path)


def test_normalize_benchmark_field_names_and_float_answers(tmp_path):
    p = tmp_path / "b.jsonl"
    p.write_text(json.dumps({"question": "q0", "ans": 27.0}) + "\n"
                 + json.dumps({"question": "q1", "ans": "1/2"}) + "\n")
    rows = normalize_benchmark({"path": str(p), "problem_field": "question", "answer_field": "ans"})
    assert rows == [{"id": "0", "problem": "q0", "answer": "27"}, {"id": "1", "problem": "q1", "answer": "1/2"}]
    assert len(normalize_benchmark({"path": str(p), "problem_field": "question", "answer_field": "ans",
                                    "limit": 1})) == 1


def test_normalize_benchmark_takes_the_answer_rules_and_nested_fields_of_make_data(tmp_path):
    """The standalone reader (``python -m ibtpo.eval.run --benchmarks``) reads a GSM8K-shaped and a MATH-shaped
    row as make_data does: the text after the last ``####`` (thousands separator dropped), the last
    ``\\boxed{}``, a dotted id; a row the rule finds nothing in is an error naming the file and row."""
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text(json.dumps({"question": "How many?", "answer": "48 + 24 = 72\n#### 1,072"}) + "\n")
    rows = normalize_benchmark({"path": str(gsm), "problem_field": "question",
                                "answer_field": {"field": "answer", "after": "####"}})
    assert rows == [{"id": "0", "problem": "How many?", "answer": "1072"}]
    math_ = tmp_path / "math.jsonl"
    math_.write_text(json.dumps({"meta": {"uid": "algebra/7"}, "problem": "Half of 1?",
                                 "solution": "So $\\boxed{2}$, no: \\boxed{\\frac{1}{2}}."}) + "\n")
    rows = normalize_benchmark({"path": str(math_), "id_field": "meta.uid",
                                "answer_field": {"field": "solution", "boxed": "last"}})
    assert rows == [{"id": "algebra/7", "problem": "Half of 1?", "answer": "\\frac{1}{2}"}]
    gsm.write_text(gsm.read_text() + json.dumps({"question": "And?", "answer": "no marker here"}) + "\n")
    with pytest.raises(ValueError, match=r"gsm.jsonl:2: .*####"):
        normalize_benchmark({"path": str(gsm), "problem_field": "question",
                             "answer_field": {"field": "answer", "after": "####"}})


def test_task_hooks_grade_fixed_strings(tmp_path):
    bench = _write_bench(tmp_path / "b.jsonl", n=2)
    names = write_tasks({"toy": {"path": bench}}, {**SPEC, "k": 2}, tmp_path / "tasks")
    tdir = tmp_path / "tasks" / names["toy"]
    spec = importlib.util.spec_from_file_location("ibtpo_test_task_utils", tdir / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    try:
        assert utils.doc_to_text({"problem": "3 + 4"}) == "Problem: 3 + 4\nSolution:"
        docs = utils.load_dataset()["test"]
        assert len(docs) == 2 and docs[1]["answer"] == "3"
        doc = {"id": "a", "problem": "3 + 4", "answer": "7"}
        out = utils.process_results(doc, [["3 + 4 = 7\n\nThe answer is \\boxed{7}", "The answer is \\boxed{8}"]])
        assert out["correct"] == [1, 0] and out["grader_timeouts"] == 0
        assert out["avg@k"] == 0.5 and out["pass@1"] == 0.5 and out["pass@2"] == 1.0
        # a non-integer gold goes through math-verify (gold first, full completion second)
        out = utils.process_results({"id": "b", "problem": "x", "answer": "\\frac{1}{2}"},
                                    [["so \\boxed{\\frac{1}{2}}", "so \\boxed{3}"]])
        assert out["correct"] == [1, 0]
        with pytest.raises(RuntimeError, match="k=2"):
            utils.process_results(doc, [["\\boxed{7}"]])      # one response where k=2 are due
    finally:
        from ibtpo.grading import close_shared

        close_shared()


# ----------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from ibtpo.model.tiny import build_tiny_llama
    from ibtpo.model.tokenizer import build_char_tokenizer

    d = tmp_path_factory.mktemp("tiny_ckpt")
    tok = build_char_tokenizer()
    model = build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, seed=0)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def test_ibtpo_lm_groups_repeats_into_distinct_samples(tiny_ckpt):
    from ibtpo.eval.lm_eval_model import IBTPOLM, truncate_at_stop

    lm = IBTPOLM(pretrained=tiny_ckpt, device="cpu", batch_size=8, seed=1)
    gk = {"until": ["a"], "do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_gen_toks": 20}
    r1, r2 = (SimpleNamespace(args=("Problem: 1 + 2\nSolution:", gk)),
              SimpleNamespace(args=("Problem: 7\nSolution:", gk)))
    reqs = [r1] * 3 + [r2] * 3                                # how lm-eval passes `repeats: 3`
    out = lm.generate_until(reqs)
    assert len(out) == 6 and all(isinstance(o, str) and "a" not in o for o in out)
    assert lm.backend.stats.calls == 1                        # one call, one prefill per distinct prompt
    assert lm.backend.stats.prefix_tokens_encoded == len(r1.args[0]) + len(r2.args[0])
    assert len(set(out[:3])) > 1 and len(set(out[3:])) > 1   # k distinct samples, not one copied
    assert truncate_at_stop("abc\n\nde", ["\n\n", "d"]) == "abc"
    with pytest.raises(ValueError, match="do_sample"):
        lm.generate_until([SimpleNamespace(args=("x", {**gk, "do_sample": False}))])
    with pytest.raises(ValueError, match="unsupported"):
        lm.generate_until([SimpleNamespace(args=("x", {**gk, "min_p": 0.1}))])
    with pytest.raises(NotImplementedError):
        lm.loglikelihood([])


# ----------------------------------------------------------------------------- end to end
def _check_result_file(out_dir, name, k, n):
    res = json.loads((out_dir / f"{name}.json").read_text())
    assert res["benchmark"] == name and res["k"] == k and res["n_problems"] == n
    samples = res["samples"]
    assert len(samples) == n and sum(len(s["responses"]) for s in samples) == n * k
    assert all(len(s["correct"]) == k and set(s["correct"]) <= {0, 1} for s in samples)
    assert [s["id"] for s in samples] == [f"p{i}" for i in range(n)]
    avg = sum(sum(s["correct"]) for s in samples) / (n * k)
    assert res["metrics"]["avg@k"] == pytest.approx(avg) and res["metrics"][f"avg@{k}"] == pytest.approx(avg)
    p2 = sum(pass_at_k(k, sum(s["correct"]), 2) for s in samples) / n
    assert res["metrics"]["pass@2"] == pytest.approx(p2)
    assert isinstance(res["grader_timeouts"], int) and res["spec"]["k"] == k
    assert res["spec"]["answer"] == "boxed"  # evaluation.answer (schema default), recorded with the result
    return res


def test_evaluate_checkpoint_ibtpo_end_to_end(tiny_ckpt, tmp_path):
    from ibtpo.eval.run import evaluate_checkpoint

    benches = {"toy": {"path": _write_bench(tmp_path / "toy.jsonl")},
               "toy_b": {"path": _write_bench(tmp_path / "toy_b.jsonl", n=3), "limit": 2}}
    out = evaluate_checkpoint(tiny_ckpt, benches, SPEC, str(tmp_path / "out"), device="cpu", seed=3)
    res = _check_result_file(tmp_path / "out", "toy", k=2, n=6)
    _check_result_file(tmp_path / "out", "toy_b", k=2, n=2)
    assert out["toy"]["metrics"] == res["metrics"]
    assert res["generation"]["backend_calls"] == 2            # 8 prompts, batch_size 4, both benchmarks at once
    # same seed, same samples
    again = evaluate_checkpoint(tiny_ckpt, benches, SPEC, str(tmp_path / "again"), device="cpu", seed=3)
    assert again["toy"]["samples"] == res["samples"]


def test_evaluate_checkpoint_hf_path(tiny_ckpt, tmp_path):
    from ibtpo.eval.run import evaluate_checkpoint

    benches = {"toy": {"path": _write_bench(tmp_path / "toy.jsonl")}}
    evaluate_checkpoint(tiny_ckpt, benches, SPEC, str(tmp_path / "out"), device="cpu", seed=0, model="hf")
    res = _check_result_file(tmp_path / "out", "toy", k=2, n=6)
    assert res["model"] == "hf" and res["generation"] is None


def test_vllm_missing_is_a_clear_error(tiny_ckpt):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from ibtpo.eval.run import model_arguments

    with pytest.raises(RuntimeError, match="vllm"):
        model_arguments("vllm", tiny_ckpt, resolve_spec(SPEC), 0)
