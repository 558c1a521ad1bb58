"""Bringing one's own config to the DAG: nested ``--config`` values typed by the schema, errors that
name the ``--configfile``, a relative ``extends``, and external checkpoints checked at planning."""

import subprocess
import sys
from pathlib import Path

import pytest

from ibtpo.config import ConfigError, coerce_overrides, load_config

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(workdir), "-n", "--cores", "1", "results/table1.csv", *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_override_strings_are_read_with_the_schema_types():
    # what snakemake's --config hands over: BaseLoader leaves every nested value a string
    got = coerce_overrides({"evaluation": {"temperature": "0.5", "k": "4", "benchmarks": ["arith_ops2"]},
                            "train": {"lr": "1e-4", "betas": ["0.9", "0.95"]}, "run_ablations": "true",
                            "prompt_template": "{problem}\n", "preset": "smoke", "seeds": ["0", "1"],
                            "method_defs": {"grpo": {"sampler": {"G": "4"}, "label": "007"}},
                            "rollout": {"vllm": {"max_model_len": "null"}}})
    assert got == {"evaluation": {"temperature": 0.5, "k": 4, "benchmarks": ["arith_ops2"]},
                   "train": {"lr": 1e-4, "betas": [0.9, 0.95]}, "run_ablations": True,
                   "prompt_template": "{problem}\n", "preset": "smoke", "seeds": [0, 1],
                   "method_defs": {"grpo": {"sampler": {"G": 4}, "label": "007"}},
                   "rollout": {"vllm": {"max_model_len": None}}}
    cfg = load_config("smoke", overrides={"evaluation": {"temperature": "0.5"}})
    assert cfg["evaluation"]["temperature"] == 0.5


def test_nested_config_override_plans(tmp_path):
    (tmp_path / "results").mkdir()
    r = snakemake(tmp_path, "--config", "preset=smoke", "evaluation={temperature: 0.5, top_p: 0.9}")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    import json

    assert not (tmp_path / "results" / "smoke").exists()  # a dry run writes nothing under results/ ...
    plan = tmp_path / ".snakemake" / "plan"  # ... but its resolved config and manifests here
    resolved = json.loads((plan / "results" / "smoke" / "config.yaml").read_text())
    assert resolved["evaluation"]["temperature"] == 0.5 and resolved["evaluation"]["top_p"] == 0.9


def test_configfile_errors_name_the_file_and_relative_extends_resolve_from_it(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "base.yaml").write_text("extends: smoke\npreset: mybase\nseeds: [0]\n")
    (mine / "run.yaml").write_text("extends: base.yaml\npreset: myrun\n")  # relative to this file
    work = tmp_path / "work"  # snakemake runs elsewhere
    (work / "results").mkdir(parents=True)
    r = snakemake(work, "--configfile", str(mine / "run.yaml"))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (work / ".snakemake" / "plan" / "results" / "myrun" / "config.yaml").exists()
    (mine / "bad.yaml").write_text("extends: base.yaml\ntrain: {steps: 0}\n")
    bad = snakemake(work, "--configfile", str(mine / "bad.yaml"))
    assert bad.returncode != 0
    out = bad.stdout + bad.stderr
    assert f"{mine / 'bad.yaml'}: invalid configuration" in out and "train.steps" in out
    assert "--configfile: invalid" not in out


def test_external_checkpoints_are_checked_at_planning():
    with pytest.raises(ConfigError, match=r"external.grpo: the name is taken by a method of method_defs"):
        load_config("smoke", overrides={"external": {"grpo": {"path": "x"}}})
    with pytest.raises(ConfigError, match=r"external.x.hub: 'nobody/not-cached' is not in the local Hugging Face "
                                          r"cache .* huggingface-cli download nobody/not-cached"):
        load_config("smoke", overrides={"external": {"x": {"hub": "nobody/not-cached"}}})
    with pytest.raises(ConfigError, match=r"external.x: .* is valid under each of"):
        load_config("smoke", overrides={"external": {"x": {"path": "a", "hub": "b/c"}}})
