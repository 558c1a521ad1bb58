"""Baselines that are compositions of shared pieces: clip-higher, the entropy bonus, random tree."""

import numpy as np
import pytest
import torch

from ibtpo.config import load_config
from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.context import RolloutContext
from ibtpo.logprobs import sequence_logprobs
from ibtpo.trajectories import Trajectory

from test_ib import AlwaysRight, StepBackend
from test_trainer import make_trainer


def test_baseline_methods_are_compositions_of_registered_pieces():
    defs = load_config("tiny")["method_defs"]
    assert defs["grpo_cliphigher"]["loss"]["clip_high"] == 0.28 and defs["grpo_cliphigher"]["loss"]["clip_low"] == 0.2
    assert defs["grpo_entropy"]["loss"]["entropy_coef"] == 0.001
    assert defs["randtree"]["sampler"]["name"] == "random_tree"
    assert defs["randtree_ibadv"]["advantage"]["name"] == "ibtpo"


def policy_entropy(model, trajs):
    with torch.no_grad():
        _, mask, ent = sequence_logprobs(model, trajs, 1.0, "cpu", with_entropy=True)
    return ((ent * mask).sum() / mask.sum()).item()


@pytest.mark.parametrize("coef", [0.5])
def test_entropy_bonus_raises_the_policy_entropy_after_a_step(tok, tmp_path, coef):
    rng = np.random.default_rng(0)
    trajs = [Trajectory([5, 6], list(rng.integers(4, 90, 6)), [], np.zeros(6), 0.0, False, i) for i in range(8)]
    after = {}
    for c in (0.0, coef):
        tr = make_trainer(tok, tmp_path / str(c), kl=0.0, lr=1e-2)
        tr.loss_cfg.entropy_coef = c
        before = policy_entropy(tr.model, trajs)
        tr.update(trajs)  # advantages are all zero: only the entropy term can move the policy
        after[c] = policy_entropy(tr.model, trajs)
    assert after[0.0] == pytest.approx(before, abs=1e-6)
    assert after[coef] > before + 1e-4


def test_random_tree_uses_ibtree_rounds_with_random_choice(tok):
    from baselines.random_tree import RandomTreeSampler

    backend = StepBackend(tok)
    ctx = RolloutContext(backend, tok, AlwaysRight(), SamplingParams(max_new_tokens=50))
    problems = [{"id": str(i), "problem": f"Q{i}", "answer": "3"} for i in range(3)]
    trees = RandomTreeSampler(B0=2, L=6, K=1, B=1).sample(problems, ctx, seed=1)
    assert backend.calls == 6
    assert all(len(t.leaves()) == 2 + 5 for t in trees)
    # with every leaf correct, IB selection always branches at the root; random selection does not
    # (forking below the root shares prefixes, so fewer tokens than 7 full responses of 8 tokens)
    assert any(t.generated_tokens < 8 * len(t.leaves()) for t in trees)
    with pytest.raises(ValueError, match="always selects nodes at random"):
        RandomTreeSampler(selection="ib")
