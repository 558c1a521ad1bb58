import json

import pytest

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
                   TrainSettings.of(dict(steps=steps, batch_problems=4, checkpoint_every=every, lr=lr), seed=seed),
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


def test_chunked_update_gives_the_unchunked_gradient(tok, tmp_path):
    """Length-sorted chunks with batch-level denominators reproduce the one-shot minibatch gradient."""
    from ibtpo.logprobs import sequence_logprobs
    from ibtpo.losses import policy_loss
    from ibtpo.trajectories import Trajectory

    rng = np.random.default_rng(0)
    trajs = [Trajectory([5, 6, 7][: 1 + i % 3], list(rng.integers(4, 90, 2 + (5 * i) % 11)), [], None, 0.0, False, i)
             for i in range(12)]
    for t in trajs:
        t.advantages = rng.normal(size=len(t.response_ids))
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        grads = []
        for chunks in (1, 5):
            tr = make_trainer(tok, tmp_path / f"{mode}{chunks}", kl=0.01)
            tr.cfg.update_chunks = chunks
            tr.loss_cfg.aggregation = mode
            tr.loss_cfg.entropy_coef = 0.01
            with torch.no_grad():  # move the policy away from the reference so KL has a gradient
                for p in tr.model.parameters():
                    p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
            R = max(len(t.response_ids) for t in trajs)
            from ibtpo.trainer import _pad

            adv = _pad([t.advantages for t in trajs], R, "cpu")
            ref = tr.frozen_logprobs(tr.ref_model, trajs, R)
            tr.opt.zero_grad()
            parts = tr._accumulate_gradients(np.arange(len(trajs)), trajs, adv, None, ref)
            grads.append(torch.cat([p.grad.flatten() for p in tr.model.parameters()]))
            # reference: one unchunked loss computed directly from the pieces
            tr.opt.zero_grad()
            logp, mask, ent = sequence_logprobs(tr.model, trajs, 1.0, "cpu", with_entropy=True)
            loss, m = policy_loss(logp, logp.detach(), adv[:, :logp.shape[1]], mask, aggregation=mode,
                                  ref_logp=ref[:, :logp.shape[1]], kl_coef=0.01, entropy=ent, entropy_coef=0.01,
                                  norm_len=3)
            assert parts["loss"] == pytest.approx(m["loss"], rel=1e-5, abs=1e-7)
            loss.backward()
            direct = torch.cat([p.grad.flatten() for p in tr.model.parameters()])
            assert torch.allclose(grads[-1], direct, atol=1e-6), mode
        assert torch.allclose(grads[0], grads[1], atol=1e-6), mode


def test_old_logprobs_are_computed_only_for_minibatches_after_the_first(tok, tmp_path):
    """Two minibatches, one pass: the first minibatch is on-policy (ratio 1), so the no-grad pass for
    old log-probs covers only the second; the update equals the one with old log-probs for all."""
    import copy

    from ibtpo.trainer import _pad
    from ibtpo.trajectories import Trajectory

    rng = np.random.default_rng(3)
    trajs = [Trajectory([5, 6, 7][: 1 + i % 3], list(rng.integers(4, 90, 2 + (3 * i) % 7)), [], None, 0.0, False, i)
             for i in range(10)]
    for t in trajs:
        t.advantages = rng.normal(size=len(t.response_ids))
    tr = make_trainer(tok, tmp_path / "a", kl=0.01)
    tr.cfg.minibatches = 2
    ref_tr = copy.deepcopy(tr)

    seen = []
    frozen = tr.frozen_logprobs

    def counting(model, trajs_, R, skip=frozenset()):
        seen.append((model is tr.model, len(trajs_) - len(skip)))
        return frozen(model, trajs_, R, skip)

    tr.frozen_logprobs = counting
    tr.update(trajs)
    assert seen == [(False, 10), (True, 5)]  # reference model: all 10; old log-probs: the second 5

    # reference: old log-probs of every trajectory from the pre-update policy, both minibatches
    R = max(len(t.response_ids) for t in trajs)
    adv = _pad([t.advantages for t in trajs], R, "cpu")
    ref = ref_tr.frozen_logprobs(ref_tr.ref_model, trajs, R)
    old = ref_tr.frozen_logprobs(ref_tr.model, trajs, R)
    ref_tr.model.train()
    for mb in np.array_split(np.arange(10), 2):
        ref_tr.opt.zero_grad(set_to_none=True)
        ref_tr._accumulate_gradients(list(mb), trajs, adv, old, ref)
        torch.nn.utils.clip_grad_norm_(ref_tr.model.parameters(), ref_tr.cfg.grad_clip)
        ref_tr.opt.step()
    for p, q in zip(tr.model.parameters(), ref_tr.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_packed_logprobs_equal_the_padded_forward(tok):
    """The prefix-trie path of sequence_logprobs (shared prompts and response prefixes computed once)
    gives the padded full forward's log-probs, entropies and gradients up to float rounding."""
    import ibtpo.logprobs as L
    from ibtpo.trajectories import Trajectory

    model = build_tiny_llama(tok, n_layer=2, d_model=32, n_head=2, d_mlp=64, max_positions=64, seed=0)
    assert L.packs(model)
    rng = np.random.default_rng(0)
    shared = list(rng.integers(4, 90, 6))
    trajs = [Trajectory([5, 6, 7][: 1 + i % 3], (shared[: i % 4] if i % 2 else []) + list(rng.integers(4, 90, 1 + i)),
                        [], None, 0.0, False, i) for i in range(9)]
    out = []
    for packed in (True, False):
        model.zero_grad()
        orig = L.packs
        L.packs = (lambda m: orig(m)) if packed else (lambda m: False)
        try:
            logp, mask, ent = L.sequence_logprobs(model, trajs, 0.7, "cpu", with_entropy=True)
        finally:
            L.packs = orig
        ((logp * mask).sum() + (ent * mask).sum()).backward()
        out.append((logp * mask, ent * mask, mask, torch.cat([p.grad.flatten() for p in model.parameters()])))
    (a, ea, ma, ga), (b, eb, mb, gb) = out
    assert torch.equal(ma, mb)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ea, eb, atol=1e-5)
    assert torch.allclose(ga, gb, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("spec", [{"name": "chains", "G": 8}, {"name": "ibtree", "B0": 2, "L": 3},
                                  {"name": "random_tree", "B0": 2, "L": 3},
                                  {"name": "eptree", "M": 2, "N": 2, "L": 1, "T": 2}])
def test_deferred_grading_sets_the_same_rewards(tok, spec):
    """The trainer's context grades in the background; settle() sets what synchronous grading sets,
    for every sampler (EPTree splits leaves between rounds, IBTree reads rewards to pick nodes)."""
    from ibtpo.registry import build_sampler
    from ibtpo.rollout.context import RolloutContext

    model = build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, max_positions=64, seed=0)
    params = SamplingParams(max_new_tokens=12, stop_token_ids=(tok.eos_token_id,))
    out = []
    for defer in (False, True):
        ctx = RolloutContext(HFBackend(model, tok.pad_token_id), tok, StartsWithSeven(), params, defer_grading=defer)
        trees = build_sampler(spec).sample(PROBLEMS[:4], ctx, seed=3)
        ctx.settle()
        out.append([t.to_json() for t in trees])
        assert all(r is not None for t in trees for r in t.rewards())
    assert out[0] == out[1]
    if spec["name"] == "eptree":
        assert any(len(t.nodes) > 1 + spec["M"] for t in trees)  # it did split and expand
