"""lm-eval's own tasks (GPQA-Diamond, IFEval) under the project's evaluation spec
(``ibtpo/eval/builtin_tasks.py``): the builtin YAML is found, one response is scored as the task
scores it, all k responses are scored, and a whole evaluation runs through lm-eval on local rows
(no hub) from the ``make_data`` job to the result JSON."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from ibtpo.eval import builtin_tasks
from ibtpo.eval.metrics import pass_at_k

SPEC = {"prompt_template": "{problem}\n", "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "k": 3,
        "pass_at": [1, 3], "batch_size": 4}

# GPQA-format rows (the fields of Idavidrein/gpqa), written here: the real set is gated.
GPQA_ROWS = [
    {"Question": "What is 2 + 2?", "Correct Answer": "four", "Incorrect Answer 1": "three",
     "Incorrect Answer 2": "five", "Incorrect Answer 3": "seven"},
    {"Question": "Which gas do plants absorb?", "Correct Answer": "carbon dioxide", "Incorrect Answer 1": "helium",
     "Incorrect Answer 2": "neon", "Incorrect Answer 3": "argon"},
    {"Question": "Largest planet?", "Correct Answer": "Jupiter", "Incorrect Answer 1": "Mars",
     "Incorrect Answer 2": "Venus", "Incorrect Answer 3": "Mercury"},
]


def _load_utils(task_dir: Path):
    spec = importlib.util.spec_from_file_location(f"utils_{task_dir.name}", task_dir / "utils.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_builtin_yaml_is_found_and_unknown_tasks_are_named():
    for task in ("gpqa_diamond_cot_zeroshot", "ifeval"):
        p = builtin_tasks.find_builtin_yaml(task)
        assert p.is_file() and f"task: {task}" in p.read_text()
    with pytest.raises(ValueError, match="'no_such_task' is not a builtin task"):
        builtin_tasks.find_builtin_yaml("no_such_task")


def test_loglikelihood_tasks_are_refused(tmp_path):
    from ibtpo.eval.tasks import write_tasks

    bench = {"g": {"path": str(_write_jsonl(tmp_path / "g.jsonl", GPQA_ROWS)), "lm_eval_task": "gpqa_diamond_zeroshot"}}
    with pytest.raises(ValueError, match="only generate_until tasks"):
        write_tasks(bench, SPEC, tmp_path / "tasks")


def test_gpqa_responses_are_scored_as_its_flexible_extract_filter(tmp_path):
    from ibtpo.eval.tasks import write_tasks

    bench = {"gpqa": {"path": str(_write_jsonl(tmp_path / "g.jsonl", GPQA_ROWS)),
                      "lm_eval_task": "gpqa_diamond_cot_zeroshot"}}
    names = write_tasks(bench, SPEC, tmp_path / "tasks")
    d = tmp_path / "tasks" / names["gpqa"]
    info = json.loads((d / "builtin.json").read_text())
    assert info["scorer"] == {"kind": "filter", "filter": "flexible-extract", "metric": "exact_match"}
    assert info["splits"] == ["train"]  # GPQA's only split (validation_split: train)
    text = (d / f"{names['gpqa']}.yaml").read_text()
    assert "include:" in text and "gpqa_diamond_cot_zeroshot.yaml" in text and "repeats: 3" in text
    gen = json.loads(re.search(r"generation_kwargs: (.*)", text).group(1))
    assert gen == {"until": ["</s>"], "do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                   "max_gen_toks": 12}
    utils = _load_utils(d)
    # the processed document (GPQA's process_docs shuffles the choices; here: correct is (C))
    doc = {"choice1": "three", "choice2": "five", "choice3": "four", "choice4": "seven",
           "choices": ["three", "five", "four", "seven"], "answer": "(C)", "id": "0"}
    responses = ["2 + 2 = 4, so the answer is (C).",           # letter: right
                 "I would say (A), no wait, (B).",               # last letter (B): wrong
                 "It must be Four."]                             # the text of choice (C), any case: right
    out = utils.process_results(doc, [responses])
    assert out["correct"] == [1, 0, 1]
    assert out["avg@k"] == pytest.approx(2 / 3) and out["pass@3"] == 1.0
    assert out["pass@1"] == pytest.approx(pass_at_k(3, 2, 1))
    # no answer; a wrong letter; a lower-case letter (lm-eval's letter regex is case-sensitive)
    assert utils.process_results(doc, [["nothing here", "(D)", "so (c)"]])["correct"] == [0, 0, 0]
    with pytest.raises(RuntimeError, match="expected k=3"):
        utils.process_results(doc, [["(C)"]])
    ds = utils.load_dataset()
    assert list(ds) == ["train"] and ds["train"].num_rows == 3 and ds["train"][0]["Question"] == "What is 2 + 2?"


def test_process_results_tasks_score_each_response_with_the_tasks_hook(tmp_path, monkeypatch):
    """A builtin task scored by its own ``process_results`` (as IFEval is): a stand-in task, because
    importing lm-eval's IFEval tries to download nltk data."""
    fake = tmp_path / "fake_builtin"
    fake.mkdir()
    (fake / "utils.py").write_text("def process_results(doc, results):\n"
                                   "    r = results[0]\n"
                                   "    return {'follows': r.strip().endswith(doc['end']), 'other': 0.0}\n")
    (fake / "fake_task.yaml").write_text("task: fake_task\noutput_type: generate_until\ndataset_path: x\n"
                                         "test_split: train\ndoc_to_text: '{{prompt}}'\ndoc_to_target: 0\n"
                                         "process_results: !function utils.process_results\n"
                                         "generation_kwargs: {until: [], do_sample: false}\n"
                                         "metric_list:\n  - metric: follows\n    aggregation: mean\n")
    monkeypatch.setattr(builtin_tasks, "find_builtin_yaml", lambda task: fake / "fake_task.yaml")
    from ibtpo.eval.tasks import write_tasks

    rows = [{"key": 7, "prompt": "Say hi and end with !", "end": "!"}]
    names = write_tasks({"fk": {"path": str(_write_jsonl(tmp_path / "f.jsonl", rows)), "lm_eval_task": "fake_task"}},
                        SPEC, tmp_path / "tasks")
    d = tmp_path / "tasks" / names["fk"]
    assert json.loads((d / "builtin.json").read_text())["scorer"] == {"kind": "process_results", "metric": "follows"}
    utils = _load_utils(d)
    out = utils.process_results({**rows[0], "id": "0"}, [["hi!", "hi", "hello !"]])
    assert out["correct"] == [1, 0, 1] and out["avg@k"] == pytest.approx(2 / 3)


