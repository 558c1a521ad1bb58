"""Multi-process training: 2 CPU processes (gloo) launched by ``accelerate launch`` with the
repository's own config files take the same optimizer steps as 1 process on the same global batch.

Why a test sampler: the HF backend draws one random stream per batched call, so a problem's
samples depend on which other problems share the call, and a 2-process run does not reproduce a
1-process run's rollouts (documented in ``ibtpo/trainer.py``). To compare the *updates*, this
file registers ``chains_per_problem``: chains sampled one problem per call, seeded by the problem
id, so every run sees the same trajectories for a problem whatever process samples it. Everything
else is the production trainer: problem sharding, global minibatches (2 per pass, 2 passes, the
second in a shuffled order so the processes' shares are uneven), global loss normalisers (token
mean), KL to a sharded/replicated reference, entropy bonus, summed gradients, gradient clipping,
AdamW, reduced metrics, rank-0 checkpoints, and (fsdp) resume from a sharded optimizer state.

Tolerances (measured on this 2-core CPU, printed with ``-s``): the first optimizer step's
gradient, summed over the 2 processes, matches the 1-process gradient to ``GRAD_RTOL = 1e-5``
of its largest entry (measured 1.5e-8 absolute, max |grad| 0.11: fp32 summation order, for ddp
and fsdp). After 2 training steps (4 AdamW steps) parameters agree to ``TOL = 2e-5`` (measured
2.1e-6 ddp, 1.7e-6 fsdp; AdamW's m/sqrt(v) magnifies rounding where m is near zero). The check can
fail: without the all-reduce (ddp) or with FSDP's default mean instead of a sum the gradient is off
by 6e-2 to 9e-2 (tried), and each process's half of the batch alone moves the parameters 7.7e-2
away from the full-batch result (asserted > 100 * TOL).

Run as a script (``--worker``) it is one process of the 2-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from ibtpo.registry import register_sampler
from ibtpo.rollout.chains import ChainSampler

REPO = Path(__file__).resolve().parents[1]
TOL = 2e-5
GRAD_RTOL = 1e-5
PROBLEMS = [{"id": str(i), "problem": f"{i}+{i % 5}=", "answer": "0"} for i in range(12)]


@register_sampler("chains_per_problem")
@dataclass
class PerProblemChains(ChainSampler):
    """Test-only chains: one backend call per problem, seeded by the problem id (not by ``seed``,
    which depends on the process), so a problem's samples do not depend on where it is drawn."""

    def sample(self, problems, ctx, seed):
        return [ChainSampler.sample(self, [p], ctx, seed=1000 + int(p["id"]))[0] for p in problems]


class ParityReward:
    """A reward near 50% for a random policy (parity of the response's code points), so advantages are
    non-zero and every update moves the parameters."""

    calls = timeouts = 0

    def grade_many(self, pairs):
        return [sum(map(ord, pred)) % 2 == 0 for _, pred in pairs]


def make_trainer(run_dir, steps, dist=None, problems=PROBLEMS, batch=4):
    from ibtpo.model.tiny import build_tiny_llama
    from ibtpo.model.tokenizer import build_char_tokenizer
    from ibtpo.rollout.backend import SamplingParams
    from ibtpo.rollout.hf_backend import HFBackend
    from ibtpo.trainer import Method, Trainer, TrainSettings

    tok = build_char_tokenizer()
    model = build_tiny_llama(tok, n_layer=2, d_model=32, n_head=2, d_mlp=64, max_positions=64, seed=0)
    sampling = SamplingParams(max_new_tokens=8, stop_token_ids=(tok.eos_token_id,))
    method = Method("toy", {"name": "chains_per_problem", "G": 4}, {"name": "grpo"},
                    {"kl_coef": 0.05, "entropy_coef": 0.01})
    settings = TrainSettings.of(dict(steps=steps, batch_problems=batch, checkpoint_every=1, lr=1e-2, ppo_epochs=2,
                                     minibatches=2, update_chunks=5,
                                     num_processes=dist.accelerator.num_processes if dist else 1), seed=3)
    device = str(dist.device) if dist else "cpu"
    return Trainer(model, tok, problems, method, settings, sampling, HFBackend(model, tok.pad_token_id, device),
                   ParityReward(), run_dir, device=device, log=print, dist=dist)


