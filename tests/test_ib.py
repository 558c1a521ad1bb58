"""IB-Score, the IB-TPO advantage and IBTree on hand-built trees; expected values from the formulas."""

import math

import numpy as np
import pytest

from ibtpo.ib_advantage import ib_node_advantages, ibtpo_advantage
from ibtpo.ib_score import IBParams, cov_eta, ib_score
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
    sib = IBParams(pi_mode="sibling")
    assert ib_score(t, 0, sib) == pytest.approx(6 / 2 * (e1 * e2).sum())  # 0.3375
    assert ib_score(t, 0, sib) == pytest.approx(0.3375)
    assert cov_eta(t, 0, sib) == pytest.approx(np.mean(e1 * e2) - e1.mean() * e2.mean())  # 0.09375
    # node a: eta1 = 1/.5-1.2 = .8, 0-1.2 = -1.2; sibling pi = .75, .25
    assert ib_score(t, a, sib) == pytest.approx(3 * (0.8 * 0.75 - 1.2 * 0.25))
    # length_norm (the default, METHOD.md §1): no renormalisation; raw: exp(sum) = prob**n_tok
    assert ib_score(t, 0) == pytest.approx(3 * (-0.45 * 0.2 + 0.3 * 0.6))
    assert ib_score(t, 0, IBParams(pi_mode="length_norm")) == pytest.approx(3 * (-0.45 * 0.2 + 0.3 * 0.6))
    assert ib_score(t, a) == pytest.approx(3 * (0.8 * 0.3 - 1.2 * 0.1))
    assert ib_score(t, 0, IBParams(pi_mode="raw")) == pytest.approx(3 * (-0.45 * 0.04 + 0.3 * 0.36))
    # beta changes both the offset and the prefactor
    assert ib_score(t, 0, IBParams(beta=1.0, pi_mode="sibling")) == pytest.approx(
        2 / 2 * ((0.75 - 2) * 0.25 + (1.5 - 2) * 0.75))


def test_ib_advantage_by_hand():
    t, a, b, a1, a2 = two_level()
    std = np.std([1, 0, 1], ddof=1)
    expected = {
        a: ((0.5 - 2 / 3) / std, -0.45 * 0.25),
        b: ((1 - 2 / 3) / std, 0.3 * 0.75),
        a1: ((1 - 2 / 3) / std, 0.8 * 0.75),
        a2: ((0 - 2 / 3) / std, -1.2 * 0.25),
    }
    adv = ib_node_advantages(t, lam=0.1, ib=IBParams(beta=5, pi_mode="sibling"))
    for n, (gl, ib) in expected.items():
        assert adv[n]["A_GL"] == pytest.approx(gl)
        assert adv[n]["A_IB"] == pytest.approx(ib)
        assert adv[n]["A"] == pytest.approx(gl + 0.1 * ib)
    # every token of a step gets its A; trajectories in leaf (node id) order b, a1, a2
    assert t.leaves() == [b, a1, a2]
    per_tok = ibtpo_advantage(t, ib={"pi_mode": "sibling"})  # a config mapping works too
    assert [len(x) for x in per_tok] == [2, 4, 4]
    assert np.allclose(per_tok[1], [adv[a]["A"]] * 2 + [adv[a1]["A"]] * 2)
    assert np.allclose(per_tok[0], [adv[b]["A"]] * 2)
    weighted = ibtpo_advantage(t, ib=IBParams(pi_mode="sibling"), shared_prefix_weighting=True)
    assert np.allclose(weighted[1][:2], adv[a]["A"] / math.sqrt(2))


def test_all_correct_tree_gives_minus_pi_over_beta():
    t = Tree({"id": "p", "problem": "q", "answer": "1"}, [1])
    kids = [node(t, 0, p) for p in (0.1, 0.3, 0.6)]
    for k in kids:
        t.set_reward(k, 1)
    adv = ib_node_advantages(t, lam=0.1, ib=IBParams(beta=5))
    pis = np.array([0.1, 0.3, 0.6])  # length_norm: the steps' own confidences (sibling would give the same: sum 1)
    for k, pi in zip(kids, pis):
        assert adv[k]["A_GL"] == 0
        assert adv[k]["A_IB"] == pytest.approx(-pi / 5)


def test_zero_parent_rules():
    t = Tree({"id": "p", "problem": "q", "answer": "1"}, [1])
    x, y = node(t, 0, 0.5), node(t, 0, 0.5)
    t.set_reward(x, 0)
    t.set_reward(y, 0)
    # ratio := 1 -> eta1 = 1 - 1.2 for both; pi = .5 each (length_norm and sibling agree here)
    assert ib_score(t, 0) == pytest.approx(6 * (-0.2 * 0.5))
    # laplace: (0+1)/(1+2) / ((0+1)/(2+2)) = 4/3
    assert ib_score(t, 0, IBParams(zero_parent="laplace")) == pytest.approx(6 * ((4 / 3 - 1.2) * 0.5))


