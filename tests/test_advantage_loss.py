import math

import numpy as np
import pytest
import torch

from baselines.grpo import grpo_advantage, grpo_group_advantage
from ibtpo.losses import aggregate, clipped_surrogate, kl_k3, policy_loss
from ibtpo.rollout.tree import Tree
from ibtpo.trajectories import extract


def chain_tree(rewards, lengths):
    t = Tree({"id": "p", "problem": "q", "answer": "1"}, [5, 6])
    for r, n in zip(rewards, lengths):
        leaf = t.add_node(0, list(range(10, 10 + n)), [-0.5] * n, [1.0] * n)
        t.set_reward(leaf, r)
    return t


def test_grpo_advantage_by_hand():
    # rewards 1,0,0,1 -> mean .5, sample std sqrt(((.5^2)*4)/3) = sqrt(1/3)
    adv = grpo_group_advantage([1, 0, 0, 1])
    s = math.sqrt(1 / 3)
    assert np.allclose(adv, [0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s])
    assert np.allclose(grpo_group_advantage([1, 0, 0, 1], std_ddof=0), [1, -1, -1, 1])
    assert np.all(grpo_group_advantage([1, 1, 1]) == 0)  # std 0 -> 0
    assert np.all(grpo_group_advantage([0, 0]) == 0)


def test_grpo_broadcasts_to_every_token_and_flattens():
    t = chain_tree([1, 0, 0], [3, 2, 4])
    advs = grpo_advantage(t)
    assert [len(a) for a in advs] == [3, 2, 4]
    s = np.std([1, 0, 0], ddof=1)
    assert np.allclose(advs[0], (1 - 1 / 3) / s) and np.allclose(advs[2], (0 - 1 / 3) / s)
    trajs = extract([t], [advs])
    assert [len(x.response_ids) for x in trajs] == [3, 2, 4]
    assert trajs[0].prompt_ids == [5, 6] and trajs[0].reward == 1.0


def test_tree_counts_and_token_accounting():
    t = Tree({"id": "p", "problem": "q", "answer": "1"}, [1, 2, 3])
    a = t.add_node(0, [7, 7], [0, 0], [0, 0])  # shared step, 2 tokens
    l1 = t.add_node(a, [8], [0], [0])
    l2 = t.add_node(a, [9, 9, 9], [0] * 3, [0] * 3)
    l3 = t.add_node(0, [4], [0], [0])
    t.set_reward(l1, 1)
    t.set_reward(l2, 0)
    t.set_reward(l3, 1)
    assert t.p_hat(a) == 0.5 and t.p_hat(0) == pytest.approx(2 / 3) and t.p_hat(l1) == 1.0
    assert t.generated_tokens == 2 + 1 + 3 + 1  # the shared prefix is paid once
    assert t.prefix_ids(l2) == [1, 2, 3, 7, 7, 9, 9, 9]
    with pytest.raises(ValueError):
        t.set_reward(a, 1)


def test_clipped_surrogate_by_hand():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.7]]))
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, -1.0, -2.0, 2.0]])
    loss, low, high = clipped_surrogate(logp, old, adv, eps_low=0.2, eps_high=0.28)
    # ratio 1.5, A=1 -> -min(1.5, 1.28) = -1.28 ; ratio .5, A=-1 -> -min(-.5, -.8) = .8
    # ratio 1.1, A=-2 -> -min(-2.2, -2.2) = 2.2 ; ratio .7, A=2 -> -min(1.4, 1.6) = -1.4
    assert torch.allclose(loss, torch.tensor([[-1.28, 0.8, 2.2, -1.4]]), atol=1e-6)
    assert high.tolist() == [[True, False, False, False]]
    assert low.tolist() == [[False, True, False, False]]


def test_kl_k3_by_hand():
    logp, ref = torch.tensor([0.0, -1.0]), torch.tensor([0.0, -0.5])
    expected = [0.0, math.exp(0.5) - 0.5 - 1]
    assert torch.allclose(kl_k3(logp, ref), torch.tensor(expected))


def test_aggregation_modes_by_hand():
    v = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert aggregate(v, m, "token-mean").item() == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert aggregate(v, m, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(v, m, "seq-mean-token-sum-norm", norm_len=10).item() == pytest.approx((6 / 10 + 4 / 10) / 2)
    with pytest.raises(ValueError, match="allowed"):
        aggregate(v, m, "sum")


def test_policy_loss_gradient_on_ratio_one():
    # at ratio 1 the token-mean surrogate gradient wrt logp_t is -A_t / n_tokens
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0, 3.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, m = policy_loss(logp, logp.detach(), adv, mask)
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, 0.5, 0.0]]))
    assert m["clipfrac_low"] == 0 and m["clipfrac_high"] == 0


def test_entropy_term_is_token_mean_in_every_mode():
    logp = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    ent = torch.tensor([[1.0, 1.0, 1.0], [5.0, 0.0, 0.0]])
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        loss, m = policy_loss(logp, logp, torch.zeros(2, 3), mask, aggregation=mode, entropy=ent, entropy_coef=0.1)
        assert m["entropy"] == pytest.approx(8 / 4)
        assert loss.item() == pytest.approx(-0.1 * 2)
