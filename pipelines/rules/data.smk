rule make_data:
    output:
        train=f"{R}/data/train.jsonl",
        bench=expand(f"{R}/data/bench/{{b}}.jsonl", b=list(CFG["data"]["benchmarks"])),
        sft=[f"{R}/data/sft.jsonl"] if "sft" in CFG["data"] else [],
    params:
        cfg=section("data", "data_dir"),
    log:
        f"{R}/logs/make_data.log",
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} make-data --out-dir {R}/data 2>&1 | tee {log}"
