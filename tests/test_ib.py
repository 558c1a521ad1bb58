"""IB-Score, the IB-TPO advantage and IBTree on hand-built trees; expected values from the formulas."""

import math

import numpy as np
import pytest

from ibtpo.ib_advantage import ib_node_advantages, ibtpo_advantage
from ibtpo.ib_score import cov_eta, ib_score
from ibtpo.rollout.backend import Completion, SamplingParams
from ibtpo.rollout.context import RolloutContext
from ibtpo.rollout.ibtree import IBTreeSampler, pick_nodes
from ibtpo.rollout.steps import split_points
from ibtpo.rollout.tree import Tree


def node(tree, parent, prob, n_tok=2):
    """A node whose tokens have mean log-prob log(prob)."""
    return tree.add_node(parent, [7] * n_tok, [math.log(prob)] * n_tok, [0.0] * n_tok)


def two_level():
    # root -> a (exp mean lp .2), b (.6, leaf r=1); a -> a1 (.3, r=1), a2 (.1, r=0)
    t = Tree({"id": "p", "problem": "q", "answer": "1"}, [1])
    a, b = node(t, 0, 0.2), node(t, 0, 0.6)
    a1, a2 = node(t, a, 0.3), node(t, a, 0.1)
    for leaf, r in ((a1, 1), (a2, 0), (b, 1)):
        t.set_reward(leaf, r)
    return t, a, b, a1, a2


def test_ib_score_and_cov_by_hand():
    t, a, b, a1, a2 = two_level()
    # root: p(a)=.5, p(b)=1, p(root)=2/3; sibling pi = .25, .75; eta1 = .75-1.2, 1.5-1.2
    e1, e2 = np.array([-0.45, 0.3]), np.array([0.25, 0.75])
    assert ib_score(t, 0) == pytest.approx(6 / 2 * (e1 * e2).sum())  # 0.3375
    assert ib_score(t, 0) == pytest.approx(0.3375)
    assert cov_eta(t, 0) == pytest.approx(np.mean(e1 * e2) - e1.mean() * e2.mean())  # 0.09375
    # node a: eta1 = 1/.5-1.2 = .8, 0-1.2 = -1.2; pi = .75, .25
    assert ib_score(t, a) == pytest.approx(3 * (0.8 * 0.75 - 1.2 * 0.25))
    # length_norm: no renormalisation; raw: exp(sum) = prob**n_tok
    assert ib_score(t, 0, pi_mode="length_norm") == pytest.approx(3 * (-0.45 * 0.2 + 0.3 * 0.6))
    assert ib_score(t, 0, pi_mode="raw") == pytest.approx(3 * (-0.45 * 0.04 + 0.3 * 0.36))
    # beta changes both the offset and the prefactor
    assert ib_score(t, 0, beta=1.0) == pytest.approx(2 / 2 * ((0.75 - 2) * 0.25 + (1.5 - 2) * 0.75))


def test_ib_advantage_by_hand():
    t, a, b, a1, a2 = two_level()
    std = np.std([1, 0, 1], ddof=1)
    expected = {
        a: ((0.5 - 2 / 3) / std, -0.45 * 0.25),
        b: ((1 - 2 / 3) / std, 0.3 * 0.75),
        a1: ((1 - 2 / 3) / std, 0.8 * 0.75),
        a2: ((0 - 2 / 3) / std, -1.2 * 0.25),
    }
    adv = ib_node_advantages(t, beta=5, lam=0.1)
    for n, (gl, ib) in expected.items():
        assert adv[n]["A_GL"] == pytest.approx(gl)
        assert adv[n]["A_IB"] == pytest.approx(ib)
        assert adv[n]["A"] == pytest.approx(gl + 0.1 * ib)
    # every token of a step gets its A; trajectories in leaf (node id) order b, a1, a2
    assert t.leaves() == [b, a1, a2]
    per_tok = ibtpo_advantage(t)
    assert [len(x) for x in per_tok] == [2, 4, 4]
    assert np.allclose(per_tok[1], [adv[a]["A"]] * 2 + [adv[a1]["A"]] * 2)
    assert np.allclose(per_tok[0], [adv[b]["A"]] * 2)
    weighted = ibtpo_advantage(t, shared_prefix_weighting=True)
    assert np.allclose(weighted[1][:2], adv[a]["A"] / math.sqrt(2))


