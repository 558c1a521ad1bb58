"""The paper presets: they validate with the reported setup, every value says where it comes from,
and ``snakemake -n`` plans them fully on a machine with no network and no weights.

Offline (HF_HUB_OFFLINE=1), planning fails on the hub-only benchmarks (AMC 2024, GPQA-Diamond,
IFEval) with a message naming them, unless ``--config offline_benchmarks=defer`` (plan everything;
make_data fetches them when it runs) or ``=skip`` (drop them) or a local ``path:`` provides them.
Measured on the 2-core dev box: one dry run of a paper preset takes about 2 s.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ibtpo.config import PRESET_DIR, checkpoint_steps, load_config

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("IBTPO_DATA_DIR") or REPO.parent / "shared" / "data")
PRESETS = {"paper-qwen3-1.7b": "Qwen/Qwen3-1.7B-Base", "paper-qwen3-8b": "Qwen/Qwen3-8B-Base"}
BENCHMARKS = ["math500", "aime24", "aime25", "amc23", "amc24", "gpqa_diamond", "ifeval"]
HUB_ONLY = ["amc24", "gpqa_diamond", "ifeval"]


def _overrides() -> list[str]:
    return [f"data_dir={DATA_DIR}"] if os.environ.get("IBTPO_DATA_DIR") else []


def _cfg(preset: str, **over):
    if os.environ.get("IBTPO_DATA_DIR"):
        over.setdefault("data_dir", str(DATA_DIR))
    return load_config(preset, overrides=over or None)


def _dapo_rows() -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(DATA_DIR / "dapo_math_17k" / "dapo_math_17k.parquet").metadata.num_rows


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_paper_presets_carry_the_reported_setup(preset):
    cfg = _cfg(preset)
    assert cfg["preset"] == preset and cfg["policy"]["base"] == PRESETS[preset]
    assert cfg["data"]["train"] == {"source": "registry", "name": "dapo_math_17k", "gold_check": "warn"}
    assert cfg["data"]["gold_check"] == "fail"  # the default: only the two sets kept as published warn
    t, ro, ev = cfg["train"], cfg["rollout"], cfg["evaluation"]
    assert t["lr"] == 1e-6
    assert t["steps"] == math.ceil(_dapo_rows() / t["batch_problems"])  # one epoch of DAPO-Math-17K
    assert (ro["temperature"], ro["top_p"], ro["top_k"], ro["max_new_tokens"]) == (0.7, 0.95, 20, 2048)
    assert (ev["temperature"], ev["top_p"], ev["top_k"], ev["max_new_tokens"], ev["k"]) == (0.7, 0.95, 20, 2048, 32)
    assert ev["benchmarks"] == BENCHMARKS and sorted(cfg["data"]["benchmarks"]) == sorted(BENCHMARKS)
    assert ro["backend"] == "vllm"
    assert t["num_processes"] == cfg["resources"]["train"]["gpu"] == 8  # the reported 8xA100
    md = cfg["method_defs"]
    ib = {"beta": 5.0, "pi_mode": "length_norm", "zero_parent": "ratio"}  # beta reported; pi METHOD.md §1
    assert md["ibtpo"]["sampler"] == {"name": "ibtree", "B0": 4, "L": 9, "K": 1, "B": 1, "ib": ib}
    assert md["ibtpo"]["advantage"] == {"name": "ibtpo", "lam": 0.1, "ib": ib}
    assert md["ibtpo"]["ib"] == cfg["probe"]["ib"] == ib
    for m in ("grpo", "grpo_cliphigher", "grpo_entropy", "grpo_ibadv"):
        assert md[m]["sampler"] == {"name": "chains", "G": 8}
    assert all(d["loss"]["kl_coef"] == 0.001 for d in md.values())
    assert md["treerl"]["advantage"]["name"] == "treerl"
    assert {"grpo", "treerl", "ibtpo"} <= set(cfg["methods"])
    assert set(cfg["ablations"]) == {"grpo", "grpo_g12", "grpo_ibtree", "grpo_ibadv", "randtree_ibadv", "eptree_ibadv",
                                     "ibtpo"}
    assert md["grpo_g12"]["sampler"] == {"name": "chains", "G": 12}  # equal trajectories to IBTree (4,9,1,1)
    # the method definitions mirror the tiny preset's (same names, same components up to sizes)
    tiny = load_config("tiny")["method_defs"]
    assert set(md) == set(tiny)
    for m in md:
        assert ((md[m]["sampler"]["name"], md[m]["advantage"]["name"])
                == (tiny[m]["sampler"]["name"], tiny[m]["advantage"]["name"]))


def test_every_preset_value_says_where_it_comes_from():
    """Each leaf value of the paper presets (outside method_defs, whose blocks are commented per
    method) sits on a line whose comment says "reported" or "our choice", or is a preset name,
    ``extends`` or a report/probe plumbing key documented in paper-base.yaml."""
    plumbing = {"preset", "extends", "paper_dir", "paper_model", "paper_columns", "paper_rows"}
    missing = []
    for name in ("paper-base", *PRESETS):
        in_method_defs = False
        for lineno, line in enumerate((PRESET_DIR / f"{name}.yaml").read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if re.match(r"\S", line):
                in_method_defs = line.startswith("method_defs:")
            m = re.match(r"\s*([A-Za-z0-9_]+):\s*(.*)$", line)
            if in_method_defs or not m:
                continue
            key, rest = m.groups()
            value = rest.split("#")[0].strip()
            if not value or key in plumbing:
                continue
            comment = rest.split("#", 1)[1] if "#" in rest else ""
            if not re.search(r"reported|our choice", comment):
                missing.append(f"{name}.yaml:{lineno}: {line.strip()}")
    assert not missing, "values without a source comment:\n" + "\n".join(missing)


def snakemake(workdir: Path, *args, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(workdir / "hf_home")}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                        "--directory", str(workdir), *args], capture_output=True, text=True, timeout=timeout,
                       env=env, cwd=REPO)
    r.seconds = time.perf_counter() - t0
    return r


def _counts(out: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


@pytest.fixture()
def workdir(tmp_path):
    (tmp_path / "results").mkdir()
    return tmp_path


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_offline_planning_fails_naming_the_hub_only_datasets(workdir, preset):
    r = snakemake(workdir, "-n", "--cores", "1", "results/table1.csv", "--config", f"preset={preset}", *_overrides())
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    for name in HUB_ONLY:
        assert f"{name} (hub " in out, out
    assert "HF_HUB_OFFLINE=1" in out and "path:" in out and "offline_benchmarks=skip" in out
    assert not (workdir / "results" / preset / "data").exists()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_dry_run_plans_the_whole_paper_preset_offline(workdir, preset):
    r = snakemake(workdir, "-n", "--cores", "1", "results/table1.csv",
                  "--config", f"preset={preset}", "offline_benchmarks=defer", *_overrides())
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    print(f"[presets] snakemake -n {preset}: {r.seconds:.1f} s")
    cfg = _cfg(preset)
    runs = len(cfg["methods"]) * len(cfg["seeds"])
    n_ckpt = len(checkpoint_steps(cfg))
    c = _counts(out)
    assert c["make_data"] == c["evaluate_base"] == c["table1"] == c["evaluate_all"] == 1
    assert "build_base" not in c  # policy.base is a hub id: no base to build, nothing fetched at planning
    assert c["train"] == runs == 15 and c["evaluate"] == runs * n_ckpt == 60
    if "probe" in c:
        assert c["probe"] == runs * n_ckpt
    for b in BENCHMARKS:  # every benchmark is a make_data output and an evaluation output
        assert f"results/{preset}/data/bench/{b}.jsonl" in out
        assert f"results/{preset}/eval/base/step_0/{b}.json" in out
    assert f"results/{preset}/data/bench/gpqa_diamond.meta.json" in out
    assert not (workdir / "hf_home").exists()  # nothing was downloaded or cached


def test_skip_drops_the_hub_only_benchmarks_from_the_plan(workdir):
    r = snakemake(workdir, "-n", "--cores", "1", "results/table1.csv",
                  "--config", "preset=paper-qwen3-8b", "offline_benchmarks=skip", *_overrides())
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "offline_benchmarks=skip: dropped hub-only benchmarks ['amc24', 'gpqa_diamond', 'ifeval']" in out
    assert "bench/math500.jsonl" in out and "bench/amc23.jsonl" in out
    for name in HUB_ONLY:
        assert f"bench/{name}" not in out and f"step_0/{name}.json" not in out
    assert _counts(out)["evaluate"] == 60


def test_local_paths_make_offline_planning_pass(workdir, tmp_path):
    """A hub-only dataset given as a local file (``path:``) needs no hub: the preset plans offline
    with the default offline_benchmarks=fail."""
    local = tmp_path / "local"
    local.mkdir()
    for name in HUB_ONLY:
        (local / f"{name}.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    over = {"extends": "paper-qwen3-8b", "data": {"benchmarks": {
        n: {"source": "registry", "name": n, "path": str(local / f"{n}.jsonl")} for n in HUB_ONLY}}}
    if os.environ.get("IBTPO_DATA_DIR"):
        over["data_dir"] = str(DATA_DIR)
    cfgfile = tmp_path / "paper-local.yaml"
    cfgfile.write_text(yaml.safe_dump(over))
    r = snakemake(workdir, "-n", "--cores", "1", "results/table1.csv", "--configfile", str(cfgfile))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert _counts(out)["evaluate"] == 60 and "results/paper-qwen3-8b/data/bench/ifeval.jsonl" in out


@pytest.mark.slow
def test_make_data_job_materialises_the_paper_data(workdir, tmp_path):
    """The real make_data job of a paper preset (hub-only sets given as local files): the train
    file is DAPO-Math-17K, every benchmark is written, and the two evaluated by lm-eval's own tasks
    carry their sidecar. (Training, evaluation and weights are not touched.)"""
    local = tmp_path / "local"
    local.mkdir()
    (local / "amc24.jsonl").write_text('{"problem": "1+1?", "answer": 2.0}\n')
    (local / "gpqa_diamond.jsonl").write_text(json.dumps({"Question": "q", "Correct Answer": "a",
                                                          "Incorrect Answer 1": "b", "Incorrect Answer 2": "c",
                                                          "Incorrect Answer 3": "d"}) + "\n")
    (local / "ifeval.jsonl").write_text(json.dumps({"key": 5, "prompt": "p", "instruction_id_list": [],
                                                    "kwargs": []}) + "\n")
    over = {"extends": "paper-qwen3-1.7b", "data": {"benchmarks": {
        n: {"source": "registry", "name": n, "path": str(local / f"{n}.jsonl")} for n in HUB_ONLY}}}
    if os.environ.get("IBTPO_DATA_DIR"):
        over["data_dir"] = str(DATA_DIR)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(over))
    d = workdir / "results" / "paper-qwen3-1.7b" / "data"
    r = snakemake(workdir, "--cores", "1", str(d.relative_to(workdir) / "train.jsonl"),
                  "--configfile", str(tmp_path / "c.yaml"))
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    print(f"[presets] make_data of paper-qwen3-1.7b: {r.seconds:.1f} s")
    train = [json.loads(x) for x in (d / "train.jsonl").read_text().splitlines()]
    assert len(train) == _dapo_rows() and all(re.fullmatch(r"-?\d+", t["answer"]) for t in train)
    for b in BENCHMARKS:
        assert (d / "bench" / f"{b}.jsonl").is_file()
    assert json.loads((d / "bench" / "amc24.jsonl").read_text())["answer"] == "2"
    for b, task in (("gpqa_diamond", "gpqa_diamond_cot_zeroshot"), ("ifeval", "ifeval")):
        assert json.loads((d / "bench" / f"{b}.meta.json").read_text())["lm_eval_task"] == task
    assert not (d / "bench" / "math500.meta.json").exists()
    assert "also appear verbatim in the training data" in (
        workdir / "results" / "paper-qwen3-1.7b" / "logs" / "make_data.log").read_text()
