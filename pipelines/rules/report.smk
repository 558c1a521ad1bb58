# Tables, figures and the claims report, under the preset's folder R (`results/<preset>`); the rules
# publish_table and publish_claims copy the tables and the claims report to the top of the results_dir RD
# (`results/table1.csv`, ...; see ibtpo/publish.py). Files marked report(...) go into `snakemake --report results/report.html` with the
# captions in pipelines/report/.
REPORT = "../report"  # caption paths are relative to this rule file
TABLE_PARAMS = section("evaluation", "report", "method_defs", "train")


def final_rows(methods, with_base=True):
    """Result files per method and benchmark, one per seed (the base row: one per base model; an
    external checkpoint's row: one)."""
    rows = {"base": {b: [f"{R}/eval/{e}/step_0/{b}.json" for e in BASE_EVALS] for b in BENCH}} if with_base else {}
    if with_base:  # checkpoints trained elsewhere sit next to the base model
        rows.update({n: {b: [f"{R}/eval/external/{n}/step_0/{b}.json"] for b in BENCH} for n in EXTERNAL})
    for m in methods:
        rows[m] = {b: [f"{R}/eval/{m}/seed{s}/step_{FINAL}/{b}.json" for s in SEEDS_OF[m]] for b in BENCH}
    return rows


def files_of(rows):
    return [f for per in rows.values() for fs in per.values() for f in fs]


def table_outputs(name):
    return {"csv": report(f"{R}/{name}.csv", caption=f"{REPORT}/{name}.rst", category="Tables"),
            "md": f"{R}/{name}.md", "tex": f"{R}/{name}.tex"}


rule table1:
    """avg@k of the final checkpoint: mean ± std over seeds, t-intervals and MDE, IB-TPO − GRPO and
    GRPO − base (requires every checkpoint of every run evaluated, not only the final one). Evaluate-only
    (methods: []): the base model and the external checkpoints, no difference rows."""
    input:
        all_evals=f"{R}/eval/.all_checkpoints_done",
        files=files_of(final_rows(METHODS)),
    output:
        **table_outputs("table1"),
    params:
        cfg=TABLE_PARAMS,
        rows=lambda w: manifest("table1", {"rows": final_rows(METHODS), "seeds": {m: SEEDS_OF[m] for m in METHODS}}),
    log:
        f"{R}/logs/table1.log",
    benchmark:
        f"{R}/benchmarks/table1.tsv",
    resources:
        **RES("table1"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} table1 --rows {params.rows} --out {R}/table1 --table table1 "
        "2>&1 | tee {log}"


def table2_refused(wildcards):
    """An input function: planning Table 2 fails with one line where there is nothing to train for it."""
    if EVAL_ONLY:
        refused_when_evaluate_only("table2", "Table 2 trains the ablations")(wildcards)
    if not CFG["ablations"]:
        raise WorkflowError("table2: the preset defines no `ablations` (Table 2 methods)")
    return []


def table2_rows(wildcards):
    return manifest("table2", {"rows": final_rows(CFG["ablations"], with_base=False),
                               "seeds": {m: SEEDS_OF[m] for m in CFG["ablations"]}})


rule table2:
    """The paper's Table 2 ablations at this preset: GRPO, + IBTree, + IB advantage (chains),
    random tree + IB adv., EPTree + IB adv., full IB-TPO."""
    input:
        refused=table2_refused,
        files=files_of(final_rows(CFG["ablations"], with_base=False)),
        evals=[f"{R}/eval/{m}/seed{s}/step_{st}/{b}.json" for m in CFG["ablations"] for s in SEEDS_OF[m]
               for st in STEPS for b in BENCH],
    output:
        **table_outputs("table2"),
    params:
        cfg=TABLE_PARAMS,
        rows=table2_rows,
    log:
        f"{R}/logs/table2.log",
    benchmark:
        f"{R}/benchmarks/table2.tsv",
    resources:
        **RES("table2"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} table1 --rows {params.rows} --out {R}/table2 --table table2 "
        "2>&1 | tee {log}"


TABLE3_METHOD = ("ibtpo" if "ibtpo" in METHODS else METHODS[0]) if METHODS else None  # None: evaluate-only
TABLE3_LABEL = f"{TABLE3_METHOD}@{FINAL}"
# the probe's benchmark (tiny: 3-operation problems, 3 steps + the answer line: room to fork below the
# root), else the first evaluation benchmark
TABLE3_BENCH = CFG["probe"]["benchmark"] if PROBE else BENCH[0]