def test_all_correct_tree_gives_minus_pi_over_beta():
    t = Tree({"id": "p", "problem": "q", "answer": "1"}, [1])
    kids = [node(t, 0, p) for p in (0.1, 0.3, 0.6)]
    for k in kids:
        t.set_reward(k, 1)
    adv = ib_node_advantages(t, beta=5, lam=0.1)
    pis = np.array([0.1, 0.3, 0.6]) / 1.0
    for k, pi in zip(kids, pis):
        assert adv[k]["A_GL"] == 0
        assert adv[k]["A_IB"] == pytest.approx(-pi / 5)


def test_zero_parent_rules():
    t = Tree({"id": "p", "problem": "q", "answer": "1"}, [1])
    x, y = node(t, 0, 0.5), node(t, 0, 0.5)
    t.set_reward(x, 0)
    t.set_reward(y, 0)
    # ratio := 1 -> eta1 = 1 - 1.2 for both; pi = .5 each
    assert ib_score(t, 0) == pytest.approx(6 * (-0.2 * 0.5))
    # laplace: (0+1)/(1+2) / ((0+1)/(2+2)) = 4/3
    assert ib_score(t, 0, zero_parent="laplace") == pytest.approx(6 * ((4 / 3 - 1.2) * 0.5))


def test_pick_nodes_takes_the_highest_score():
    t, a, *_ = two_level()
    rng = np.random.default_rng(0)
    assert ib_score(t, a) > ib_score(t, 0)
    assert pick_nodes(t, 1, rng) == [a]
    assert pick_nodes(t, 2, rng) == [a, 0]
    assert sorted(pick_nodes(t, 5, rng, selection="random")) == [0, a]


class StepBackend:
    """Always answers with the remaining part of "1\\n\\n2\\n\\n3" (one char per token)."""

    def __init__(self, tok):
        self.tok = tok
        self.calls = 0

    def generate(self, prefixes, n, params, seed=None, max_new=None):
        self.calls += 1
        out = []
        full = self.tok("1\n\n2\n\n3", add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        for i, p in enumerate(prefixes):
            done = len(self.tok.decode(p).split("\n", 1)[1])  # prompt is "Q<i>\n"
            ids = full[done:]
            cap = min(params.max_new_tokens, max_new[i]) if max_new else params.max_new_tokens
            ids = ids[:cap]
            out.append([Completion(ids, [-0.1] * len(ids), [0.5] * len(ids), "stop") for _ in range(n)])
        return out


class AlwaysRight:
    def grade_many(self, pairs):
        return [True for _ in pairs]


@pytest.mark.parametrize("B0,L,K,B", [(4, 9, 1, 1), (2, 3, 2, 2), (3, 1, 1, 1), (1, 4, 1, 3)])
def test_ibtree_trajectory_count_and_one_call_per_round(tok, B0, L, K, B):
    backend = StepBackend(tok)
    ctx = RolloutContext(backend, tok, AlwaysRight(), SamplingParams(max_new_tokens=50))
    problems = [{"id": str(i), "problem": f"Q{i}", "answer": "3"} for i in range(3)]
    trees = IBTreeSampler(B0, L, K, B).sample(problems, ctx, seed=0)
    assert backend.calls == L  # batched across problems: one backend call per round
    for t in trees:
        assert len(t.leaves()) == B0 + (L - 1) * K * B
        # token accounting: a branch pays only for its new tokens (each leaf path is the full response)
        assert all(len(t.prefix_ids(l)) - len(t.prompt_ids) == 8 for l in t.leaves())
        assert t.generated_tokens == sum(len(n.token_ids) for n in t.nodes[1:])

    # here every leaf is correct, so the root (B0 children) outscores single-child step nodes and
    # IB selection always branches at the root; random selection forks mid-response
    trees = IBTreeSampler(2, 6, 1, 1, selection="random").sample(problems, ctx, seed=1)
    for t in trees:
        assert all(len(t.prefix_ids(l)) - len(t.prompt_ids) == 8 for l in t.leaves())
        assert t.generated_tokens < 8 * len(t.leaves())  # shared prefixes are paid once


def test_step_split_edge_cases():
    def steps(s):
        ends = split_points(list(s))
        return [s[a:b] for a, b in zip([0] + ends[:-1], ends)]

    assert steps("1+2=3\n\n3*4=12\n\nThe answer is \\boxed{12}") == ["1+2=3\n\n", "3*4=12\n\n", "The answer is \\boxed{12}"]
    assert steps("no separator") == ["no separator"]
    assert steps("a\n\nb\n\n") == ["a\n\n", "b\n\n"]  # trailing separator: no empty step
    assert steps("a\n\n\n\nb") == ["a\n\n\n\n", "b"]
    assert steps("The answer is \\boxed{\n\n5}") == ["The answer is \\boxed{\n\n", "5}"]
    assert steps("") == []
