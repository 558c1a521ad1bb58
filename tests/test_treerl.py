"""TreeRL / EPTree: values on a hand-built tree (expected numbers worked out by hand from the
formulas in baselines/treerl.py), fork-selection masks, node splitting, leaf counts and batching."""

import math

import numpy as np
import pytest

from baselines.treerl import EPTreeSampler, fork_mask, select_forks, treerl_advantage, treerl_node_values
from ibtpo.registry import ADVANTAGES, SAMPLERS, load_plugins
from ibtpo.rollout.backend import Completion, SamplingParams
from ibtpo.rollout.context import RolloutContext
from ibtpo.rollout.tree import Tree

from test_ib import AlwaysRight

PROB = {"id": "p", "problem": "q", "answer": "1"}


def hand_tree():
    # root -> a (2 tok), b (leaf, 3 tok, r=1); a -> a1 (leaf, 1 tok, r=1), a2 (leaf, 2 tok, r=0, truncated)
    t = Tree(PROB, [1])
    a = t.add_node(0, [5, 5], [-1.0] * 2, [0.0] * 2)
    b = t.add_node(0, [6, 6, 6], [-1.0] * 3, [0.0] * 3)
    a1 = t.add_node(a, [7], [-1.0], [0.0])
    a2 = t.add_node(a, [8, 8], [-1.0] * 2, [0.0] * 2)
    t.set_reward(b, 1, "stop")
    t.set_reward(a1, 1, "stop")
    t.set_reward(a2, 0, "length")
    return t, a, b, a1, a2


def test_tree_subtree_and_leaves_under():
    t, a, b, a1, a2 = hand_tree()
    assert t.subtree(a) == [a, a1, a2] and t.subtree(b) == [b] and t.subtree(0) == [0, a, b, a1, a2]
    assert t.leaves_under() == {0: [a1, a2, b], a: [a1, a2], a1: [a1], a2: [a2], b: [b]}


def test_treerl_paper_values_by_hand():
    t, a, b, a1, a2 = hand_tree()
    v = treerl_node_values(t, "paper")
    # V: root 2/3, a 1/2, b 1, a1 1, a2 0
    assert v[0]["V"] == pytest.approx(2 / 3)
    assert v[a]["V"] == pytest.approx(0.5)
    # R(s) = (V(s) - V(root) + V(s) - V(parent)) / sqrt(|leaves(s)|)
    assert v[a]["GA"] == pytest.approx(-1 / 6)
    assert v[a]["LA"] == pytest.approx(-1 / 6)
    assert v[a]["R"] == pytest.approx((-1 / 3) / math.sqrt(2))
    assert v[b]["R"] == pytest.approx(2 / 3)
    assert v[a1]["GA"] == pytest.approx(1 / 3)
    assert v[a1]["LA"] == pytest.approx(1 / 2)
    assert v[a1]["R"] == pytest.approx(5 / 6)
    assert v[a2]["R"] == pytest.approx(-7 / 6)
    # per-token, leaves in id order b, a1, a2; the paper variant ignores truncation
    assert t.leaves() == [b, a1, a2]
    adv = treerl_advantage(t, "paper")
    assert np.allclose(adv[0], [2 / 3] * 3)
    assert np.allclose(adv[1], [-1 / 3 / math.sqrt(2)] * 2 + [5 / 6])
    assert np.allclose(adv[2], [-1 / 3 / math.sqrt(2)] * 2 + [-7 / 6] * 2)


def test_treerl_code_values_by_hand():
    t, a, b, a1, a2 = hand_tree()
    v = treerl_node_values(t, "code")
    # leave-one-out: b: 1 - (1+0)/2 = .5; a1: 1 - (1+0)/2 = .5; a2: 0 - (1+1)/2 = -1
    assert v[b]["V"] == pytest.approx(0.5)
    assert v[a1]["V"] == pytest.approx(0.5)
    assert v[a2]["V"] == pytest.approx(-1.0)
    assert v[a]["V"] == pytest.approx(-0.25)
    assert v[0]["V"] == pytest.approx(0.0)
    # W = V / sqrt(n): root 0, a -.25/sqrt2, b .5, a1 .5, a2 -1; R = (W - W_root) + (W - W_parent)
    wa = -0.25 / math.sqrt(2)
    assert v[a]["R"] == pytest.approx(2 * wa)
    assert v[b]["R"] == pytest.approx(1.0)
    assert v[a1]["GA"] == pytest.approx(0.5)
    assert v[a1]["LA"] == pytest.approx(0.5 - wa)
    assert v[a1]["R"] == pytest.approx(0.5 + 0.5 - wa)
    assert v[a2]["R"] == pytest.approx(-1 + (-1 - wa))
    adv = treerl_advantage(t, "code")
    assert np.allclose(adv[0], [1.0] * 3)
    assert np.allclose(adv[1], [2 * wa] * 2 + [1 - wa])
    assert np.allclose(adv[2], [-1.0] * 4)  # truncated response: -1 on every token
    with pytest.raises(ValueError):
        treerl_node_values(t, "nope")


