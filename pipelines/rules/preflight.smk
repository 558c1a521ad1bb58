rule preflight:
    """Before a long GPU run: policy, reference model, optimizer and one batch at the longest prompt
    + rollout.max_new_tokens; two update steps and one generation at that size (the worst case over
    the preset's methods). Fails early, with the memory figures and the config keys to change, when
    it does not fit. `snakemake <results>/<preset>/preflight.json` runs it; see ibtpo/jobs/preflight.py."""
    input:
        refused=refused_when_evaluate_only("preflight", "preflight checks a training run") if EVAL_ONLY else [],
        base=[BASE] if BUILD_BASE else [],
        train=f"{R}/data/train.jsonl",
    output:
        f"{R}/preflight.json",
    params:
        cfg=section("device", "policy", "rollout", "train", "methods", "method_defs", "prompt_template"),
    threads: THREADS
    log:
        f"{R}/logs/preflight.log",
    benchmark:
        f"{R}/benchmarks/preflight.tsv",
    resources:
        **RES("preflight"),
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} preflight --base {BASE} "
        "--train-data {input.train} --out {output} 2>&1 | tee {log}"
