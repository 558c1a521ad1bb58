"""lm-eval's own tasks (IFEval, GPQA-Diamond) run under the project's evaluation spec.

A benchmark whose registry entry names an lm-eval task (``ibtpo/data/benchmarks.py``:
``gpqa_diamond`` -> ``gpqa_diamond_cot_zeroshot``, ``ifeval`` -> ``ifeval``) is evaluated by that
task's own prompt, document processing and scoring, with three things changed so that every
benchmark of a preset reports the same numbers (avg@k and pass@j over k samples):

* the data: the rows ``make_data`` materialised (from the hub or a local file), served in memory by
  a ``custom_dataset`` hook under every split name the task reads (no hub access at evaluation);
* generation: the eval spec's sampling settings and ``repeats: k`` (lm-eval's tasks are greedy);
  the task's own stop strings are kept;
* scoring: every one of the k responses is scored the way the task scores one response, and the
  per-response 0/1 scores give avg@k and pass@j. How one response is scored (our choice where the
  task has several metrics or filters, see :data:`SCORERS`): IFEval's ``prompt_level_strict_acc``
  (its own ``process_results``); GPQA's ``exact_match`` after its ``flexible-extract`` filter (the
  last parenthesised letter, or the text of a choice; the ``strict-match`` filter needs "The
  answer is (X)", which base models rarely write).

The resolved task directory (written by :func:`write_builtin_task`) holds ``<task>.yaml``
(``include:`` of the builtin YAML by absolute path + the overrides above), ``data.jsonl``,
``builtin.json`` (task, YAML path, scorer, k, pass_at) and a two-line ``utils.py`` that binds the
hooks below to that directory.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

# builtin task -> how one response is scored; tasks not listed use their process_results (first
# metric of their metric_list) or their first filter + first metric.
SCORERS = {
    "ifeval": {"kind": "process_results", "metric": "prompt_level_strict_acc"},
    "gpqa_diamond_cot_zeroshot": {"kind": "filter", "filter": "flexible-extract", "metric": "exact_match"},
}
_SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")
_TAKE = ("take_first", "take_first_k", "majority_vote")

SHIM = '''"""Hooks of one resolved lm-eval builtin task (written by ibtpo.eval.builtin_tasks; do not edit)."""
from pathlib import Path
from ibtpo.eval.builtin_tasks import Hooks

_H = Hooks(Path(__file__).resolve().parent)
load_dataset, process_results, total_correct, total = _H.load_dataset, _H.process_results, _H.total_correct, _H.total
'''


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def find_builtin_yaml(task: str) -> Path:
    """The YAML file of lm-eval's builtin task ``task`` (the file whose ``task:`` is that name)."""
    import itertools

    root = lm_eval_tasks_dir()
    named = sorted(root.rglob(f"{task}.yaml"))  # the usual layout; else scan every YAML (slow, ~2 s)
    for p in itertools.chain(named, (q for q in sorted(root.rglob("*.yaml")) if q.stem != task)):
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if any(line.split("#")[0].strip() in (f"task: {task}", f'task: "{task}"', f"task: '{task}'")
               for line in text.splitlines()):
            return p
    raise ValueError(f"lm-eval task {task!r} is not a builtin task of the installed lm-eval ({root}); "
                     "pick another lm_eval_task for this benchmark or upgrade lm-eval")


