"""lm-eval task hooks for the project's math benchmarks.

ibtpo/eval/tasks.py copies this file next to every resolved task YAML, together with
``eval_spec.json`` (the evaluation spec) and ``data.jsonl`` (the benchmark, normalised to string
fields ``id``, ``problem``, ``answer``). Everything run-time comes from those two files, so this code
holds no paths or settings of its own.

Per document, ``process_results`` receives ``results = [responses]``: the task's ``take_first_k``
filter keeps all k responses of the document (lm-eval's default ``take_first`` would keep one).
Each response is graded with the project grader (``grade(gold, pred)``; the spec's ``answer`` says which
part of a response is its answer; a timeout counts as wrong and is counted) and the document's metrics
are returned:

* ``avg@k``  = c / k                             (aggregation: mean over documents)
* ``pass@j`` = 1 − C(k − c, j) / C(k, j)         (unbiased estimator; aggregation: mean)
* ``correct``: the list of 0/1 grades            (aggregation: total number correct)
* ``grader_timeouts``: timeouts on this document  (aggregation: total)
"""

from __future__ import annotations

import json
from pathlib import Path

_HERE = Path(__file__).resolve().parent
SPEC = json.loads((_HERE / "eval_spec.json").read_text())


def load_dataset(**kwargs):
    """``custom_dataset`` hook: the normalised benchmark next to this file, as an in-memory
    ``DatasetDict`` with one ``test`` split (no HF datasets cache is written)."""
    import datasets

    rows = [json.loads(line) for line in (_HERE / "data.jsonl").read_text().splitlines() if line.strip()]
    feats = datasets.Features({k: datasets.Value("string") for k in ("id", "problem", "answer")})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows, features=feats)})


def doc_to_text(doc: dict) -> str:
    """The prompt: ``prompt_template.format(problem=...)`` (a Python format string)."""
    return SPEC["prompt_template"].format(problem=doc["problem"])


def doc_to_target(doc: dict) -> str:
    return doc["answer"]


def grade_responses(gold: str, responses: list[str]) -> tuple[list[int], int]:
    """0/1 grade of every response against ``gold`` and the number of grader timeouts."""
    from ibtpo.grading import shared_grader

    grader = shared_grader(float(SPEC["grader_timeout_s"]), SPEC["answer"])
    before = grader.timeouts
    correct = [int(bool(x)) for x in grader.grade_many([(gold, r) for r in responses])]
    return correct, int(grader.timeouts - before)


def process_results(doc: dict, results: list) -> dict:
    from ibtpo.eval.metrics import problem_metrics

    responses = results[0] if results else []
    if isinstance(responses, str):  # a take_first filter: one response
        responses = [responses]
    responses = list(responses)
    k = int(SPEC["k"])
    if len(responses) != k:
        raise RuntimeError(f"expected k={k} responses for doc {doc.get('id')!r}, got {len(responses)}: "
                           "the task needs `repeats: k` and the `take_first_k` filter")
    correct, timeouts = grade_responses(doc["answer"], responses)
    out = problem_metrics(correct, SPEC["pass_at"])
    out["correct"] = correct
    out["grader_timeouts"] = timeouts
    return out


def total_correct(items: list[list[int]]) -> int:
    """Aggregation of ``correct``: the number of correct samples over all documents."""
    return int(sum(sum(c) for c in items))


def total(items: list[int]) -> int:
    """Aggregation of ``grader_timeouts``: the sum over documents."""
    return int(sum(items))