def test_registered():
    load_plugins()
    assert ADVANTAGES["treerl"] is treerl_advantage
    assert SAMPLERS["eptree"] is EPTreeSampler
    assert EPTreeSampler().G == 12  # (4, 2, 1, 1)


def text_tree(tok, texts_and_parents, prompt="Q\n"):
    t = Tree(PROB, tok(prompt, add_special_tokens=False)["input_ids"], prompt)
    ids = []
    for text, parent, lps in texts_and_parents:
        tk = tok(text, add_special_tokens=False)["input_ids"]
        ids.append(t.add_node(parent if parent == 0 else ids[parent - 1], tk, lps, [0.0] * len(tk), text))
    return t, ids


def test_fork_masks(tok):
    dec = lambda x: tok.decode(x, skip_special_tokens=True)  # noqa: E731
    s1 = "ab The Answer is 5"  # 'r' of "Answer" is index 12
    s2 = "xyz"
    s3 = "w an"  # "ans" + "wer" across a node boundary
    s4 = "swer 7"
    lp1 = [-0.1] * len(s1)
    lp1[0], lp1[14], lp1[5] = -9.0, -8.0, -3.0  # the two lowest are excluded (first token, after answer)
    t, (n1, n2, n3, n4, n5) = text_tree(tok, [(s1, 0, lp1), (s2, 1, [-5.0] * 3), ("pqrs", 0, [-0.2] * 4),
                                              (s3, 0, [-0.3] * 4), (s4, 4, [-0.3] * 6)])
    m1 = fork_mask(t, n1, dec)
    assert m1 == [False] + [True] * 12 + [False] * (len(s1) - 13)  # first token, then after the 'r'
    assert fork_mask(t, n2, dec) == [False, False, False]  # below a node already past "answer"
    assert fork_mask(t, n3, dec) == [False, True, True, True]  # no stop word: only the first token
    assert fork_mask(t, n4, dec) == [False, True, True, True]
    assert fork_mask(t, n5, dec) == [False, True, True, True, False, False]  # "r" at index 3 completes it
    # budget: positions with fewer than 1 token left (max_new - tokens before it) are out
    assert fork_mask(t, n3, dec, budget=3) == [False, True, True, False]
    assert fork_mask(t, n2, dec, budget=100) == [False] * 3
    # top-2 by -logprob: n2's -5 tokens and position 0 / 14 of n1 are excluded -> (n1, 5), then -0.3s of n4/n5
    rng = np.random.default_rng(0)
    picks = select_forks(t, 2, dec, rng)
    assert picks[0] == (n1, 5)
    assert picks[1] in {(n4, 1), (n4, 2), (n4, 3), (n5, 1), (n5, 2), (n5, 3)}
    assert select_forks(t, 1, dec, rng, within=n3)[0] in {(n3, 1), (n3, 2), (n3, 3)}
    assert len(select_forks(t, 10, dec, rng, within=n3)) == 3


def test_split_node_keeps_counts_and_paths(tok):
    dec = lambda x: tok.decode(x, skip_special_tokens=True)  # noqa: E731
    t, (x, y, z) = text_tree(tok, [("hello world", 0, [-0.5] * 11), ("abc", 1, [-1.0] * 3),
                                    ("defg", 1, [-1.5] * 4)])
    w = t.add_node(0, tok("qq", add_special_tokens=False)["input_ids"], [-0.1] * 2, [0.0] * 2, "qq")
    for leaf, r, why in ((y, 1, "stop"), (z, 0, "length"), (w, 1, "stop")):
        t.set_reward(leaf, r, why)

    def snapshot():
        return {t.nodes[l].token_ids[-1]: (t.prefix_ids(l), "".join(t.nodes[n].text for n in t.path(l)),
                                           [lp for n in t.path(l) for lp in t.nodes[n].logprobs],
                                           t.nodes[l].reward, t.nodes[l].finish_reason) for l in t.leaves()}

    before = snapshot()
    c = t.split_node(x, 5, dec)  # internal node
    assert t.nodes[x].text == "hello" and t.nodes[c].text == " world"
    assert t.nodes[x].children == [c] and sorted(t.nodes[c].children) == [y, z]
    assert t.nodes[y].parent == c and t.nodes[z].parent == c
    assert (t.nodes[c].n_leaves, t.nodes[c].n_correct) == (2, 1.0)
    assert (t.nodes[x].n_leaves, t.nodes[x].n_correct) == (2, 1.0)
    d = t.split_node(z, 1, dec)  # a leaf: reward and finish reason move to the tail
    assert t.nodes[z].reward is None and not t.nodes[z].is_leaf
    assert t.nodes[d].reward == 0.0 and t.nodes[d].finish_reason == "length"
    assert (t.nodes[z].n_leaves, t.nodes[d].n_leaves) == (1, 1)
    assert snapshot() == before
    assert (t.root.n_leaves, t.root.n_correct) == (3, 2.0)
    assert t.generated_tokens == 11 + 3 + 4 + 2
    with pytest.raises(ValueError):
        t.split_node(y, 0, dec)