def full_params(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.gen_model.named_parameters()}


def capture_first_gradients(trainer) -> dict[str, torch.Tensor]:
    """Fills the returned dict, at the first optimizer step, with the (full) gradients it applies."""
    out: dict[str, torch.Tensor] = {}

    def hook(opt, args, kwargs):
        if not out:
            for n, p in trainer.model.named_parameters():
                g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
                out[n] = g.detach().clone()

    trainer.opt.register_step_pre_hook(hook)
    return out


def checkpoint_params(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "ckpt" / f"step_{step}" / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def check_first_gradient(got: dict, want: dict, label: str) -> None:
    """The first optimizer step's gradient, summed over processes, is the 1-process gradient."""
    scale = max(float(g.abs().max()) for g in want.values())
    d = max_diff(got, want)
    print(f"\n{label}: first step's gradient: max abs diff {d:.2e}, max |grad| {scale:.2e}")
    assert d <= GRAD_RTOL * scale


def worker(out: Path, steps: int) -> None:
    from ibtpo import distributed

    torch.set_num_threads(1)
    dist = distributed.init("cpu", expected=2)
    np.random.seed(0)  # the shuffled second pass draws from numpy's global state (rank 0's is used)
    tr = make_trainer(out / "run", steps, dist)
    grads = capture_first_gradients(tr)
    tr.fit()
    acc = dist.accelerator
    torch.save({"params": full_params(tr), "grads": grads, "strategy": dist.strategy, "world": acc.num_processes},
               out / f"rank{acc.process_index}_steps{steps}.pt")
    acc.end_training()


def launch(parallel: str, out: Path, steps: int) -> subprocess.CompletedProcess:
    from ibtpo.distributed import free_port

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "pipelines" / "accelerate" / f"{parallel}.yaml"), "--num_processes", "2",
           "--main_process_port", str(free_port()), __file__, "--worker", str(out), str(steps)]
    # PYTHONPATH: the workers import this checkout's ibtpo (not whatever the environment has installed)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path}
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The 1-process reference: parameters after steps 1 and 2, and its metrics."""
    d = tmp_path_factory.mktemp("one")
    np.random.seed(0)
    tr = make_trainer(d, steps=2)
    grads = capture_first_gradients(tr)
    tr.fit()
    rows = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    return {"step1": checkpoint_params(d, 1), "step2": full_params(tr), "grads": grads, "metrics": rows, "trainer": tr}


def compare_metrics(got: list[dict], want: list[dict]) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        for k in ("trajectories", "gen_tokens", "cum_gen_tokens"):
            assert g[k] == w[k], k
        for k in ("reward_mean", "reward_std", "eff_rate", "response_len", "sample_entropy", "loss", "pg_loss",
                  "kl", "entropy", "grad_norm", "clipfrac_low", "clipfrac_high"):
            assert g[k] == pytest.approx(w[k], rel=1e-5, abs=1e-7), k


def test_two_processes_ddp_take_the_one_process_steps(tmp_path, one_process):
    launch("ddp", tmp_path, steps=2)
    ranks = [torch.load(tmp_path / f"rank{r}_steps2.pt") for r in (0, 1)]
    assert [(x["strategy"], x["world"]) for x in ranks] == [("ddp", 2), ("ddp", 2)]
    check_first_gradient(ranks[0]["grads"], one_process["grads"], "ddp")
    assert max_diff(ranks[0]["grads"], ranks[1]["grads"]) == 0.0
    assert max_diff(ranks[0]["params"], ranks[1]["params"]) == 0.0  # replicas stay identical
    d1 = max_diff(checkpoint_params(tmp_path / "run", 1), one_process["step1"])
    d2 = max_diff(ranks[0]["params"], one_process["step2"])
    print(f"\nddp: max |theta_2proc - theta_1proc| after step 1: {d1:.2e}, after step 2: {d2:.2e} (tol {TOL:g})")
    assert d1 <= TOL and d2 <= TOL
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    compare_metrics(rows, one_process["metrics"])  # written once (rank 0), reduced over both processes
    assert rows[0]["trajectories"] == 16
    assert sorted(p.name for p in (tmp_path / "run" / "ckpt").iterdir()) == ["step_1", "step_2"]


def test_each_half_batch_alone_gives_a_different_step(tmp_path, one_process):
    """What each process would compute on its share alone (problems j % 2 == r of step 1) is far
    from the full-batch step, so the equivalence above needs the gradients summed over processes."""
    from ibtpo.trainer import problems_for_step

    idx = problems_for_step(len(PROBLEMS), 4, seed=3, step=0)
    for rank in (0, 1):
        share = [PROBLEMS[i] for i in idx[rank::2]]
        np.random.seed(0)
        tr = make_trainer(tmp_path / f"alone{rank}", steps=1, problems=share, batch=2)
        tr.fit()
        d = max_diff(full_params(tr), one_process["step1"])
        print(f"\nrank {rank} alone: max |theta - theta_1proc| after step 1: {d:.2e}")
        assert d > 100 * TOL


def test_two_processes_fsdp_resume_and_match_one_process(tmp_path, one_process):
    """FSDP2 on CPU: run 1 step, then a second launch resumes from the sharded optimizer state."""
    launch("fsdp", tmp_path, steps=1)
    check_first_gradient(torch.load(tmp_path / "rank0_steps1.pt")["grads"], one_process["grads"], "fsdp")
    r = launch("fsdp", tmp_path, steps=2)
    assert "resumed from" in r.stdout + r.stderr
    ranks = [torch.load(tmp_path / f"rank{r}_steps2.pt") for r in (0, 1)]
    assert [(x["strategy"], x["world"]) for x in ranks] == [("fsdp", 2), ("fsdp", 2)]
    d1 = max_diff(checkpoint_params(tmp_path / "run", 1), one_process["step1"])
    d2 = max_diff(ranks[0]["params"], one_process["step2"])
    print(f"\nfsdp (resumed at step 1): max |theta_2proc - theta_1proc| after step 1: {d1:.2e}, "
          f"after step 2: {d2:.2e} (tol {TOL:g})")
    assert d1 <= TOL and d2 <= TOL
    assert max_diff(ranks[1]["params"], ranks[0]["params"]) == 0.0
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    compare_metrics(rows, one_process["metrics"])
    state = torch.load(tmp_path / "run" / "ckpt" / "step_2" / "trainer_state.pt", weights_only=False)
    assert (state["processes"], state["strategy"]) == (2, "fsdp")


def test_world_size_must_match_the_config():
    from ibtpo import distributed

    with pytest.raises(RuntimeError, match=r"train.num_processes is 2 but this job runs in 1 process"):
        distributed.init("cpu", expected=2)


def test_resume_refuses_a_checkpoint_of_another_world_size(tmp_path, one_process):
    import shutil

    shutil.copytree(one_process["trainer"].run_dir / "ckpt", tmp_path / "ckpt")
    state_file = tmp_path / "ckpt" / "step_2" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=False)
    state["processes"] = 2
    torch.save(state, state_file)
    tr = make_trainer(tmp_path, steps=3)
    with pytest.raises(RuntimeError, match=r"written by a 2-process 'single' run; this run has 1 process"):
        tr.fit()


def test_train_rule_launches_accelerate_when_the_preset_asks(tmp_path):
    (tmp_path / "p.yaml").write_text("extends: smoke\npreset: dist\nmethods: [grpo]\n"
                                      "train: {num_processes: 2, parallel: fsdp}\n")
    target = "results/dist/runs/grpo/seed0/checkpoints/step_4.json"
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(tmp_path), "-n", "-p", "--cores", "2", target, "--configfile", str(tmp_path / "p.yaml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    cmd = next(l for l in r.stdout.splitlines() if " train --method grpo" in l)
    conf = REPO / "pipelines" / "accelerate" / "fsdp.yaml"
    assert f"-m accelerate.commands.launch --config_file {conf} --num_processes 2 --main_process_port $(" in cmd
    assert "free_port()" in cmd and ") -m ibtpo --config results/dist/config.yaml" in cmd


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(Path(sys.argv[2]), int(sys.argv[3]))
