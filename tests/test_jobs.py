"""The one job interface (``python -m ibtpo <job>``: a dispatch table over ``ibtpo.jobs``), config
defaults declared once (in the schema) and component checks at planning time."""

import argparse
import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ibtpo.__main__ import JOBS, job_of, parser
from ibtpo.config import SCHEMA_PATH, ConfigError, load_config, resolve_extends, validate, PRESET_DIR

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())  # read here, independently of ibtpo.config


def _raw_tiny():
    return resolve_extends(yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text()), PRESET_DIR / "tiny.yaml")


def _defaults(props: dict) -> dict:
    return {k: v["default"] for k, v in props.items() if "default" in v}


# ------------------------------------------------------------------------------ the job interface
def test_every_job_module_has_the_interface_and_every_option_has_help():
    ap = parser()  # imports every job
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(JOBS)
    for name, p in sub.choices.items():
        assert JOBS[name][1], name
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
    for action in ap._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            assert action.help


def test_job_of_skips_the_global_options():
    assert job_of(["--config", "smoke", "--threads", "2", "table1", "--rows", "x"]) == "table1"
    assert job_of(["--config=smoke", "probe"]) == "probe"
    assert job_of(["--help"]) is None and job_of([]) is None


def test_probe_without_a_checkpoint_is_a_usage_error_not_a_traceback():
    r = subprocess.run([sys.executable, "-m", "ibtpo", "--config", "smoke", "probe", "--bench-dir", "x", "--out", "y"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert "one of the arguments --checkpoint --marker is required" in r.stderr
    assert "Traceback" not in r.stderr


def _eval_file(path, correct_by_problem, k=2):
    samples = [{"id": f"p{i}", "answer": "1", "responses": [""] * k, "correct": c}
               for i, c in enumerate(correct_by_problem)]
    path.write_text(json.dumps({"k": k, "samples": samples}))
    return str(path)


def test_table1_job_writes_table1_under_its_own_name(tmp_path, monkeypatch):
    """``table1 --rows R --out S`` writes S.csv/.md/.tex titled Table 1 (the old command line put
    ``--md`` where the table's name belongs and titled it "Table 2")."""
    from ibtpo.__main__ import main

    cfg = load_config("smoke")
    bench = cfg["evaluation"]["benchmarks"]
    rows = {m: {b: [_eval_file(tmp_path / f"{m}_{b}.json", [[1, 0], [0, 0]])] for b in bench}
            for m in ("base", "grpo", "ibtpo")}
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    assert main(["--config", "smoke", "table1", "--rows", str(tmp_path / "rows.json"),
                 "--out", str(tmp_path / "t1")]) == 0
    md = (tmp_path / "t1.md").read_text()
    assert "Table 1 (smoke preset)" in md.splitlines()[0]
    assert "Table 2" not in md
    assert {p.suffix for p in tmp_path.glob("t1.*")} == {".csv", ".md", ".tex"}


def test_probe_csv_job_collects_the_summaries_in_step_order(tmp_path):
    from ibtpo.__main__ import main

    for step, ib in ((0, -1.0), (2, -0.5), (4, -0.25)):
        (tmp_path / f"s{step}.json").write_text(json.dumps({"summary": {"ib_score": ib}}))
    args = ["probe-csv", "--method", "m", "--seed", "3", "--base", str(tmp_path / "s0.json"),
            "--steps", f"4={tmp_path / 's4.json'}", f"2={tmp_path / 's2.json'}", "--out", str(tmp_path / "o.csv")]
    assert main(args) == 0
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines == ["method,seed,step,ib_score", "m,3,0,-1.0", "m,3,2,-0.5", "m,3,4,-0.25"]


def test_rules_call_jobs_through_shell_with_a_log():
    """No ``run:`` block runs Python (pandas) inside the snakemake process; every job rule logs."""
    texts = {p.name: p.read_text() for p in [REPO / "Snakefile", *sorted((REPO / "pipelines" / "rules").glob("*.smk"))]}
    for name, text in texts.items():
        assert not re.search(r"^\s+run:\s*$", text, re.M), f"{name} has a run: block"
        for rule in re.split(r"^rule ", text, flags=re.M)[1:]:
            if re.search(r"^\s+shell:\s*$", rule, re.M):
                assert re.search(r"^\s+log:\s*$", rule, re.M), f"{name}: rule {rule.split(':')[0]} has no log:"


# ------------------------------------------------------------------------------ defaults declared once
def test_train_settings_take_the_schema_defaults():
    from ibtpo.trainer import LossSettings, TrainSettings

    train_props = SCHEMA["properties"]["train"]["properties"]
    got = dataclasses.asdict(TrainSettings.of({"steps": 2, "batch_problems": 3, "checkpoint_every": 1}))
    want = _defaults(train_props)
    assert want and {k: got[k] for k in want} == want
    assert set(got) - {"seed"} == set(train_props)  # every train key, nothing else
    loss_props = SCHEMA["properties"]["method_defs"]["additionalProperties"]["properties"]["loss"]["properties"]
    assert dataclasses.asdict(LossSettings.of()) == _defaults(loss_props)
    with pytest.raises(ConfigError, match=r"train.lr: -1 is less than or equal to the minimum of 0"):
        TrainSettings.of({"steps": 2, "batch_problems": 3, "checkpoint_every": 1, "lr": -1})


def test_the_dag_and_the_library_get_the_same_evaluation_defaults():
    from ibtpo.eval.tasks import evaluation_spec, resolve_spec

    raw = _raw_tiny()
    for key in ("batch_size", "pass_at", "top_k", "grader_timeout_s"):
        raw["evaluation"].pop(key, None)
    cfg = validate(raw)
    ev_props = SCHEMA["properties"]["evaluation"]["properties"]
    assert cfg["evaluation"]["batch_size"] == ev_props["batch_size"]["default"] == 64
    assert cfg["evaluation"]["pass_at"] == [1, cfg["evaluation"]["k"]]  # derived default [1, k]
    spec = resolve_spec({"prompt_template": "{problem}", "k": 4})  # a library caller's spec
    assert spec["batch_size"] == 64 and spec["pass_at"] == [1, 4] and spec["stop"] == []
    assert resolve_spec(evaluation_spec(cfg))["batch_size"] == 64
    with pytest.raises(ValueError, match=r"evaluation.top_p: 2 is greater than the maximum of 1"):
        resolve_spec({"prompt_template": "{problem}", "k": 4, "top_p": 2})


def test_validating_a_validated_config_is_a_no_op():
    cfg = load_config("smoke")
    assert validate(copy.deepcopy(cfg)) == cfg
    loss_props = SCHEMA["properties"]["method_defs"]["additionalProperties"]["properties"]["loss"]["properties"]
    for name, mdef in cfg["method_defs"].items():  # every method's loss section completed from the schema
        assert set(mdef["loss"]) == set(_defaults(loss_props)), name


# ------------------------------------------------------------------------------ components built at planning
@pytest.mark.parametrize("path,value,message", [
    (("probe", "sampler", "B0"), 0, r"probe.sampler.B0: must be an integer >= 1 \(got 0\)"),
    (("probe", "sampler", "L"), "9", r"probe.sampler.L: must be an integer >= 1 \(got '9'\)"),
    (("method_defs", "grpo", "sampler", "G"), 2.5, r"method_defs.grpo.sampler.G: must be an integer >= 1"),
    (("method_defs", "treerl", "sampler", "L"), -1, r"method_defs.treerl.sampler.L: must be an integer >= 0"),
    (("method_defs", "treerl", "advantage", "variant"), "blog",
     r"method_defs.treerl.advantage.variant: 'blog'; allowed: \['paper', 'code'\]"),
    (("method_defs", "grpo", "advantage", "std_ddof"), 2, r"method_defs.grpo.advantage.std_ddof: 0 or 1"),
])
def test_component_checks_run_at_validation_under_the_config_key(path, value, message):
    cfg = _raw_tiny()
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
