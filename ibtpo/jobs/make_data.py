"""Materialise a preset's problem sets as JSONL: synthetic ones are generated, file-based and hub
ones are read and checked (errors name file and row), so every later job reads one uniform format.

Sources (``pipelines/schemas/config.schema.yaml``, ``$defs/dataset``): ``arithmetic``
(:mod:`ibtpo.data.arithmetic`), ``jsonl`` / ``parquet`` / ``hf`` with the field mapping
(:mod:`ibtpo.data.sources`), and ``registry`` entries (the paper presets' MATH-500, AIME, AMC,
DAPO-Math-17K, GPQA-Diamond, IFEval), read by :mod:`ibtpo.data.benchmarks`. Hub datasets (``hf``
and the registry's hub-only sets) are downloaded here, when the job runs, never at planning time. A
benchmark evaluated by one of lm-eval's own tasks also gets ``bench/<name>.meta.json`` naming that
task (the evaluation reads it). Real training data is not filtered against the benchmarks (the paper
trains on DAPO-Math-17K as published; our choice, METHOD.md §6): the number of training problems that
also appear verbatim in a benchmark is logged.

Every math set (all but those lm-eval's own tasks evaluate) is checked before anything is written
(:mod:`ibtpo.data.golds`): no gold may look like a whole solution (``####``, ``\\boxed``, several lines,
long prose: a wrong ``answer_field`` mapping; the message names the rule that fixes it), each other
gold, written as ``\\boxed{gold}``, must grade correct against itself
with the project's grader, and no problem or answer may hold a control character (a one-backslash
``\\frac`` in JSON is a form feed). The set's ``gold_check`` (else ``data.gold_check``; default
``fail``) decides whether a finding stops the job, naming the key, the file, the count and the first
ids, or is only logged. Every prompt must also fit the models' positions with its generation budget
(:mod:`ibtpo.data.context_budget`; ``evaluation.overlong``). The log also says, per set, how many rows
got an id made from their row number, how many list answers of several values were read as a set, and
how many distinct golds the set has (with a note when 10 or more rows share one gold).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import data_root, data_splits, evaluate_only
from ..data import benchmarks, context_budget, golds, sources
from ..data.arithmetic import ArithmeticSpec, generate
from ..data.problems import DataError, write_jsonl
from ..schema import fill_section

GOLD_TIMEOUT_S = 5.0  # per distinct gold in the self-check (a gold that runs past it counts as failing)


def _read(ds: dict, data_dir: Path, exclude: set, name: str, where: str) -> tuple[list[dict], dict]:
    """Rows and a record for the log: ``origin``, ``rows``, ``made_ids``, ``multi_answers``,
    ``lm_eval_task`` (registry sets evaluated by lm-eval's own task)."""
    src = ds["source"]
    if src == "registry":
        return benchmarks.load_registry_rows(ds, data_dir, name=name)
    if src == "arithmetic":
        spec = ArithmeticSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in ds.get("spec", {}).items()})
        rows = generate(spec, ds["n"], ds.get("seed", 0), exclude=exclude, prefix=name)
        return rows, {"origin": f"the arithmetic generator (seed {ds.get('seed', 0)})", "rows": len(rows)}
    if src in sources.FILE_SOURCES + ("hf",):
        return sources.entry_rows(ds, data_dir, name, where)
    raise DataError(f"{where}.source: unknown source {src!r}")  # the schema allows no other


