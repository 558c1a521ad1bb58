def train_launcher():
    """How the train job starts: plain Python for one process; for train.num_processes > 1,
    `accelerate launch` with pipelines/accelerate/<train.parallel>.yaml (ddp by default), one
    process per GPU (ibtpo/distributed.py), on a free rendezvous port picked when the job starts."""
    n = CFG["train"]["num_processes"]
    if n == 1:
        return f"{PY} -m ibtpo"
    conf = Path(workflow.main_snakefile).parent / "pipelines" / "accelerate" / f"{CFG['train']['parallel']}.yaml"
    port = f"$({PY} -c 'from ibtpo.distributed import free_port; print(free_port())')"
    return (f"{PY} -m accelerate.commands.launch --config_file {conf} --num_processes {n} "
            f"--main_process_port {port} -m ibtpo")


rule train:
    """One (method, seed) run. Checkpoints live under runs/.../ckpt/ (not declared outputs, so a
    failed job keeps them and the rerun resumes); the declared outputs are small marker files.
    With train.num_processes > 1 the job runs that many processes (GPUs) under accelerate."""
    input:
        base=lambda w: [BASES[base_index(w.seed)]] if BUILD_BASE else [],
        train=f"{R}/data/train.jsonl",
    output:
        markers=expand(f"{R}/runs/{{{{method}}}}/seed{{{{seed}}}}/checkpoints/step_{{s}}.json", s=STEPS),
    params:
        cfg=lambda w: json.dumps({"method": CFG["method_defs"][w.method], "train": CFG["train"],
                                  "rollout": CFG["rollout"], "prompt_template": CFG["prompt_template"],
                                  "answer": CFG["evaluation"]["answer"]}, sort_keys=True),  # the reward's rule
        run_dir=lambda w: f"{R}/runs/{w.method}/seed{w.seed}",
        base=lambda w: BASES[base_index(w.seed)],
        launcher=train_launcher(),
    threads: THREADS
    log:
        f"{R}/logs/train_{{method}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_{{method}}_seed{{seed}}.tsv",
    resources:
        **RES("train"),
    shell:
        "{params.launcher} --config {CONFIG_FILE} --threads {threads} train --method {wildcards.method} "
        "--seed {wildcards.seed} --base {params.base} --train-data {input.train} --run-dir {params.run_dir} "
        "--markers {output.markers} 2>&1 | tee {log}"