rule table3:
    """Branching statistics at toy scale: chains G=8 / G=12, random branching, EPTree and IBTree on
    the same problems, with the base model and a trained checkpoint (final step, first seed)."""
    input:
        base=[BASE] if BUILD_BASE else [],
        marker=(f"{R}/runs/{TABLE3_METHOD}/seed{PROBE_SEEDS[TABLE3_METHOD][0]}/checkpoints/step_{FINAL}.json"
                if not EVAL_ONLY else
                refused_when_evaluate_only("table3", "Table 3 compares the base model with a trained checkpoint")),
        bench=f"{R}/data/bench/{TABLE3_BENCH}.jsonl",
    output:
        csv=report(f"{R}/table3.csv", caption=f"{REPORT}/table3.rst", category="Tables"),
        md=f"{R}/table3.md",
        tex=f"{R}/table3.tex",
        details=f"{R}/table3_problems.json",
    params:
        cfg=section("rollout", "prompt_template", *(["probe"] if PROBE else [])),  # probe.ib: the IB-guided row
    threads: THREADS
    log:
        f"{R}/logs/table3.log",
    benchmark:
        f"{R}/benchmarks/table3.tsv",
    resources:
        **RES("table3"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} table3 --base {BASE} "
        "--trained {input.marker} --trained-label {TABLE3_LABEL} --problems {input.bench} "
        "--csv {output.csv} --details {output.details} 2>&1 | tee {log}"


def figure_runs(methods):
    """Per method and seed: metrics.jsonl and every checkpoint's evaluation files, and its probe files
    where the seed is probed (PROBE_SEEDS)."""
    def step_files(m, s, st):
        probe = {"probe": f"{R}/probe/{m}/seed{s}/step_{st}.json"} if s in PROBE_SEEDS[m] else {}
        return {"eval": [f"{R}/eval/{m}/seed{s}/step_{st}/{b}.json" for b in BENCH], **probe}

    return {m: {s: {"metrics": f"{R}/runs/{m}/seed{s}/metrics.jsonl",
                    "steps": {st: step_files(m, s, st) for st in STEPS}}
                for s in SEEDS_OF[m]} for m in methods}


def figure_inputs(methods):
    runs = figure_runs(methods)
    files = [f"{R}/probe/base/step_0.json"] + [f"{R}/eval/base/step_0/{b}.json" for b in BENCH]
    files += [f"{R}/eval/external/{n}/step_0/{b}.json" for n in EXTERNAL for b in BENCH]
    for m, seeds in runs.items():
        for s, r in seeds.items():
            files.append(f"{R}/runs/{m}/seed{s}/checkpoints/step_{FINAL}.json")  # metrics.jsonl is complete
            for st in r["steps"].values():
                files += st["eval"] + ([st["probe"]] if "probe" in st else [])
    return files + [f"{R}/probe/{m}/seed{s}.csv" for m in methods for s in PROBE_SEEDS[m]]


FIG_METHODS = ALL_METHODS if CFG["run_ablations"] else METHODS
FIGURES = [f"{R}/figures/{n}.{e}" for n in ("dynamics_step", "dynamics_tokens", "training_curves", "fork_position") for e in ("png", "svg")]


rule figures:
    """Accuracy, entropy, Eff-Rate, IB-Score and Cov(η1,η2) against step and against cumulative
    generated tokens, one line per method with a seed band; the per-step training log; where the
    tree methods fork (fork position and root share against step)."""
    input:
        figure_inputs(FIG_METHODS) if not EVAL_ONLY else
        refused_when_evaluate_only("figures", "the figures plot the training runs"),
    output:
        png_step=report(f"{R}/figures/dynamics_step.png", caption=f"{REPORT}/dynamics.rst", category="Figures"),
        png_tokens=report(f"{R}/figures/dynamics_tokens.png", caption=f"{REPORT}/dynamics.rst", category="Figures"),
        png_train=report(f"{R}/figures/training_curves.png", caption=f"{REPORT}/training.rst", category="Figures"),
        png_forks=report(f"{R}/figures/fork_position.png", caption=f"{REPORT}/forks.rst", category="Figures"),
        svg=[f for f in FIGURES if f.endswith(".svg")],
        csv=f"{R}/figures/dynamics.csv",
    params:
        cfg=section("method_defs", "evaluation", "probe"),
        manifest=lambda w: manifest("figures", {"runs": figure_runs(FIG_METHODS),
                                                "base_eval": [f"{R}/eval/base/step_0/{b}.json" for b in BENCH],
                                                "base_probe": f"{R}/probe/base/step_0.json",
                                                "external_eval": {n: [f"{R}/eval/external/{n}/step_0/{b}.json"
                                                                      for b in BENCH] for n in EXTERNAL}}),
    log:
        f"{R}/logs/figures.log",
    benchmark:
        f"{R}/benchmarks/figures.tsv",
    resources:
        **RES("figures"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} figures --manifest {params.manifest} --out-dir {R}/figures "
        "--title '{PRESET} preset' 2>&1 | tee {log}"