def load_builtin_config(yaml_path: Path, resolve_functions: bool = False) -> dict:
    """The builtin task's config with its ``include:``s merged (lm-eval's own YAML loader)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(yaml_path, resolve_func=resolve_functions, recursive=True)


def choose_scorer(task: str, cfg: dict) -> dict:
    if task in SCORERS:
        return dict(SCORERS[task])
    metrics = [m["metric"] for m in cfg.get("metric_list", [])]
    if not metrics:
        raise ValueError(f"lm-eval task {task!r} has no metric_list: cannot score its responses")
    if cfg.get("process_results"):
        return {"kind": "process_results", "metric": metrics[0]}
    filters = [f["name"] for f in cfg.get("filter_list", [])]
    return {"kind": "filter", "filter": filters[0] if filters else None, "metric": metrics[0]}


def splits_of(cfg: dict) -> list[str]:
    names = [cfg[k] for k in _SPLIT_KEYS if cfg.get(k)]
    if not names:
        raise ValueError("builtin task config names no split")
    return sorted(set(names))


def read_rows(path: Path, limit: int | None) -> list[dict]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            row.setdefault("id", str(i - 1))
            row["id"] = str(row["id"])
            rows.append(row)
    rows = rows[:limit] if limit else rows
    if not rows:
        raise ValueError(f"benchmark {path} has no rows")
    if len({r["id"] for r in rows}) != len(rows):
        raise ValueError(f"benchmark {path}: ids are not unique")
    return rows


def write_builtin_task(task_dir: Path, name: str, builtin: str, entry: dict, spec: dict, task_yaml) -> None:
    """Write the resolved directory of one benchmark evaluated by lm-eval's task ``builtin``.
    ``task_yaml`` renders the YAML (:func:`ibtpo.eval.tasks.task_yaml`)."""
    yaml_path = find_builtin_yaml(builtin)
    cfg = load_builtin_config(yaml_path)
    if cfg.get("output_type", "generate_until") != "generate_until":
        raise ValueError(f"lm-eval task {builtin!r} is {cfg.get('output_type')!r}; only generate_until tasks "
                         "can be sampled k times (pick a generative variant, e.g. gpqa_diamond_cot_zeroshot)")
    rows = read_rows(Path(entry["path"]), entry.get("limit"))
    (task_dir / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    info = {"task": builtin, "yaml": str(yaml_path), "scorer": choose_scorer(builtin, cfg), "k": spec["k"],
            "pass_at": spec["pass_at"], "splits": splits_of(cfg), "benchmark": name}
    (task_dir / "builtin.json").write_text(json.dumps(info, indent=1))
    (task_dir / "utils.py").write_text(SHIM)
    until = list((cfg.get("generation_kwargs") or {}).get("until") or [])
    (task_dir / f"{task_dir.name}.yaml").write_text(task_yaml(task_dir.name, yaml_path, spec, until=until,
                                                              own_prompt=False))


class Hooks:
    """The run-time hooks of one resolved builtin task directory (see the module docstring)."""

    def __init__(self, task_dir: Path) -> None:
        self.dir = Path(task_dir)
        self.info = json.loads((self.dir / "builtin.json").read_text())

    @cached_property
    def _cfg(self) -> dict:
        return load_builtin_config(Path(self.info["yaml"]), resolve_functions=True)

    @cached_property
    def _filters(self) -> list:
        from lm_eval.api.registry import get_filter

        name = self.info["scorer"].get("filter")
        if name is None:
            return []
        pipes = {f["name"]: f["filter"] for f in self._cfg.get("filter_list", [])}
        if name not in pipes:
            raise ValueError(f"lm-eval task {self.info['task']!r} has no filter {name!r} (has {sorted(pipes)})")
        return [get_filter(f["function"])(**{k: v for k, v in f.items() if k != "function"})
                for f in pipes[name] if f["function"] not in _TAKE]

    @cached_property
    def _metric(self):
        from lm_eval.api.registry import get_metric

        m = self.info["scorer"]["metric"]
        kwargs = next((dict(x) for x in self._cfg.get("metric_list", []) if x["metric"] == m), {})
        for k in ("metric", "aggregation", "higher_is_better"):
            kwargs.pop(k, None)
        fn = get_metric(m)
        return lambda pred, ref: fn(predictions=[pred], references=[ref], **kwargs)[m]

    def load_dataset(self, **kwargs):
        """``custom_dataset`` hook: the materialised rows under every split the task reads."""
        import datasets

        rows = [json.loads(line) for line in (self.dir / "data.jsonl").read_text().splitlines() if line.strip()]
        return datasets.DatasetDict({s: datasets.Dataset.from_list(rows) for s in self.info["splits"]})

    def score(self, doc: dict, response: str) -> float:
        """One response scored as the builtin task scores it (0..1)."""
        sc = self.info["scorer"]
        if sc["kind"] == "process_results":
            return float(self._cfg["process_results"](doc, [response])[sc["metric"]])
        resps = [[response]]
        for f in self._filters:
            resps = [list(r) for r in f.apply(resps, [doc])]
        pred = resps[0][0] if resps and resps[0] else ""
        target = self._cfg["doc_to_target"]
        ref = doc[target] if isinstance(target, str) and target in doc else target(doc) if callable(target) else target
        return float(self._metric(pred, str(ref)))

    def process_results(self, doc: dict, results: list) -> dict:
        from .metrics import problem_metrics

        responses = results[0] if results else []
        responses = [responses] if isinstance(responses, str) else list(responses)
        k = int(self.info["k"])
        if len(responses) != k:
            raise RuntimeError(f"expected k={k} responses for doc {doc.get('id')!r}, got {len(responses)}")
        correct = [int(self.score(doc, r) >= 1.0) for r in responses]
        out = problem_metrics(correct, self.info["pass_at"])
        out["correct"] = correct
        out["grader_timeouts"] = 0
        return out

    @staticmethod
    def total_correct(items) -> int:
        return int(sum(sum(c) for c in items))

    @staticmethod
    def total(items) -> int:
        return int(sum(items))