class CharBackend:
    """Continues a fixed response one char per token from wherever the prefix has reached (prompt
    "Q<i>\\n"); the log-prob of the token at response position k is ``lp(k)``."""

    def __init__(self, tok, response, lp):
        self.tok, self.lp = tok, lp
        self.full = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        self.calls = 0
        self.n_prefixes = []

    def generate(self, prefixes, n, params, seed=None, max_new=None):
        self.calls += 1
        self.n_prefixes.append(len(prefixes))
        out = []
        for i, p in enumerate(prefixes):
            done = len(self.tok.decode(p, skip_special_tokens=True).split("\n", 1)[1])
            cap = min(params.max_new_tokens, max_new[i]) if max_new else params.max_new_tokens
            ids = self.full[done:done + cap]
            lps = [self.lp(done + k) for k in range(len(ids))]
            reason = "stop" if ids and ids[-1] == self.tok.eos_token_id else "length"
            out.append([Completion(list(ids), lps, [0.5] * len(ids), reason) for _ in range(n)])
        return out


@pytest.mark.parametrize("M,N,L,T", [(4, 2, 1, 1), (2, 2, 2, 2), (3, 1, 3, 1), (1, 3, 0, 2)])
def test_eptree_leaf_count_and_one_call_per_iteration(tok, M, N, L, T):
    backend = CharBackend(tok, "abcdefghijkl", lambda k: -0.1 * ((k * 7) % 5 + 1))
    ctx = RolloutContext(backend, tok, AlwaysRight(), SamplingParams(max_new_tokens=50))
    problems = [{"id": str(i), "problem": f"Q{i}", "answer": "3"} for i in range(3)]
    sampler = EPTreeSampler(M, N, L, T)
    trees = sampler.sample(problems, ctx, seed=0)
    assert backend.calls == 1 + L  # the initial chains, then one call per iteration for all trees
    assert backend.n_prefixes == [3] + [3 * M * N] * L
    for t in trees:
        assert len(t.leaves()) == M * (1 + L * N * T) == sampler.G
        assert all(len(t.prefix_ids(l)) - len(t.prompt_ids) == 13 for l in t.leaves())  # full response each
        assert all(t.nodes[l].reward == 1.0 for l in t.leaves())
        assert t.root.n_leaves == sampler.G
        assert len(t.root.children) == M
        assert t.generated_tokens < 13 * len(t.leaves()) or L == 0  # forks pay only their new tokens


def test_eptree_forks_follow_logprob_and_respect_answer(tok):
    # the lowest log-probs sit after "answer" (excluded) and at position 0 (excluded);
    # among the allowed ones, positions 2 and 4 are the lowest
    resp = "xyzw the answer 42"
    r_at = resp.index("answer") + 5
    lps = {0: -20.0, 2: -5.0, 4: -4.0, r_at + 2: -30.0, r_at + 3: -25.0}
    backend = CharBackend(tok, resp, lambda k: lps.get(k, -0.01))
    ctx = RolloutContext(backend, tok, AlwaysRight(), SamplingParams(max_new_tokens=64))
    trees = EPTreeSampler(M=1, N=2, L=1, T=1).sample([{"id": "0", "problem": "Q0", "answer": "4"}], ctx, seed=0)
    t = trees[0]
    assert len(t.leaves()) == 3
    # the first chain was split at response positions 2 and 4: node spans [0,2), [2,4), [4,end)
    chain = t.root.children[0]
    assert len(t.nodes[chain].token_ids) == 2
    mid = [c for c in t.nodes[chain].children if len(t.nodes[c].children) > 0]
    assert len(mid) == 1 and len(t.nodes[mid[0]].token_ids) == 2
    # the budget is respected when forks are deep: a short budget truncates the chain and forks are
    # only taken where at least one token is left
    ctx2 = RolloutContext(CharBackend(tok, resp, lambda k: -0.1), tok, AlwaysRight(), SamplingParams(max_new_tokens=6))
    t2 = EPTreeSampler(M=2, N=3, L=1, T=1).sample([{"id": "0", "problem": "Q0", "answer": "4"}], ctx2, seed=1)[0]
    assert all(len(t2.prefix_ids(l)) - len(t2.prompt_ids) <= 6 for l in t2.leaves())
    assert len(t2.leaves()) == 2 * (1 + 3)
