"""The SLURM profile (pipelines/profiles/slurm) against a real one-node SLURM on this machine.

The cluster test needs root and slurm-wlm + munge (installed with apt when missing): it starts the
cluster with scripts/slurm/local_cluster.sh (unless one is already up), runs the smoke preset
through the profile under a hard `timeout -k`, requeues a running training job after its first
checkpoint (what SLURM does on preemption) and checks that the job resumed from that checkpoint,
that every job went through SLURM with the profile's resources, and that table 1 is complete. It
stops the daemons it started. The other tests check the preset `resources:` section and that
Snakemake accepts the profile's options (they are plugin options: a misspelt one fails here).
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ibtpo.config import ConfigError, check_resource_rules, checkpoint_steps, load_config, rule_resources

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "pipelines" / "profiles" / "slurm"
CLUSTER = REPO / "scripts" / "slurm" / "local_cluster.sh"
SYS_CONF = Path("/etc/slurm/slurm.conf")
RUN_LIMIT_S = 600  # hard limit of the smoke run under SLURM (`timeout -k`)
HAVE_PLUGIN = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None
NO_PLUGIN = ("snakemake-executor-plugin-slurm is not installed (scripts/setup.sh installs the 'slurm' "
             "extra unless IBTPO_EXTRAS leaves it out)")


def profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


# --- the preset's resources section -----------------------------------------------------------

def test_rule_resources_merge_default_and_rule_entries():
    cfg = load_config("smoke", overrides={"resources": {
        "default": {"mem_mb": 2000, "runtime": "36h", "cpus_per_task": 2},
        "train": {"mem_mb": 3000, "gpu": 0}}})
    assert rule_resources(cfg, "train") == {"mem_mb": 3000, "runtime": "36h", "cpus_per_task": 2, "gpu": 0}
    assert rule_resources(cfg, "make_data") == {"mem_mb": 2000, "runtime": "36h", "cpus_per_task": 2}
    assert rule_resources(load_config("smoke"), "train") == {}


@pytest.mark.parametrize("bad, key", [
    ({"train": {"gpus": 1}}, "resources.train"),        # the plugin's key is 'gpu'
    ({"train": {"runtime": "1d12h"}}, "resources.train.runtime"),  # Snakemake reads one number + unit
    ({"train": {"mem_mb": 0}}, "resources.train.mem_mb"),
    ({"Train": {}}, "resources"),
])
def test_bad_resources_name_the_key(bad, key):
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides={"resources": bad})
    assert f"  {key}:" in str(e.value)


def test_train_gpus_must_cover_the_processes_on_cuda():
    over = {"device": "cuda", "train": {"num_processes": 4, "batch_problems": 8}}
    with pytest.raises(ConfigError, match=r"resources\.train\.gpu: 2 GPU\(s\) for train\.num_processes = 4"):
        load_config("smoke", overrides={**over, "resources": {"train": {"gpu": 2}}})
    cfg = load_config("smoke", overrides={**over, "resources": {"default": {"gpu": 1}, "train": {"gpu": 4}}})
    assert rule_resources(cfg, "train")["gpu"] == 4 and rule_resources(cfg, "evaluate")["gpu"] == 1


def test_resource_keys_must_name_rules():
    cfg = load_config("smoke", overrides={"resources": {"trian": {"gpu": 1}}})
    with pytest.raises(ConfigError, match=r"unknown rule\(s\) \['trian'\]"):
        check_resource_rules(cfg, ["train", "evaluate"])
    check_resource_rules(load_config("smoke", overrides={"resources": {"default": {}, "train": {}}}), ["train"])


# --- the profile ---------------------------------------------------------------------------------

def test_profile_has_the_preemption_and_status_settings():
    p = profile()
    assert p["executor"] == "slurm"
    assert p["slurm-status-command"] == "squeue"  # sacct exits 1 without slurmdbd
    assert p["slurm-requeue"] is True and p["restart-times"] >= 1 and p["rerun-incomplete"] is True
    assert "set-resources" not in p  # it would override the preset's per-rule resources


@pytest.mark.skipif(not HAVE_PLUGIN, reason=NO_PLUGIN)
def test_snakemake_accepts_the_profile(tmp_path):
    """Every key of the profile is a real option of snakemake 9 + the plugin (a dry run parses them)."""
    (tmp_path / "results").mkdir()
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                        "--directory", str(tmp_path), "--profile", str(PROFILE), "-n", "results/table1.csv",
                        "--config", "preset=smoke"], capture_output=True, text=True, timeout=300, cwd=REPO)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert re.search(r"^train\s+\d+$", out, re.M), out[-3000:]


# --- a real SLURM --------------------------------------------------------------------------------

def _cluster_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (munged runs as the munge user, slurmctld/slurmd as root)"
    if not HAVE_PLUGIN:
        return NO_PLUGIN
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "slurm-wlm is not installed and there is no apt-get to install it"
    # a dangling link is a stopped local cluster's; an existing file must be one local_cluster.sh wrote
    if SYS_CONF.exists() and "written by scripts/slurm/local_cluster.sh" not in SYS_CONF.read_text(errors="replace"):
        return f"{SYS_CONF} belongs to another SLURM setup; local_cluster.sh does not replace it"
    return None


def _sh(*args, timeout=60, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = _cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        r = _sh("bash", str(CLUSTER), "install", timeout=600, check=False)
        if r.returncode:
            pytest.skip(f"apt-get could not install slurm-wlm/munge: {(r.stdout + r.stderr)[-800:]}")
    already_up = _sh("bash", str(CLUSTER), "status", check=False).returncode == 0
    t0 = time.time()
    _sh("bash", str(CLUSTER), "start", timeout=180)
    print(f"[slurm] cluster {'was already up' if already_up else f'up in {time.time() - t0:.1f} s'}")
    try:
        yield
    finally:
        if not already_up:  # stop exactly what this test started
            _sh("bash", str(CLUSTER), "stop", timeout=120, check=False)


def _squeue(name: str) -> list[tuple[str, str, str]]:
    """(job id, state, comment) of every job named `name`, finished ones included (MinJobAge)."""
    out = _sh("squeue", "--states=all", "--noheader", "--name", name, "--format=%i|%T|%k").stdout
    return [tuple(line.split("|", 2)) for line in out.splitlines() if line.strip()]


def _job_fields(job_id: str) -> dict[str, str]:
    """`scontrol show job` as {field: value} (values without spaces, which is all this test reads)."""
    return dict(re.findall(r"(?:^|\s)(\w+)=(\S*)", _sh("scontrol", "show", "job", job_id).stdout))


def _job_field(job_id: str, field: str) -> str:
    fields = _job_fields(job_id)
    assert field in fields, f"no {field} in scontrol show job {job_id}: {fields}"
    return fields[field]


@pytest.mark.slow
def test_smoke_preset_through_the_slurm_profile_with_a_requeued_training_job(slurm_cluster, tmp_path):
    cfg = load_config("smoke")
    methods, seeds, steps = cfg["methods"], cfg["seeds"], checkpoint_steps(cfg)
    assert len(steps) >= 2, "the requeue check needs a checkpoint before the last step"
    (tmp_path / "results").mkdir()
    log_path = tmp_path / "snakemake.log"
    cmd = ["timeout", "-k", "10", str(RUN_LIMIT_S), sys.executable, "-m", "snakemake",
           "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--profile", str(PROFILE), "results/table1.csv", "--config", "preset=smoke",
           # a one-node test cluster: no account to guess, quick status polls, no shared-FS lag
           "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
           "--seconds-between-status-checks", "2", "--latency-wait", "5"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run_id = None
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        try:
            # preemption: requeue the first training job once its first checkpoint is on disk
            method, seed = methods[0], seeds[0]
            run = tmp_path / "results" / "smoke" / "runs" / method / f"seed{seed}" / "ckpt"
            comment = f"rule_train_wildcards_{method}_{seed}"
            requeued = None
            while proc.poll() is None and requeued is None:
                if run_id is None:
                    m = re.search(r"SLURM run ID: (\S+)", log_path.read_text())
                    run_id = m.group(1) if m else None
                if run_id and (run / f"step_{steps[0]}").is_dir():
                    assert not (run / f"step_{steps[-1]}").exists(), "training finished before it could be requeued"
                    running = [j for j, state, c in _squeue(run_id) if c == comment and state == "RUNNING"]
                    assert running, f"checkpoint step_{steps[0]} written but no RUNNING job '{comment}'"
                    requeued = running[0]
                    _sh("scontrol", "requeue", requeued)  # what SLURM does to a preempted --requeue job
                    # the job is COMPLETING until its processes are gone, then PENDING with
                    # Reason=BeginTime for ~2 min before it may start again: here it starts at once
                    for _ in range(300):
                        job = _job_fields(requeued)
                        if job["Restarts"] != "0" and job["JobState"] == "PENDING" and job["Reason"] == "BeginTime":
                            _sh("scontrol", "update", f"jobid={requeued}", "StartTime=now", check=False)
                        elif job["Restarts"] != "0" and job["JobState"] in ("PENDING", "RUNNING", "COMPLETED"):
                            break
                        time.sleep(0.2)
                time.sleep(0.1)
            rc = proc.wait(timeout=RUN_LIMIT_S + 30)
        finally:
            if proc.poll() is None:
                proc.kill()
            if run_id:  # leave nothing of this run queued on the cluster
                _sh("scancel", "--name", run_id, check=False)
    wall = time.time() - t0
    out = log_path.read_text()
    assert rc == 0, f"snakemake exited {rc} after {wall:.0f} s (124: killed by timeout):\n{out[-5000:]}"
    print(f"[slurm] smoke preset under SLURM: {wall:.0f} s")

    # the table: base + every method, avg@k in [0, 100]
    df = pd.read_csv(tmp_path / "results" / "table1.csv")
    rows = df.set_index("method")
    for name in ["base", *methods]:
        assert name in rows.index, f"table1 has no row {name!r}: {list(df['method'])}"
        for b in cfg["evaluation"]["benchmarks"] + ["Avg"]:
            assert 0 <= rows.loc[name, b] <= 100, (name, b)

    # every job went through SLURM: sbatch ids in the log = this run's jobs in squeue, all COMPLETED
    jobs = _squeue(run_id)
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", out))
    assert submitted and submitted == {j for j, _, _ in jobs}, (submitted, jobs)
    assert all(state == "COMPLETED" for _, state, _ in jobs), jobs
    per_rule = {}
    for _, _, c in jobs:
        rule = re.match(r"rule_(.+?)(_wildcards_.*)?$", c).group(1)
        per_rule[rule] = per_rule.get(rule, 0) + 1
    n_runs = len(methods) * len(seeds)
    assert per_rule["train"] == n_runs and per_rule["evaluate"] == n_runs * len(steps), per_rule
    assert per_rule["make_data"] == per_rule["build_base"] == per_rule["evaluate_base"] == 1
    assert "table1" not in per_rule  # a localrule: it only reads small files, no sbatch

    # the profile's resources reached sbatch (smoke has no resources section: default-resources apply)
    default = dict(profile()["default-resources"])
    h, m = divmod(default["runtime"], 60)
    train_job = next(j for j, _, c in jobs if c == comment)
    assert _job_field(train_job, "TimeLimit") == f"{h:02d}:{m:02d}:00"
    assert f"mem={default['mem_mb']}M" in _job_field(train_job, "TRES")
    assert int(_job_field(train_job, "NumCPUs")) == cfg["threads_per_job"]

    # preemption went through the resume path: SLURM reran the same job, which resumed from step_N
    assert requeued == train_job and _job_field(requeued, "Restarts") == "1"
    train_log = (tmp_path / "results" / "smoke" / "logs" / f"train_{method}_seed{seed}.log").read_text()
    assert re.search(rf"resumed from \S+/step_{steps[0]} \(step {steps[0]}\)", train_log), train_log[-2000:]
    slurm_log = tmp_path / ".snakemake" / "slurm_logs" / "rule_train" / f"{method}_{seed}" / f"{requeued}.log"
    assert "slurm-jobstep" in slurm_log.read_text()  # the job ran snakemake's SLURM job step