def _punkt_available() -> bool:
    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab")
        return True
    except LookupError:
        return False


def test_ifeval_scorer_uses_lm_evals_strict_prompt_accuracy(tmp_path):
    if not _punkt_available():
        pytest.skip("lm-eval's IFEval needs nltk's punkt_tab data, which it downloads on import; not available "
                    "offline here (the mechanism is covered by the stand-in test above)")
    from ibtpo.eval.tasks import write_tasks

    rows = [{"key": 1, "prompt": "Write in lowercase, no commas.", "instruction_id_list":
             ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]}]
    names = write_tasks({"ifeval": {"path": str(_write_jsonl(tmp_path / "i.jsonl", rows)), "lm_eval_task": "ifeval"}},
                        SPEC, tmp_path / "tasks")
    utils = _load_utils(tmp_path / "tasks" / names["ifeval"])
    out = utils.process_results({**rows[0], "id": "1"}, [["all lower case here", "Not lower", "lower, but a comma"]])
    assert out["correct"] == [1, 0, 0]


def _flexible_extract_no_choice_text(resp: str) -> str:
    """lm-eval's flexible-extract for a response that contains no choice text: the last "(X)",
    else the last ": X"."""
    letters = re.findall(r"\([A-Z]\)", resp)
    if letters:
        return letters[-1]
    m = re.findall(r":\s*([A-D])", resp)
    return f"({m[-1]})" if m else "[invalid]"


@pytest.mark.slow
def test_gpqa_evaluation_end_to_end_from_make_data(tmp_path):
    """make_data materialises a local GPQA-format file for the registry source ``gpqa_diamond``
    (``path:`` instead of the hub) and writes the sidecar naming lm-eval's task; the evaluation then
    finds the task from the sidecar alone and runs it through lm-eval with k samples per question."""
    from ibtpo.eval.run import evaluate_checkpoint
    from ibtpo.jobs import make_data
    from ibtpo.model.tiny import build_tiny_llama
    from ibtpo.model.tokenizer import build_char_tokenizer

    src = _write_jsonl(tmp_path / "gpqa_local.jsonl", GPQA_ROWS)
    cfg = {"data_dir": str(tmp_path), "data": {
        "train": {"source": "arithmetic", "n": 4, "seed": 1, "spec": {"n_ops": [2]}},
        "benchmarks": {"gpqa": {"source": "registry", "name": "gpqa_diamond", "path": src.name}}}}
    written = make_data.run(cfg, tmp_path / "data")
    meta = json.loads((tmp_path / "data" / "bench" / "gpqa.meta.json").read_text())
    assert meta["lm_eval_task"] == "gpqa_diamond_cot_zeroshot" and meta["rows"] == 3
    rows = [json.loads(x) for x in written["gpqa"].read_text().splitlines()]
    assert ([r["Question"] for r in rows] == [r["Question"] for r in GPQA_ROWS]
            and [r["id"] for r in rows] == ["gpqa-0000", "gpqa-0001", "gpqa-0002"])

    ckpt = tmp_path / "ckpt"
    tok = build_char_tokenizer()
    build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, seed=0).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    res = evaluate_checkpoint(str(ckpt), {"gpqa": {"path": str(written["gpqa"])}}, SPEC, str(tmp_path / "out"),
                              device="cpu", seed=0)["gpqa"]
    assert res["n_problems"] == 3 and res["k"] == 3
    assert [s["id"] for s in res["samples"]] == ["gpqa-0000", "gpqa-0001", "gpqa-0002"]
    for s in res["samples"]:
        assert len(s["responses"]) == 3 and re.fullmatch(r"\([A-D]\)", s["answer"])  # GPQA's processed target
        # independent re-scoring (the tiny model's 12 random characters contain no choice text)
        texts = [t.lower() for row in GPQA_ROWS for k, t in row.items() if k != "Question"]
        assert not any(t in r.lower() for t in texts for r in s["responses"])
        assert s["correct"] == [int(_flexible_extract_no_choice_text(r) == s["answer"]) for r in s["responses"]]
    n_ok = sum(sum(s["correct"]) for s in res["samples"])
    assert res["metrics"]["avg@k"] == pytest.approx(n_ok / 9)
    assert json.loads((tmp_path / "out" / "gpqa.json").read_text())["lm_eval"]["task"] == "ibtpo_gpqa"
