EVAL_PARAMS = section("evaluation", "prompt_template")


rule evaluate_base:
    """Step 0: the base model, shared by every method."""
    input:
        base=[BASE] if BUILD_BASE else [],
        bench=expand(f"{R}/data/bench/{{b}}.jsonl", b=BENCH),
    output:
        expand(f"{R}/eval/base/step_0/{{b}}.json", b=BENCH),
    params:
        cfg=EVAL_PARAMS,
    threads: THREADS
    log:
        f"{R}/logs/eval_base.log",
    benchmark:
        f"{R}/benchmarks/eval_base.tsv",
    resources:
        **RES("evaluate_base"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} evaluate --checkpoint {BASE} "
        "--bench-dir {R}/data/bench --out-dir {R}/eval/base/step_0 2>&1 | tee {log}"


rule evaluate_base_extra:
    """policy.base_models > 1: base model i at step 0 (eval/base_<i>/step_0)."""
    input:
        base=f"{R}/base_{{i}}",
        bench=expand(f"{R}/data/bench/{{b}}.jsonl", b=BENCH),
    output:
        expand(f"{R}/eval/base_{{{{i}}}}/step_0/{{b}}.json", b=BENCH),
    wildcard_constraints:
        i=r"[1-9]\d*",
    params:
        cfg=EVAL_PARAMS,
    threads: THREADS
    log:
        f"{R}/logs/eval_base_{{i}}.log",
    benchmark:
        f"{R}/benchmarks/eval_base_{{i}}.tsv",
    resources:
        **RES("evaluate_base"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} evaluate --checkpoint {input.base} "
        "--bench-dir {R}/data/bench --out-dir {R}/eval/base_{wildcards.i}/step_0 2>&1 | tee {log}"


rule evaluate_base_aa:
    """The claims report's A/A line: the base model again under evaluation seed 1 (must differ from
    seed 0 by noise only)."""
    input:
        base=[BASE] if BUILD_BASE else [],
        bench=expand(f"{R}/data/bench/{{b}}.jsonl", b=BENCH),
    output:
        expand(f"{R}/eval/base_evalseed1/step_0/{{b}}.json", b=BENCH),
    params:
        cfg=EVAL_PARAMS,
    threads: THREADS
    log:
        f"{R}/logs/eval_base_evalseed1.log",
    benchmark:
        f"{R}/benchmarks/eval_base_evalseed1.tsv",
    resources:
        **RES("evaluate_base"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} evaluate --checkpoint {BASE} --seed 1 "
        "--bench-dir {R}/data/bench --out-dir {R}/eval/base_evalseed1/step_0 2>&1 | tee {log}"


rule evaluate_external:
    """A checkpoint trained elsewhere (`external:` in the preset: a local path or a cached hub id),
    evaluated like the base model (step 0, evaluation seed 0); a row of Table 1."""
    input:
        ckpt=lambda w: [EXTERNAL[w.name]["path"]] if "path" in EXTERNAL[w.name] else [],
        bench=expand(f"{R}/data/bench/{{b}}.jsonl", b=BENCH),
    output:
        expand(f"{R}/eval/external/{{{{name}}}}/step_0/{{b}}.json", b=BENCH),
    wildcard_constraints:
        name="|".join(map(re.escape, EXTERNAL)) or "^$",
    params:
        cfg=EVAL_PARAMS,
        ckpt=lambda w: EXTERNAL[w.name].get("path") or EXTERNAL[w.name]["hub"],
    threads: THREADS
    log:
        f"{R}/logs/eval_external_{{name}}.log",
    benchmark:
        f"{R}/benchmarks/eval_external_{{name}}.tsv",
    resources:
        **RES("evaluate_external"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} evaluate --checkpoint {params.ckpt} "
        "--bench-dir {R}/data/bench --out-dir {R}/eval/external/{wildcards.name}/step_0 2>&1 | tee {log}"


rule evaluate:
    """Every checkpoint of every run, on every benchmark of the preset (one lm-eval call)."""
    input:
        marker=f"{R}/runs/{{method}}/seed{{seed}}/checkpoints/step_{{step}}.json",
        bench=expand(f"{R}/data/bench/{{b}}.jsonl", b=BENCH),
    output:
        expand(f"{R}/eval/{{{{method}}}}/seed{{{{seed}}}}/step_{{{{step}}}}/{{b}}.json", b=BENCH),
    params:
        cfg=EVAL_PARAMS,
        out_dir=lambda w: f"{R}/eval/{w.method}/seed{w.seed}/step_{w.step}",
    threads: THREADS
    log:
        f"{R}/logs/eval_{{method}}_seed{{seed}}_step{{step}}.log",
    benchmark:
        f"{R}/benchmarks/eval_{{method}}_seed{{seed}}_step{{step}}.tsv",
    resources:
        **RES("evaluate"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} evaluate --marker {input.marker} "
        "--bench-dir {R}/data/bench --out-dir {params.out_dir} 2>&1 | tee {log}"


rule evaluate_all:
    """Every checkpoint (not only the final one) of every run."""
    input:
        expand(f"{R}/eval/{{base}}/step_0/{{b}}.json", base=BASE_EVALS, b=BENCH),
        [f"{R}/eval/{m}/seed{s}/step_{st}/{b}.json" for m in METHODS for s in SEEDS_OF[m] for st in STEPS
         for b in BENCH],
    output:
        touch(f"{R}/eval/.all_checkpoints_done"),
