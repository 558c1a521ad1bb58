def table1_rows():
    rows = {"base": {b: [f"{R}/eval/base/step_0/{b}.json"] for b in BENCH}}
    for m in METHODS:
        rows[m] = {b: [f"{R}/eval/{m}/seed{s}/step_{FINAL}/{b}.json" for s in SEEDS] for b in BENCH}
    return rows


rule table1:
    """avg@k of the final checkpoint, mean ± std over seeds (requires every checkpoint evaluated)."""
    input:
        all_evals=f"{R}/eval/.all_checkpoints_done",
        files=[f for per in table1_rows().values() for fs in per.values() for f in fs],
    output:
        csv="results/table1.csv",
        md="results/table1.md",
        preset_csv=f"{R}/table1.csv",
    params:
        preset=PRESET,
        labels=json.dumps({m: CFG["method_defs"][m].get("label", m) for m in METHODS}),
    run:
        import shutil
        from ibtpo.jobs import table1

        df = table1.run(CFG, table1_rows(), output.csv, output.md)
        shutil.copyfile(output.csv, output.preset_csv)
        print(Path(output.md).read_text())


TABLE3_METHOD = "ibtpo" if "ibtpo" in METHODS else METHODS[0]


rule table3:
    """Branching statistics at toy scale: chains G=8 / G=12 and IBTree (4,9,1,1) on the same
    problems, with the base model and a trained checkpoint (final step, first seed) as policy."""
    input:
        base=[BASE] if BUILD_BASE else [],
        marker=f"{R}/runs/{TABLE3_METHOD}/seed{SEEDS[0]}/checkpoints/step_{FINAL}.json",
        bench=f"{R}/data/bench/{BENCH[0]}.jsonl",
    output:
        csv="results/table3.csv",
        preset_csv=f"{R}/table3.csv",
    params:
        cfg=section("rollout", "prompt_template"),
        trained_label=f"{TABLE3_METHOD}@{FINAL}",
    threads: THREADS
    log:
        f"{R}/logs/table3.log",
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} table3 --base {BASE} "
        "--trained {input.marker} --trained-label {params.trained_label} --problems {input.bench} "
        "--csv {output.csv} 2>&1 | tee {log} && cp {output.csv} {output.preset_csv}"
