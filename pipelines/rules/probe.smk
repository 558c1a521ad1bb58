# IB-Score trajectories: the probe (ibtpo/jobs/probe.py) on every checkpoint of every run, plus the
# base model as step 0; the same probe problems and seed for every method and step.


rule probe_base:
    input:
        base=[BASE] if BUILD_BASE else [],
        bench=f"{R}/data/bench/{CFG['probe']['benchmark']}.jsonl" if PROBE else [],
    output:
        f"{R}/probe/base/step_0.json",
    params:
        cfg=section("probe", "rollout", "prompt_template") if PROBE else "",
    threads: THREADS
    log:
        f"{R}/logs/probe_base.log",
    benchmark:
        f"{R}/benchmarks/probe_base.tsv",
    resources:
        **RES("probe_base"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} probe --checkpoint {BASE} "
        "--bench-dir {R}/data/bench --out {output} 2>&1 | tee {log}"


rule probe:
    input:
        marker=f"{R}/runs/{{method}}/seed{{seed}}/checkpoints/step_{{step}}.json",
        bench=f"{R}/data/bench/{CFG['probe']['benchmark']}.jsonl" if PROBE else [],
    output:
        f"{R}/probe/{{method}}/seed{{seed}}/step_{{step}}.json",
    params:
        cfg=section("probe", "rollout", "prompt_template") if PROBE else "",
    threads: THREADS
    log:
        f"{R}/logs/probe_{{method}}_seed{{seed}}_step{{step}}.log",
    benchmark:
        f"{R}/benchmarks/probe_{{method}}_seed{{seed}}_step{{step}}.tsv",
    resources:
        **RES("probe"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} probe --marker {input.marker} "
        "--bench-dir {R}/data/bench --out {output} 2>&1 | tee {log}"


rule probe_run_csv:
    """One CSV per run: the probe summary at every checkpoint (step 0 = base model)."""
    input:
        base=f"{R}/probe/base/step_0.json",
        steps=expand(f"{R}/probe/{{{{method}}}}/seed{{{{seed}}}}/step_{{s}}.json", s=STEPS),
    output:
        f"{R}/probe/{{method}}/seed{{seed}}.csv",
    params:
        steps=lambda w: " ".join(f"{s}={R}/probe/{w.method}/seed{w.seed}/step_{s}.json" for s in STEPS),
    log:
        f"{R}/logs/probe_csv_{{method}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/probe_csv_{{method}}_seed{{seed}}.tsv",
    resources:
        **RES("probe_run_csv"),
    shell:
        "{PY} -m ibtpo probe-csv --method {wildcards.method} --seed {wildcards.seed} --base {input.base} "
        "--steps {params.steps} --out {output} 2>&1 | tee {log}"
