rule build_base:
    """Tokenizer + tiny Llama + supervised warm-up (only when policy.base is 'build')."""
    input:
        sft=f"{R}/data/sft.jsonl",
    output:
        directory(f"{R}/base"),
    params:
        cfg=section("policy", "prompt_template"),
    threads: CFG["policy"].get("sft", {}).get("threads", THREADS)
    log:
        f"{R}/logs/build_base.log",
    benchmark:
        f"{R}/benchmarks/build_base.tsv",
    resources:
        **RES("build_base"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} build-base "
        "--sft-data {input.sft} --out {output} 2>&1 | tee {log}"


rule build_base_extra:
    """policy.base_models > 1: base model i (SFT seed policy.sft.seed + i), for the base-model term."""
    input:
        sft=f"{R}/data/sft.jsonl",
    output:
        directory(f"{R}/base_{{i}}"),
    wildcard_constraints:
        i=r"[1-9]\d*",
    params:
        cfg=section("policy", "prompt_template"),
    threads: CFG["policy"].get("sft", {}).get("threads", THREADS)
    log:
        f"{R}/logs/build_base_{{i}}.log",
    benchmark:
        f"{R}/benchmarks/build_base_{{i}}.tsv",
    resources:
        **RES("build_base"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} build-base --index {wildcards.i} "
        "--sft-data {input.sft} --out {output} 2>&1 | tee {log}"
