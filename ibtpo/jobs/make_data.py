"""Materialise a preset's problem sets as JSONL: synthetic ones are generated, file-based ones are
read and checked (errors name file and row), so every later job reads one uniform format."""

from __future__ import annotations

from pathlib import Path

from ..data.arithmetic import ArithmeticSpec, generate
from ..data.problems import load_problems, write_jsonl


def dataset_rows(ds: dict, data_dir: str, exclude: set[str] = frozenset(), prefix: str = "arith") -> list[dict]:
    if ds["source"] == "arithmetic":
        spec = ArithmeticSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in ds.get("spec", {}).items()})
        return generate(spec, ds["n"], ds.get("seed", 0), exclude=exclude, prefix=prefix)
    if ds["source"] == "jsonl":
        rows = load_problems(Path(data_dir) / ds["path"], ds.get("problem_field", "problem"),
                             ds.get("answer_field", "answer"), ds.get("id_field", "id"))
        return rows[: ds["limit"]] if ds.get("limit") else rows
    raise NotImplementedError(f"data source {ds['source']!r} is not available in this build")


def run(cfg: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``bench/<name>.jsonl`` for every benchmark, then ``train.jsonl`` and ``sft.jsonl``
    with every benchmark expression excluded (held-out prompts never appear in training)."""
    out_dir = Path(out_dir)
    written, held_out = {}, set()
    for name, ds in cfg["data"]["benchmarks"].items():
        rows = dataset_rows(ds, cfg["data_dir"], exclude=held_out, prefix=name)
        held_out |= {r.get("expression", r["problem"]) for r in rows}
        written[name] = out_dir / "bench" / f"{name}.jsonl"
        write_jsonl(written[name], rows)
    for split in ("train", "sft"):
        if split in cfg["data"]:
            rows = dataset_rows(cfg["data"][split], cfg["data_dir"], exclude=held_out, prefix=split)
            if split == "train":
                held_out |= {r.get("expression", r["problem"]) for r in rows}
            written[split] = out_dir / f"{split}.jsonl"
            write_jsonl(written[split], rows)
    return written
