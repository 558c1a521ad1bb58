"""Length buckets of the packed forward's attention (ibtpo/logprobs.py: length_buckets): the optimum of
the stated cost, found by brute force over every cut of the length-sorted rows, and the packed forward
gives the padded forward's log-probs and gradients whatever the bucketing."""

import itertools

import numpy as np
import pytest
import torch

from ibtpo.model.tiny import build_tiny_llama


def brute_force(lengths, call_cost):
    """The least sum_b (n_b * W_b**2 + call_cost) over all ways to cut the sorted lengths into runs."""
    L = sorted(lengths)
    best = None
    for k in range(len(L)):
        for cuts in itertools.combinations(range(1, len(L)), k):
            edges = [0, *cuts, len(L)]
            cost = sum((b - a) * L[b - 1] ** 2 + call_cost for a, b in zip(edges, edges[1:]))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed,call_cost", [(0, 0.0), (1, 50.0), (2, 400.0), (3, 1e9), (4, 120.0)])
def test_buckets_are_the_optimum_and_a_partition(seed, call_cost):
    from ibtpo.logprobs import length_buckets

    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 30, 9)]
    lengths[3] = lengths[5]  # ties
    groups = length_buckets(lengths, call_cost)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert [lengths[i] for i in g] == sorted(lengths[i] for i in g)
    widths = [max(lengths[i] for i in g) for g in groups]
    assert widths == sorted(widths)
    cost = sum(len(g) * w ** 2 + call_cost for g, w in zip(groups, widths))
    assert cost == pytest.approx(brute_force(lengths, call_cost))
    if call_cost >= 1e9:
        assert len(groups) == 1


@pytest.mark.parametrize("call_cost", [0.0, 3.5e5, 1e12])
def test_packed_forward_is_exact_for_any_bucketing(tok, monkeypatch, call_cost):
    """0: one bucket per distinct length; 1e12: a single bucket (the unbucketed forward)."""
    import ibtpo.logprobs as L
    from ibtpo.trajectories import Trajectory

    model = build_tiny_llama(tok, n_layer=2, d_model=32, n_head=2, d_mlp=64, max_positions=96, seed=1)
    rng = np.random.default_rng(5)
    shared = [int(x) for x in rng.integers(4, 90, 8)]
    trajs = [Trajectory([5, 6, 7, 8][: 1 + i % 4], shared[: i % 5] + [int(x) for x in rng.integers(4, 90, 1 + 3 * i)],
                        [], None, 0.0, False, i) for i in range(10)]
    monkeypatch.setattr(L, "SDPA_CALL_COST", call_cost)
    out = []
    for packed in (True, False):
        model.zero_grad()
        monkeypatch.setattr(L, "packs", (lambda m: True) if packed else (lambda m: False))
        logp, mask, ent = L.sequence_logprobs(model, trajs, 0.9, "cpu", with_entropy=True)
        ((logp * mask).sum() + (ent * mask).sum()).backward()
        out.append((logp * mask, ent * mask, torch.cat([p.grad.flatten() for p in model.parameters()])))
    (a_lp, a_ent, a_g), (b_lp, b_ent, b_g) = out
    assert torch.allclose(a_lp, b_lp, atol=2e-5) and torch.allclose(a_ent, b_ent, atol=2e-5)
    assert torch.allclose(a_g, b_g, atol=2e-5, rtol=1e-4)
