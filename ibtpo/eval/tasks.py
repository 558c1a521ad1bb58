"""Resolve the evaluation spec and the benchmarks into lm-eval task directories.

One directory per benchmark under ``tasks_dir`` (lm-eval's ``TaskManager(include_path=tasks_dir,
include_defaults=False)`` indexes them recursively)::

    tasks_dir/<task>/<task>.yaml     include: <template>  + the run-time parts (below)
    tasks_dir/<task>/utils.py        copy of pipelines/tasks/utils.py (the task hooks)
    tasks_dir/<task>/eval_spec.json  the resolved eval spec that utils.py reads
    tasks_dir/<task>/data.jsonl      the benchmark normalised to string fields id / problem / answer

A benchmark evaluated by one of lm-eval's own tasks (IFEval, GPQA-Diamond: ``lm_eval_task`` in the
benchmark entry, or the ``<file>.meta.json`` sidecar ``make_data`` writes) gets a directory that
``include:``s that task's YAML instead, with the same run-time parts; see
:mod:`ibtpo.eval.builtin_tasks`.

Why copies: lm-eval resolves ``!function utils.f`` relative to the YAML file that contains the tag
(for an ``include:``d file, relative to that file), and a hook receives only ``(doc)`` or
``(doc, results)``, so the per-run settings must sit next to the hook module that reads them.
Each task directory gets its own copy, loaded by lm-eval as a separate module (it caches modules
by file path).

The eval spec (one for every checkpoint and benchmark; see :func:`resolve_spec`):
``prompt_template`` (Python format string with ``{problem}``), ``temperature``, ``top_p``,
``top_k`` (0 = off), ``max_new_tokens``, ``k`` (samples per problem), ``pass_at`` (list of j ≤ k),
``batch_size`` (prompts per generation call), ``grader_timeout_s``, ``answer`` (``boxed``: the last
``\\boxed{}`` of a response is its answer, none is wrong; ``any``: math-verify's default extraction;
see :mod:`ibtpo.grading`), ``stop`` (stop strings;
default none: only EOS stops. lm-eval would otherwise default ``until`` to the few-shot delimiter
``"\\n\\n"``, which would cut our step-separated solutions after their first step).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import jsonschema

from ..schema import apply_defaults, schema, section_schema

SPEC_KEYS = ("temperature", "top_p", "top_k", "max_new_tokens", "k", "pass_at", "batch_size", "grader_timeout_s",
             "answer", "stop")  # the config's evaluation keys that shape generation and grading (+ prompt_template)
BENCH_KEYS = {"path", "problem_field", "answer_field", "id_field", "limit", "lm_eval_task"}
FILTER_NAME = "all"


def template_dir() -> Path:
    """Where the task template and hooks live: ``$IBTPO_TASK_TEMPLATES`` or the repo's
    ``pipelines/tasks``."""
    env = os.environ.get("IBTPO_TASK_TEMPLATES")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "pipelines" / "tasks"
    if not (d / "ibtpo_math.yaml").is_file() or not (d / "utils.py").is_file():
        raise FileNotFoundError(f"lm-eval task template not found in {d} (expected ibtpo_math.yaml and utils.py; "
                                "set IBTPO_TASK_TEMPLATES to the repository's pipelines/tasks)")
    return d


def evaluation_spec(cfg: dict) -> dict:
    """The eval spec of a validated config: its ``prompt_template`` and the ``evaluation`` keys of
    :data:`SPEC_KEYS`."""
    return {"prompt_template": cfg["prompt_template"],
            **{k: cfg["evaluation"][k] for k in SPEC_KEYS if k in cfg["evaluation"]}}


def _spec_schema() -> dict:
    """The eval spec's schema: the config schema's ``evaluation`` entries of :data:`SPEC_KEYS` and its
    ``prompt_template`` (one declaration of types, ranges and defaults for the DAG and for callers
    of :func:`resolve_spec`)."""
    ev = section_schema("evaluation")
    props = {k: ev["properties"][k] for k in SPEC_KEYS}
    props["prompt_template"] = schema()["properties"]["prompt_template"]
    return {"$defs": ev["$defs"], "type": "object", "additionalProperties": False,
            "required": ["prompt_template", "k"], "properties": props}


def resolve_spec(spec: dict) -> dict:
    """Validate the eval spec against the config schema and fill in its defaults (``pass_at``: ``[1, k]``);
    returns a new dict. Errors name the config key (``evaluation.top_p: ...``)."""
    node = _spec_schema()
    errors = sorted(jsonschema.Draft202012Validator(node).iter_errors(spec), key=lambda e: [str(p) for p in e.path])
    if errors:
        def key(e):
            path = ".".join(str(p) for p in e.absolute_path)
            return path if path.split(".")[0] == "prompt_template" else f"evaluation.{path}" if path else "eval spec"
        raise ValueError("; ".join(f"{key(e)}: {e.message}" for e in errors))
    s = apply_defaults(dict(spec), node)
    s["pass_at"] = sorted({int(j) for j in s.get("pass_at", [1, s["k"]])})
    try:
        s["prompt_template"].format(problem="x")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"prompt_template: not a format string with only {{problem}} "
                         f"(escape literal braces as {{{{ }}}}): {e!r}") from e
    over = [j for j in s["pass_at"] if j > s["k"]]
    if over:
        raise ValueError(f"evaluation.pass_at: {over[0]} exceeds evaluation.k ({s['k']}) samples per problem")
    return s


def task_name(benchmark: str) -> str:
    return "ibtpo_" + re.sub(r"[^A-Za-z0-9_]", "_", benchmark)


def _answer_str(x) -> str:
    if x is None:
        raise ValueError("missing answer")
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return str(int(x))
    return str(x).strip()


def normalize_benchmark(bench: dict) -> list[dict]:
    """Read a benchmark jsonl into ``[{"id", "problem", "answer"}]`` (all strings).

    Field names come from the benchmark entry (``problem_field``, ``answer_field``, ``id_field``;
    defaults problem / answer / id), read as the DAG's make_data reads them: a dotted path names a nested
    field, and ``answer_field`` may be an extraction rule (``{field: answer, after: "####"}``, ``{field:
    solution, boxed: last}``, ``{field, regex}``: :mod:`ibtpo.data.answer_rules`). A row without an id gets
    its 0-based line index. Integer-valued float answers (``27.0``) become ``"27"``. ``limit`` keeps the
    first N rows.
    """
    from ..data.answer_rules import ExtractionError
    from ..data.sources import answer_getter, field

    unknown = set(bench) - BENCH_KEYS
    if unknown:
        raise ValueError(f"benchmark entry has unknown keys {sorted(unknown)}; known: {sorted(BENCH_KEYS)}")
    path = Path(bench["path"])
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    pf, af, idf = (bench.get("problem_field", "problem"), bench.get("answer_field", "answer"),
                   bench.get("id_field", "id"))
    get_problem, get_answer, get_id = field(pf), answer_getter(af, f"{path}: answer_field"), field(idf)
    rows = []
    for i, line in enumerate(l for l in path.read_text().splitlines() if l.strip()):
        d = json.loads(line)
        try:
            problem, answer = get_problem(d), get_answer(d)
        except KeyError as e:
            raise ValueError(f"{path}:{i + 1}: row lacks field {e.args[0]!r} (has {sorted(d)})") from None
        except ExtractionError as e:
            raise ValueError(f"{path}:{i + 1}: {e}") from None
        try:
            rid = get_id(d)
        except KeyError:
            rid = i
        rows.append({"id": str(rid), "problem": str(problem), "answer": _answer_str(answer)})
    limit = bench.get("limit")
    if limit is not None:
        rows = rows[: int(limit)]
    if not rows:
        raise ValueError(f"benchmark {path} has no problems")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"benchmark {path}: ids in field {idf!r} are not unique")
    return rows


def generation_kwargs(spec: dict) -> dict:
    return {"until": list(spec["stop"]), "do_sample": True, "temperature": spec["temperature"],
            "top_p": spec["top_p"], "top_k": spec["top_k"], "max_gen_toks": spec["max_new_tokens"]}


def _q(x) -> str:
    """A YAML scalar (JSON is a YAML subset)."""
    return json.dumps(x)


def builtin_task_of(entry: dict) -> str | None:
    """The lm-eval builtin task that evaluates a benchmark: the entry's ``lm_eval_task``, else the
    one named by the sidecar ``<file>.meta.json`` that ``make_data`` writes next to the data file
    (``ibtpo/jobs/make_data.py``); ``None``: our own math task."""
    if entry.get("lm_eval_task"):
        return str(entry["lm_eval_task"])
    meta = Path(entry["path"]).with_suffix(".meta.json")
    if meta.is_file():
        return json.loads(meta.read_text()).get("lm_eval_task")
    return None


def task_yaml(name: str, template: Path, spec: dict, until: list[str] = (), own_prompt: bool = True) -> str:
    """The resolved task YAML: ``include:`` of ``template`` (our math template, or a builtin task's
    YAML with ``own_prompt=False``: its prompt, document processing and target are kept) plus the
    run-time parts. ``until``: stop strings kept from the included task."""
    metrics = [("avg@k", "mean")] + [(f"pass@{j}", "mean") for j in spec["pass_at"]]
    gen = generation_kwargs(spec)
    gen["until"] = list(dict.fromkeys(list(until) + gen["until"]))
    lines = [
        "# Resolved by ibtpo.eval.tasks for one evaluation run; do not edit.",
        f"include: {_q(str(template))}",
        f"task: {_q(name)}",
        "dataset_path: json",
        "custom_dataset: !function utils.load_dataset",
    ]
    if own_prompt:
        lines += ["doc_to_text: !function utils.doc_to_text", "doc_to_target: !function utils.doc_to_target"]
    else:
        lines += ["num_fewshot: 0", "dataset_kwargs: null"]
    lines += [
        "process_results: !function utils.process_results",
        f"repeats: {spec['k']}",
        f"generation_kwargs: {_q(gen)}",
        "filter_list:",
        f"  - name: {_q(FILTER_NAME)}",
        "    filter:",
        "      - function: take_first_k",
        f"        k: {spec['k']}",
        "metric_list:",
    ]
    for m, agg in metrics:
        lines += [f"  - metric: {_q(m)}", f"    aggregation: {agg}", "    higher_is_better: true"]
    lines += ["  - metric: correct", "    aggregation: !function utils.total_correct", "    higher_is_better: true",
              "  - metric: grader_timeouts", "    aggregation: !function utils.total", "    higher_is_better: false"]
    return "\n".join(lines) + "\n"


def write_tasks(benchmarks: dict[str, dict], spec: dict, tasks_dir: str | Path) -> dict[str, str]:
    """Write one resolved task directory per benchmark under ``tasks_dir`` (replacing what was
    there). Returns ``{benchmark name: lm-eval task name}``."""
    spec = resolve_spec(spec)
    tdir = template_dir()
    tasks_dir = Path(tasks_dir)
    if tasks_dir.exists():
        shutil.rmtree(tasks_dir)
    tasks_dir.mkdir(parents=True)
    names = {}
    for bench, entry in benchmarks.items():
        name = task_name(bench)
        if name in names.values():
            raise ValueError(f"benchmark names collide after sanitising: {bench!r} -> {name!r}")
        d = tasks_dir / name
        d.mkdir()
        builtin = builtin_task_of(entry)
        if builtin:
            from .builtin_tasks import write_builtin_task

            write_builtin_task(d, bench, builtin, entry, spec, task_yaml)
            names[bench] = name
            continue
        rows = normalize_benchmark({k: v for k, v in entry.items() if k != "lm_eval_task"})
        (d / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "eval_spec.json").write_text(json.dumps({**spec, "benchmark": bench}, indent=1))
        shutil.copyfile(tdir / "utils.py", d / "utils.py")
        (d / f"{name}.yaml").write_text(task_yaml(name, (tdir / "ibtpo_math.yaml").resolve(), spec))
        names[bench] = name
    return names