def run(cfg: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``bench/<name>.jsonl`` for every benchmark, then ``train.jsonl`` and ``sft.jsonl`` (those the run
    needs: :func:`ibtpo.config.data_splits`);
    synthetic splits exclude every benchmark expression (held-out prompts never appear in
    training), real ones are kept as published and their overlap is logged. Every set is read and
    checked before the first file is written."""
    from ..grading import Grader

    out_dir = Path(out_dir)
    data_dir = data_root(cfg)
    data = fill_section("data", cfg["data"])  # the schema's defaults (gold_check), also for a bare cfg
    sets = [(name, f"data.benchmarks.{name}", ds, out_dir / "bench" / f"{name}.jsonl")
            for name, ds in data["benchmarks"].items()]
    splits = data_splits(cfg)
    sets += [(split, f"data.{split}", data[split], out_dir / f"{split}.jsonl") for split in splits]
    if "methods" in cfg and evaluate_only(cfg):
        print(f"[make-data] evaluate-only (methods: []): reads the benchmarks{' and data.sft' if splits else ''}; "
              "data.train is not read")
    read, held_out, bench_problems, errors = [], set(), {}, []
    with Grader(timeout_s=GOLD_TIMEOUT_S) as grader:
        for name, where, ds, path in sets:
            rows, info = _read(ds, data_dir, held_out, name, where)
            _log_read(name, info)
            if not info.get("lm_eval_task"):
                errors += _check(rows, name, where, ds, info, ds.get("gold_check", data["gold_check"]), grader)
            if where.startswith("data.benchmarks."):
                bench_problems[name] = {_key(r) for r in rows}
            elif where == "data.train":
                _report_overlap(rows, bench_problems)
            if where != "data.sft":
                held_out |= {_key(r) for r in rows}
            read.append((name, where, path, rows, info))
    if "policy" in cfg:  # a whole preset (not a bare data section): prompts must fit the models' positions
        bench = [(name, where, rows) for name, where, _, rows, info in read if not info.get("lm_eval_task")]
        errors += context_budget.make_data_findings(cfg, bench)
    if errors:
        raise DataError("make_data: the data do not pass their checks (nothing was written):\n"
                        + "\n".join("  " + e for e in errors))
    written = {}
    for name, where, path, rows, info in read:
        write_jsonl(path, rows)
        written[name] = path
        if info.get("lm_eval_task") and where.startswith("data.benchmarks."):
            path.with_suffix(".meta.json").write_text(json.dumps(info, indent=1) + "\n")
    return written


def _log_read(name: str, info: dict) -> None:
    task = info.get("lm_eval_task")
    print(f"[make-data] {name}: {info['rows']} rows from {info['origin']}"
          + (f" (evaluated by lm-eval's task {task!r})" if task else ""))
    if info.get("made_ids"):
        print(f"[make-data] {name}: {info['made_ids']} row(s) without an id got one made from the row number "
              f"({name}-<0-based row, 4 digits>)")
    if info.get("multi_answers"):
        print(f"[make-data] {name}: {info['multi_answers']} answer(s) are lists of several values, each read as "
              "the set of them (a completion must give every one; ibtpo/data/golds.py)")


def _answer_field_name(ds: dict) -> str:
    """The field a set's golds come from (``answer_field``, or its rule's ``field``), for messages."""
    spec = ds.get("answer_field", "answer")
    return spec["field"] if isinstance(spec, dict) else spec


def _check(rows: list[dict], name: str, where: str, ds: dict, info: dict, mode: str, grader) -> list[str]:
    """The gold self-check and control-character scan of one set; returns the findings that stop the
    job (``mode == "fail"``), logs them otherwise."""
    t = time.perf_counter()
    messages, summary = golds.check_rows(rows, f"{where} ({info['origin']})", grader, key=where,
                                         answer_field=_answer_field_name(ds))
    dt = time.perf_counter() - t
    ok = summary["rows"] - summary["gold_failures"] - summary["not_answers"]
    print(f"[make-data] {name}: gold check: {ok}/{summary['rows']} golds ({summary['distinct_golds']} distinct) "
          f"grade correct as \\boxed{{gold}}, {summary['not_answers']} do not look like answers, "
          f"{summary['control_char_rows']} row(s) with control characters ({dt:.2f} s)")
    note = golds.same_gold_note(rows)
    if note:
        print(f"[make-data] note: {name}: {note}")
    if mode == "fail":
        return messages
    for m in messages:
        print(f"[make-data] warning (gold_check: warn): {m}")
    return []


def _key(row: dict) -> str:
    """What makes two problems the same: the arithmetic expression, else the (stripped) problem
    text, else (rows of lm-eval's own tasks) the id."""
    if "expression" in row:
        return row["expression"]
    return row["problem"].strip() if isinstance(row.get("problem"), str) else f"id:{row['id']}"


def _report_overlap(train_rows: list[dict], bench_problems: dict[str, set]) -> None:
    train = {_key(r) for r in train_rows}
    for name, keys in bench_problems.items():
        n = len(train & keys)
        if n:
            print(f"[make-data] note: {n} problem(s) of benchmark {name} also appear verbatim in the training data")



def add_arguments(p) -> None:
    p.add_argument("--out-dir", required=True, help="writes bench/<name>.jsonl, train.jsonl and sft.jsonl here")


def main(args) -> int:
    from . import job_config

    try:
        written = run(job_config(args, quiet_transformers=False), args.out_dir)
    except DataError as e:
        raise SystemExit(f"[make-data] error: {e}") from None
    for name, path in written.items():
        print(f"[make-data] {name}: {path}")
    return 0
