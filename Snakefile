# IB-TPO reproduction DAG. Default preset: tiny (CPU, minutes). Others:
#   snakemake --cores all results/table1.csv --config preset=smoke
#   snakemake --cores all results/table1.csv --configfile pipelines/config/<preset>.yaml
#   snakemake --cores all results/table1.csv --config 'methods=[]'   # evaluate-only: base + external:, no training
# The config is validated against pipelines/schemas/config.schema.yaml before any job runs. Every output lies
# under its results_dir (default results): with --config results_dir=DIR the targets are DIR/table1.csv, ...
import json
import os
import re
import sys
from pathlib import Path

from ibtpo.config import (ConfigError, all_seeds, check_resource_rules, checkpoint_steps, dag_config, evaluate_only,
                          load_config, probe_seeds, result_view, rule_resources, seeds_of)
from ibtpo.dag_mode import plans_only
from ibtpo.publish import PUBLISHED, clear_stale
from ibtpo.schema import schema

DEFAULT_RESULTS = schema()["properties"]["results_dir"]["default"]  # "results"


def report_last_run():
    """For a bare ``snakemake --report DIR/report.html``: ``DIR/last_run.json`` (the preset the DAG last ran jobs for
    with results_dir DIR), else the default results_dir's; ``None`` when there is none."""
    argv = sys.argv[sys.argv.index("--report") + 1:]
    target = argv[0] if argv and not argv[0].startswith("-") else ""
    for d in dict.fromkeys([Path(target).parent if target else None, Path(DEFAULT_RESULTS)]):
        if d is not None and (d / "last_run.json").exists():
            return d / "last_run.json"
    return None


try:
    _last_run = report_last_run() if "--report" in sys.argv and not config else None
    if _last_run is not None:
        # `snakemake --report results/report.html` reports what was run last, whichever preset it was
        _last = json.loads(_last_run.read_text())
        print(f"[report] no preset given: the last run's, {_last['preset']!r} ({_last['config']})", file=sys.stderr)
        CFG = load_config(_last["config"])
    else:
        CFG = dag_config(config, workflow.config_settings.configfiles)
except ConfigError as e:
    raise WorkflowError(str(e)) from None

PY = sys.executable
PLANS_ONLY = plans_only(sys.argv)  # a dry run (-n), --dag, --summary, --report ...: runs no job, writes nothing
PRESET = CFG["preset"]
RD = CFG["results_dir"]  # every output lies under it: tables and claims report, then a folder per preset
R = f"{RD}/{PRESET}"
LAST_RUN = Path(f"{RD}/last_run.json")  # the preset the DAG last ran jobs for here (for a bare --report)
CONFIG_FILE = f"{R}/config.yaml"
METHODS = CFG["methods"]                                           # Table 1 (default target)
EVAL_ONLY = evaluate_only(CFG)  # methods: []: Table 1 = the base model + the external checkpoints; nothing trained
ABLATIONS = [m for m in CFG["ablations"] if m not in METHODS]      # Table 2 only (trained on request)
ALL_METHODS = METHODS + ABLATIONS
PROBE = "probe" in CFG
ALL_SEEDS = all_seeds(CFG)                                           # seeds, then method_seeds' extra ones
SEEDS_OF = {m: seeds_of(CFG, m) for m in ALL_METHODS}              # a method's RL seeds (method_seeds)
PROBE_SEEDS = {m: probe_seeds(CFG, m) for m in ALL_METHODS}        # the probed ones (those in `seeds`)
STEPS = checkpoint_steps(CFG)
FINAL = STEPS[-1]
BENCH = CFG["evaluation"]["benchmarks"]
THREADS = CFG["threads_per_job"]
BUILD_BASE = CFG["policy"]["base"] == "build"
BASE = f"{R}/base" if BUILD_BASE else CFG["policy"]["base"]
# policy.base_models: k > 1 base models (SFT seeds sft.seed + i); RL seed j trains from base j mod k
N_BASES = CFG["policy"]["base_models"] if BUILD_BASE else 1
BASES = [BASE] + [f"{R}/base_{i}" for i in range(1, N_BASES)]
BASE_EVALS = ["base"] + [f"base_{i}" for i in range(1, N_BASES)]  # eval/<name>/step_0/ of each base
EXTERNAL = CFG.get("external", {})  # checkpoints trained elsewhere: rows of Table 1 (eval/external/<name>/)
# the tables and reports this config can publish at the top of RD (ibtpo/publish.py)
REPORTS = ["table1"] + ([] if EVAL_ONLY else ["table3"] + (["table2"] if CFG["ablations"] else [])
                        + (["claims"] if PROBE else []))