def test_pick_nodes_takes_the_highest_score():
    t, a, *_ = two_level()
    rng = np.random.default_rng(0)
    assert ib_score(t, a) > ib_score(t, 0)  # 0.36 > 0.27 (length_norm)
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

    assert steps("1+2=3\n\n3*4=12\n\nThe answer is \\boxed{12}") == ["1+2=3\n\n", "3*4=12\n\n",
                                                                     "The answer is \\boxed{12}"]
    assert steps("no separator") == ["no separator"]
    assert steps("a\n\nb\n\n") == ["a\n\n", "b\n\n"]  # trailing separator: no empty step
    assert steps("a\n\n\n\nb") == ["a\n\n\n\n", "b"]
    assert steps("The answer is \\boxed{\n\n5}") == ["The answer is \\boxed{\n\n", "5}"]
    assert steps("") == []


def chain(tree, probs, reward):
    """A root child followed by single-child steps with confidences ``probs``; returns the node ids."""
    ids, parent = [], 0
    for p in probs:
        parent = node(tree, parent, p)
        ids.append(parent)
    tree.set_reward(parent, reward)
    return ids


def test_length_norm_picks_a_deep_uncertain_step_not_the_root():
    # root -> 4 chains of 3 steps; chain 0 correct, chains 1-3 wrong; every step has confidence .9
    # except chain 1's second step (.1). p_hat: root 1/4; chain 0 nodes 1; chains 1-3 nodes 0.
    t = Tree({"id": "p", "problem": "q", "answer": "1"}, [1])
    c0 = chain(t, [0.9, 0.9, 0.9], 1)
    c1 = chain(t, [0.9, 0.1, 0.9], 0)
    chain(t, [0.9, 0.9, 0.9], 0)
    chain(t, [0.9, 0.9, 0.9], 0)
    # length_norm, beta 5, offset 1.2:
    #   root: ratios 4, 0, 0, 0 -> eta1 2.8, -1.2, -1.2, -1.2 (mean -0.2); pi .9 each
    #         IB = 6 * mean(eta1 * .9) = 6 * .9 * -0.2 = -1.08
    #   c1[0] (single child c1[1], pi .1): p_hat(parent) = 0 -> ratio := 1, eta1 = -0.2 -> IB = 6 * -0.2 * .1 = -0.12
    #   every other single-child node (child pi .9, ratio 1): IB = 6 * -0.2 * .9 = -1.08
    assert ib_score(t, 0) == pytest.approx(-1.08)
    assert ib_score(t, c1[0]) == pytest.approx(-0.12)
    assert ib_score(t, c0[0]) == pytest.approx(-1.08)
    assert pick_nodes(t, 1, np.random.default_rng(0)) == [c1[0]]
    # sibling: every single-child node's child has pi 1 -> IB = 6 * -0.2 * 1 = -1.2, while the root's four
    # children get pi 1/4 each -> IB = 6 * 0.25 * mean(eta1) = 6 * 0.25 * -0.2 = -0.3: the root always wins
    sib = IBParams(pi_mode="sibling")
    assert ib_score(t, c1[0], sib) == pytest.approx(-1.2)
    assert ib_score(t, 0, sib) == pytest.approx(-0.3)
    assert pick_nodes(t, 1, np.random.default_rng(0), ib=sib) == [0]


class UncertainDeepBackend(StepBackend):
    """Answers the rest of "1\\n\\n2\\n\\n3": the first step's tokens with log-prob -0.05, later ones -2."""

    def generate(self, prefixes, n, params, seed=None, max_new=None):
        outs = super().generate(prefixes, n, params, seed, max_new)
        for p, cs in zip(prefixes, outs):
            done = len(self.tok.decode(p).split("\n", 1)[1])
            for c in cs:
                c.logprobs = [-0.05 if done + j < 3 else -2.0 for j in range(len(c.token_ids))]
        return outs


def test_ibtree_forks_below_the_root_where_deep_steps_are_uncertain(tok):
    problems = [{"id": str(i), "problem": f"Q{i}", "answer": "3"} for i in range(3)]
    ctx = RolloutContext(UncertainDeepBackend(tok), tok, AlwaysRight(), SamplingParams(max_new_tokens=50))
    # every leaf correct: ratio 1 everywhere, IB(node) = -1.2 * mean pi(children). Root children (first
    # step) have pi exp(-.05) = .95 -> -1.14; a first-step node's child (second step) exp(-2) = .135 -> -0.16
    for t in IBTreeSampler(4, 5, 1, 1).sample(problems, ctx, seed=0):
        assert len(t.root.children) == 4  # never forked at the root
        assert len(t.leaves()) == 8
    # the same trees under sibling normalisation fork at the root every round
    for t in IBTreeSampler(4, 5, 1, 1, ib=IBParams(pi_mode="sibling")).sample(problems, ctx, seed=0):
        assert len(t.root.children) == 4 + 4
