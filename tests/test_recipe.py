"""The README's recipe "Add a benchmark or a checkpoint", run as written: its preset block
validates; a JSONL with list answers, LaTeX answers and no id column, and the same rows as parquet,
go through make_data (gold check: no failures) and an evaluation on a DAG-built base model; an
external checkpoint is evaluated like the base model."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "tests" / "data" / "byo_bench.jsonl"


def write_parquet(path: Path) -> None:
    """The test file's rows as parquet (a parquet column has one type: every answer a list)."""
    rows = [json.loads(line) for line in BENCH.read_text().splitlines()]
    pd.DataFrame([{**r, "final_answer": r["final_answer"] if isinstance(r["final_answer"], list)
                   else [r["final_answer"]]} for r in rows]).to_parquet(path)


def readme_preset() -> dict:
    text = (REPO / "README.md").read_text()
    section = text.split("## Add a benchmark or a checkpoint", 1)[1].split("\n## ", 1)[0]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


def test_the_readme_preset_block_validates(tmp_path):
    from ibtpo.config import validate, resolve_extends, PRESET_DIR

    cfg = readme_preset()
    cfg["data"]["benchmarks"]["mine"]["path"] = str(BENCH)
    write_parquet(tmp_path / "mine.parquet")
    cfg["data"]["benchmarks"]["mine_pq"]["path"] = str(tmp_path / "mine.parquet")
    ckpt = tmp_path / "ckpt"  # what the planning check looks for (file names only; loaded by no test here)
    ckpt.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        (ckpt / f).write_text("{}")
    cfg["external"]["released"]["path"] = str(ckpt)
    out = validate(resolve_extends(cfg, PRESET_DIR / "my.yaml"))
    assert out["evaluation"]["answer"] == "boxed" and out["external"]["released"]["label"] == "Released weights"
    assert "\\boxed{}" in out["prompt_template"].format(problem="x")  # the default answer: boxed needs a box
    assert out["methods"] == []  # the recipe is evaluate-only: base model + external checkpoints, nothing trained


def test_readme_json_example_is_the_test_file():
    text = (REPO / "README.md").read_text()
    example = re.search(r"```json\n(.*?)```", text.split("## Add a benchmark or a checkpoint", 1)[1], re.S).group(1)
    assert example.strip().splitlines() == BENCH.read_text().strip().splitlines()[:3]


@pytest.mark.slow
def test_recipe_runs_make_data_and_an_evaluation_on_the_smoke_base(tmp_path):
    write_parquet(tmp_path / "mine.parquet")
    preset = {"extends": "smoke", "preset": "my", "policy": {"sft": {"steps": 30}},
              "data": {"benchmarks": {
                  "mine": {"source": "jsonl", "path": str(BENCH), "problem_field": "question",
                           "answer_field": "final_answer"},
                  "mine_pq": {"source": "parquet", "path": str(tmp_path / "mine.parquet"), "problem_field": "question",
                              "answer_field": "final_answer"}}},
              "evaluation": {"benchmarks": ["mine", "mine_pq"]},
              "external": {"released": {"path": "results/my/base", "label": "Released weights"}}}
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(preset))
    (tmp_path / "results").mkdir()
    targets = [f"results/my/eval/{who}/step_0/{b}.json" for who in ("base", "external/released")
               for b in ("mine", "mine_pq")]
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(tmp_path), "--cores", "2", *targets, "--configfile", str(tmp_path / "my.yaml")],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = (tmp_path / "results" / "my" / "logs" / "make_data.log").read_text()
    for b in ("mine", "mine_pq"):
        assert f"{b}: gold check: 4/4 golds (4 distinct) grade correct" in log, log
        assert f"{b}: 4 row(s) without an id got one made from the row number" in log, log
    rows = [json.loads(line) for line in (tmp_path / "results" / "my" / "data" / "bench" / "mine.jsonl").open()]
    assert [r["answer"] for r in rows] == ["\\frac{3}{4}", "2, -2", "42", "\\dfrac{1}{2}"]  # lists, $…$ stripped
    assert [r["id"] for r in rows] == ["mine-0000", "mine-0001", "mine-0002", "mine-0003"]
    for b in ("mine", "mine_pq"):
        base, ext = (json.loads((tmp_path / "results" / "my" / "eval" / who / "step_0" / f"{b}.json").read_text())
                     for who in ("base", "external/released"))
        assert len(base["samples"]) == 4 and base["spec"]["answer"] == "boxed"
        assert [s["correct"] for s in ext["samples"]] == [s["correct"] for s in base["samples"]]  # same weights
