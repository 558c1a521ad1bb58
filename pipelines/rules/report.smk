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