def base_index(seed):
    return ALL_SEEDS.index(int(seed)) % N_BASES


def refused_when_evaluate_only(target, why):
    """An input function for a target that needs trained methods: with ``methods: []`` (evaluate-only) asking
    for it fails at planning with one line."""
    def refuse(wildcards):
        raise WorkflowError(f"{target}: methods: [] is evaluate-only (nothing is trained) and {why}; "
                            f"ask for {RD}/table1.csv, or name the methods to train under `methods`")
    return refuse


def write_plan_file(path, text):
    """Write a file the jobs read (the resolved config, a manifest) while the Snakefile is parsed, only when its
    text changes (keeps reruns no-ops). A plan (-n, --dag, --summary ...) writes its copy under snakemake's own
    .snakemake/plan/ instead: it changes nothing under the results_dir (a run in progress keeps reading its
    own config), while the commands it prints name the real file."""
    path = Path(path)
    if PLANS_ONLY:  # under .snakemake/plan/: a relative path as it is, any other (/..., ../...) made absolute
        if path.is_absolute() or ".." in path.parts:
            path = Path(os.path.abspath(path))
            path = path.relative_to(path.anchor)
        path = Path(".snakemake/plan") / path
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


write_plan_file(CONFIG_FILE, json.dumps(CFG, indent=1, sort_keys=True))  # the resolved config every job reads


onstart:  # a run that executes jobs (not a dry run or a report): the top level becomes this preset's
    if workflow.is_main_process and not PLANS_ONLY:
        clear_stale(RD, R, REPORTS, log=lambda line: print(line, file=sys.stderr))  # other runs' tables and claims
        _last = json.dumps({"preset": PRESET, "config": CONFIG_FILE})
        if not LAST_RUN.exists() or LAST_RUN.read_text() != _last:
            LAST_RUN.parent.mkdir(parents=True, exist_ok=True)
            LAST_RUN.write_text(_last)


def manifest(name, obj):
    """A job's structured inputs (file lists per method, seed and step) as ``<R>/manifests/<name>.json``,
    rewritten only when it changes (write_plan_file); the job reads it (``python -m ibtpo <job> --help``)."""
    path = f"{R}/manifests/{name}.json"
    write_plan_file(path, json.dumps(obj, indent=1, sort_keys=True))
    return path


def section(*keys):
    """A config section as a rule param: editing it reruns exactly the jobs that depend on it.
    (A function, so snakemake does not read the braces of e.g. the prompt template as wildcards.)"""
    text = json.dumps({k: result_view(k, CFG[k]) for k in keys}, sort_keys=True)  # less memory-only keys
    return lambda wildcards: text


wildcard_constraints:
    method="|".join(ALL_METHODS) or "^$",
    seed=r"\d+",
    step=r"\d+",


def RES(rule):
    """A rule's job resources from the preset's `resources:` (the SLURM profile submits with them)."""
    return rule_resources(CFG, rule)


include: "pipelines/rules/data.smk"
include: "pipelines/rules/base.smk"
include: "pipelines/rules/train.smk"
include: "pipelines/rules/evaluate.smk"
include: "pipelines/rules/probe.smk"
include: "pipelines/rules/preflight.smk"
include: "pipelines/rules/report.smk"

try:
    check_resource_rules(CFG, [r.name for r in workflow.rules])
except ConfigError as e:
    raise WorkflowError(str(e)) from None


# Jobs that only read small files and write tables/figures run where snakemake runs (no sbatch).
localrules: all, evaluate_all, probe_run_csv, table1, table2, figures, claims, power, publish_table, publish_claims


rule all:
    """Everything a reviewer reads: tables 1 and 3 (and 2 with run_ablations), figures, claims; evaluate-only
    (methods: []): Table 1 alone."""
    default_target: True
    input:
        f"{RD}/table1.csv",
        [f"{RD}/table3.csv"] if not EVAL_ONLY else [],
        [f"{RD}/table2.csv"] if CFG["run_ablations"] and ABLATIONS else [],
        [f"{R}/figures/dynamics_step.png", f"{RD}/claims.md"] if PROBE and not EVAL_ONLY else [],