def claims_curves(methods):
    """Per method and seed: its metrics.jsonl (cumulative tokens), every checkpoint's evaluation files,
    and its own base model's (step 0), for the equal-token comparisons."""
    return {m: {s: {"metrics": f"{R}/runs/{m}/seed{s}/metrics.jsonl",
                    "base": {b: f"{R}/eval/{BASE_EVALS[base_index(s)]}/step_0/{b}.json" for b in BENCH},
                    "steps": {st: {b: f"{R}/eval/{m}/seed{s}/step_{st}/{b}.json" for b in BENCH} for st in STEPS}}
                for s in SEEDS_OF[m]} for m in methods}


def claims_manifest():
    methods = FIG_METHODS
    return {"rows": final_rows(methods, with_base=False),
            "base": final_rows([])["base"], "base_seeded": N_BASES > 1,
            "base_aa": {b: [f"{R}/eval/base_evalseed1/step_0/{b}.json"] for b in BENCH},
            "curves": claims_curves(methods),
            "seeds": {m: SEEDS_OF[m] for m in methods},
            "probes": {m: [f"{R}/probe/{m}/seed{s}/step_{FINAL}.json" for s in PROBE_SEEDS[m]] for m in methods},
            "table3_details": f"{R}/table3_problems.json", "trained_label": TABLE3_LABEL,
            "figures": {n: f"figures/{n}.png" for n in ("dynamics_step", "dynamics_tokens")},  # beside claims.md
            "dynamics": f"{R}/figures/dynamics.csv"}


rule claims:
    """Each claim of the paper with the reproduced evidence, its interval and a verdict."""
    input:
        refused=refused_when_evaluate_only("claims", "the claims compare trained methods") if EVAL_ONLY else [],
        rows=files_of(final_rows(FIG_METHODS)),
        aa=expand(f"{R}/eval/base_evalseed1/step_0/{{b}}.json", b=BENCH),
        curves=[f for seeds in claims_curves(FIG_METHODS).values() for r in seeds.values()
                for st in r["steps"].values() for f in st.values()],
        markers=[f"{R}/runs/{m}/seed{s}/checkpoints/step_{FINAL}.json" for m in FIG_METHODS for s in SEEDS_OF[m]],
        probes=[f for fs in claims_manifest()["probes"].values() for f in fs],
        table3=f"{R}/table3_problems.json",
        tables=[f"{R}/table1.csv"] + ([f"{R}/table2.csv"] if CFG["run_ablations"] and ABLATIONS else []),
        figures=f"{R}/figures/dynamics_step.png",
        dynamics=f"{R}/figures/dynamics.csv",
    output:
        md=report(f"{R}/claims.md", caption=f"{REPORT}/claims.rst", category="Claims"),
        json=f"{R}/claims.json",
    params:
        cfg=section("report", "evaluation", "method_defs"),
        manifest=lambda w: manifest("claims", claims_manifest()),
    log:
        f"{R}/logs/claims.log",
    benchmark:
        f"{R}/benchmarks/claims.tsv",
    resources:
        **RES("claims"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} claims --manifest {params.manifest} --md {output.md} "
        "--json {output.json} 2>&1 | tee {log}"


rule power:
    """The power planner on this run (not part of `all`): for each accuracy claim, the MDE and wall time of
    other designs (seeds per method; --all-designs by hand for problems and samples) and the cheapest one
    that decides the claim (ibtpo/jobs/power.py)."""
    input:
        refused=refused_when_evaluate_only("power", "the power planner sizes trained runs") if EVAL_ONLY else [],
        claims=f"{R}/claims.md",
    output:
        md=f"{R}/power.md",
        json=f"{R}/power.json",
    log:
        f"{R}/logs/power.log",
    shell:
        "{PY} -m ibtpo power --from {R} --out {output.md} 2>&1 | tee {log}"


rule publish_table:
    """The top-level copy of one of the preset's tables (results/table1.{csv,md,tex} from
    results/<preset>/table1.*; markdown links rebased): the top level shows one run's, and a run removes the
    files other runs left there before its first job (onstart; ibtpo/publish.py)."""
    input:
        [f"{R}/{{name}}.{e}" for e in PUBLISHED["table1"]],
    output:
        [f"{RD}/{{name}}.{e}" for e in PUBLISHED["table1"]],
    wildcard_constraints:
        name="|".join(n for n in PUBLISHED if n != "claims"),
    log:
        f"{R}/logs/publish_{{name}}.log",
    shell:
        "{PY} -m ibtpo publish --src {input} --dst {output} 2>&1 | tee {log}"


rule publish_claims:
    """The top-level copy of the preset's claims report (results/claims.{md,json}; see publish_table)."""
    input:
        [f"{R}/claims.{e}" for e in PUBLISHED["claims"]],
    output:
        [f"{RD}/claims.{e}" for e in PUBLISHED["claims"]],
    log:
        f"{R}/logs/publish_claims.log",
    shell:
        "{PY} -m ibtpo publish --src {input} --dst {output} 2>&1 | tee {log}"
