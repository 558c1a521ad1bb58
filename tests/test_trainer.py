import json

import numpy as np
import torch

from ibtpo.model.tiny import build_tiny_llama
from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.hf_backend import HFBackend
from ibtpo.trainer import Method, Trainer, TrainSettings, problems_for_step


class StartsWithSeven:
    """A trivially learnable reward: the response must start with '7'."""

    def grade_many(self, pairs):
        return [pred.startswith("7") for _, pred in pairs]


PROBLEMS = [{"id": str(i), "problem": f"Q{i}", "answer": "7"} for i in range(8)]


def make_trainer(tok, run_dir, steps=30, seed=0, lr=1e-2, kl=0.0, every=10):
    model = build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, max_positions=64, seed=0)
    sampling = SamplingParams(max_new_tokens=3, stop_token_ids=(tok.eos_token_id,))
    return Trainer(model, tok, PROBLEMS, Method("toy", {"name": "chains", "G": 8}, {"name": "grpo"},
                                                {"kl_coef": kl}),
                   TrainSettings(steps=steps, batch_problems=4, checkpoint_every=every, lr=lr, seed=seed),
                   sampling, HFBackend(model, tok.pad_token_id), StartsWithSeven(), run_dir, log=lambda *_: None)


def test_trainer_improves_reward_on_a_trivially_learnable_toy(tok, tmp_path):
    tr = make_trainer(tok, tmp_path, steps=30, kl=0.001)
    tr.fit()
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    first, last = np.mean([r["reward_mean"] for r in rows[:5]]), np.mean([r["reward_mean"] for r in rows[-5:]])
    assert first < 0.2 and last > 0.6, (first, last)
    for key in ("reward_std", "eff_rate", "sample_entropy", "kl", "clipfrac_low", "clipfrac_high",
                "response_len", "gen_tokens", "cum_gen_tokens", "time_step"):
        assert key in rows[-1]
    assert rows[-1]["cum_gen_tokens"] == sum(r["gen_tokens"] for r in rows)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step_10", "step_20", "step_30"]


def test_resume_reproduces_the_uninterrupted_run(tok, tmp_path):
    full = make_trainer(tok, tmp_path / "a", steps=6, every=3, kl=0.001)
    full.fit()
    part = make_trainer(tok, tmp_path / "b", steps=3, every=3, kl=0.001)
    part.fit()  # "killed" after its first checkpoint
    resumed = make_trainer(tok, tmp_path / "b", steps=6, every=3, kl=0.001)
    resumed.fit()
    assert resumed.step == 6
    for (n, p), (_, q) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(p, q), n
    a = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["reward_mean"] for r in a] == [r["reward_mean"] for r in b]


def test_data_order_covers_each_epoch_once():
    seen = [i for s in range(5) for i in problems_for_step(10, 4, seed=1, step=s)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert problems_for_step(10, 4, 1, 3) == problems_for_step(10, 4, 1, 3)
