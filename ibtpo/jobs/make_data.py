"""Materialise a preset's problem sets as JSONL: synthetic ones are generated, file-based ones are
read and checked (errors name file and row), so every later job reads one uniform format.

``source: registry`` entries (the paper presets' MATH-500, AIME, AMC, DAPO-Math-17K, GPQA-Diamond,
IFEval) are read by :mod:`ibtpo.data.benchmarks`; hub-only ones are downloaded here, when the job
runs, never at planning time. A benchmark evaluated by one of lm-eval's own tasks also gets
``bench/<name>.meta.json`` naming that task (the evaluation reads it). Real training data is not
filtered against the benchmarks (the paper trains on DAPO-Math-17K as published; our choice,
METHOD.md §6): the number of training problems that also appear verbatim in a benchmark is logged.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import data_root
from ..data import benchmarks
from ..data.arithmetic import ArithmeticSpec, generate
from ..data.problems import load_problems, write_jsonl


def dataset_rows(ds: dict, data_dir: str, exclude: set[str] = frozenset(), prefix: str = "arith") -> list[dict]:
    if ds["source"] == "registry":
        return benchmarks.load_registry_rows(ds, data_dir, name=prefix)[0]
    if ds["source"] == "arithmetic":
        spec = ArithmeticSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in ds.get("spec", {}).items()})
        return generate(spec, ds["n"], ds.get("seed", 0), exclude=exclude, prefix=prefix)
    if ds["source"] == "jsonl":
        rows = load_problems(Path(data_dir) / ds["path"], ds.get("problem_field", "problem"),
                             ds.get("answer_field", "answer"), ds.get("id_field", "id"))
        return rows[: ds["limit"]] if ds.get("limit") else rows
    raise NotImplementedError(f"data source {ds['source']!r} is not available in this build")


def run(cfg: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``bench/<name>.jsonl`` for every benchmark, then ``train.jsonl`` and ``sft.jsonl``;
    synthetic splits exclude every benchmark expression (held-out prompts never appear in
    training), real ones are kept as published and their overlap is logged."""
    out_dir = Path(out_dir)
    data_dir = data_root(cfg)
    written, held_out, bench_problems = {}, set(), {}
    for name, ds in cfg["data"]["benchmarks"].items():
        rows = _rows(ds, data_dir, held_out, name, out_dir / "bench" / f"{name}.meta.json")
        held_out |= {_key(r) for r in rows}
        bench_problems[name] = {_key(r) for r in rows}
        written[name] = out_dir / "bench" / f"{name}.jsonl"
        write_jsonl(written[name], rows)
    for split in ("train", "sft"):
        if split in cfg["data"]:
            rows = _rows(cfg["data"][split], data_dir, held_out, split, None)
            if split == "train":
                held_out |= {_key(r) for r in rows}
                _report_overlap(rows, bench_problems)
            written[split] = out_dir / f"{split}.jsonl"
            write_jsonl(written[split], rows)
    return written


def _key(row: dict) -> str:
    """What makes two problems the same: the arithmetic expression, else the (stripped) problem
    text, else (rows of lm-eval's own tasks) the id."""
    if "expression" in row:
        return row["expression"]
    return row["problem"].strip() if isinstance(row.get("problem"), str) else f"id:{row['id']}"


def _rows(ds: dict, data_dir: Path, held_out: set, name: str, meta_path: Path | None) -> list[dict]:
    if ds["source"] != "registry":
        return dataset_rows(ds, str(data_dir), exclude=held_out, prefix=name)
    rows, meta = benchmarks.load_registry_rows(ds, data_dir, name=name)
    print(f"[make-data] {name}: {meta['rows']} rows from {meta['origin']}"
          + (f" (evaluated by lm-eval's task {meta['lm_eval_task']!r})" if meta["lm_eval_task"] else ""))
    if meta_path is not None and meta["lm_eval_task"]:
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return rows


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

    for name, path in run(job_config(args, quiet_transformers=False), args.out_dir).items():
        print(f"[make-data] {name}: {path}")
    return 0
