# Planning-time check (runs when the Snakefile is parsed, before any job): a preset that needs a
# hub-only dataset (AMC 2024, GPQA-Diamond, IFEval, a `source: hf` set) with no local `path:` fails here when the hub is
# unreachable, naming each dataset and how to provide it, unless offline_benchmarks says defer/skip
# (ibtpo/data/benchmarks.py). Nothing is downloaded at planning time.
from ibtpo.config import data_splits
from ibtpo.data.benchmarks import check_hub_access, lm_eval_task
from ibtpo.data.problems import DataError

# Only where the DAG is planned: a job that Snakemake re-launches (a cluster job re-reads this file,
# possibly on an offline compute node) runs after make_data has materialised the data.
if not (workflow.remote_exec or workflow.subprocess_exec):
    try:
        check_hub_access(CFG)
    except DataError as e:
        raise WorkflowError(str(e)) from None

# benchmarks evaluated by one of lm-eval's own tasks carry a sidecar naming that task
BUILTIN_BENCH = [b for b, e in CFG["data"]["benchmarks"].items() if lm_eval_task(e)]
# data_dir matters to make_data only where a data set is read from a file (tiny/smoke generate theirs:
# moving data_dir must not rerun them)
READS_DATA_DIR = any(ds["source"] in ("jsonl", "parquet", "registry") or (ds["source"] == "hf" and "path" in ds)
                     for ds in [CFG["data"][k] for k in data_splits(CFG)]
                     + list(CFG["data"]["benchmarks"].values()))


rule make_data:
    output:
        bench=expand(f"{R}/data/bench/{{b}}.jsonl", b=list(CFG["data"]["benchmarks"])),
        bench_meta=expand(f"{R}/data/bench/{{b}}.meta.json", b=BUILTIN_BENCH),
        # train.jsonl, sft.jsonl: those the run reads (evaluate-only: no train; sft only to build the base)
        splits=[f"{R}/data/{s}.jsonl" for s in data_splits(CFG)],
    params:
        cfg=section("data", *(["data_dir"] if READS_DATA_DIR else [])),
    log:
        f"{R}/logs/make_data.log",
    benchmark:
        f"{R}/benchmarks/make_data.tsv",
    resources:
        **RES("make_data"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} make-data --out-dir {R}/data 2>&1 | tee {log}"
