rule train:
    """One (method, seed) run. Checkpoints live under runs/.../ckpt/ (not declared outputs, so a
    failed job keeps them and the rerun resumes); the declared outputs are small marker files."""
    input:
        base=[BASE] if BUILD_BASE else [],
        train=f"{R}/data/train.jsonl",
    output:
        markers=expand(f"{R}/runs/{{{{method}}}}/seed{{{{seed}}}}/checkpoints/step_{{s}}.json", s=STEPS),
    params:
        cfg=lambda w: json.dumps({"method": CFG["method_defs"][w.method], "train": CFG["train"],
                                  "rollout": CFG["rollout"], "prompt_template": CFG["prompt_template"]}, sort_keys=True),
        run_dir=lambda w: f"{R}/runs/{w.method}/seed{w.seed}",
    threads: THREADS
    log:
        f"{R}/logs/train_{{method}}_seed{{seed}}.log",
    shell:
        "{PY} -m ibtpo --config {CONFIG_FILE} --threads {threads} train --method {wildcards.method} "
        "--seed {wildcards.seed} --base {BASE} --train-data {input.train} --run-dir {params.run_dir} "
        "--markers {output.markers} 2>&1 | tee {log}"
