"""The decode attention C kernel (ibtpo/rollout/decode_kernel.py): equal to softmax attention computed
from its formula, in every layout corner (padding masks, partially filled caches, odd sizes, several
threads), and the HF backend samples the same with it as with the torch matmuls."""

import math
import shutil

import pytest
import torch

from ibtpo.rollout import decode_kernel as dk
from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.hf_backend import HFBackend

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the kernel cannot be built")


def reference(q, Kt, V, n, mask, scale):
    """Per (row, head), from the formula, in float64: sum_j softmax_j(scale <q, k_j>) v_j over the
    attended columns j < n."""
    B, H, D, _ = Kt.shape
    out = torch.zeros(B, H, D, dtype=torch.float64)
    for b in range(B):
        cols = [j for j in range(n) if mask is None or bool(mask[b, j])]
        for h in range(H):
            s = [scale * float(q[b, h, 0].double() @ Kt[b, h, :, j].double()) for j in cols]
            m = max(s)
            w = [math.exp(x - m) for x in s]
            z = sum(w)
            for wj, j in zip(w, cols):
                out[b, h] += wj / z * V[b, h, j].double()
    return out


@needs_cc
@pytest.mark.parametrize("B,H,D,width,n,padded", [(3, 2, 8, 10, 7, True), (5, 3, 17, 23, 23, False),
                                                  (4, 1, 32, 40, 1, False), (6, 4, 5, 9, 6, True)])
def test_kernel_equals_the_formula(B, H, D, width, n, padded):
    g = torch.Generator().manual_seed(B * 100 + n)
    q, Kt, V = (torch.randn(*s, generator=g) for s in ((B, H, 1, D), (B, H, D, width), (B, H, width, D)))
    mask = None
    if padded:  # left padding of a different length per row; the current column is always attended
        mask = torch.ones(B, width + 3, dtype=torch.bool)
        for b in range(B):
            mask[b, :b % (n - 1 if n > 1 else 1)] = False
    att = dk.DecodeAttention("c")
    bias = None if mask is None else torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))[:, None, None, :n]
    got = att(q, Kt, V, n, mask, bias, 0.3)
    want = reference(q, Kt, V, n, mask, 0.3)
    assert got.shape == (B, H, 1, D)
    assert torch.allclose(got[:, :, 0].double(), want, atol=2e-6)
    # the torch path (what mode "torch" and non-CPU tensors use) computes the same
    assert torch.allclose(dk.torch_attention(q, Kt, V, n, bias, 0.3)[:, :, 0].double(), want, atol=2e-6)


@needs_cc
def test_rows_split_over_threads_give_the_same_bits():
    g = torch.Generator().manual_seed(0)
    q, Kt, V = torch.randn(9, 2, 1, 16, generator=g), torch.randn(9, 2, 16, 30, generator=g), torch.randn(9, 2, 30, 16,
                                                                                                       generator=g)
    att = dk.DecodeAttention("c")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = att(q, Kt, V, 21, None, None, 0.5)
        torch.set_num_threads(3)
        three = att(q, Kt, V, 21, None, None, 0.5)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


@needs_cc
def test_backend_samples_the_same_with_the_kernel_and_with_torch(tok, tiny_model):
    """Padded prefixes (the mask), several samples per prefix, per-prefix caps (compaction)."""
    fast = HFBackend(tiny_model, tok.pad_token_id, attention="c")
    slow = HFBackend(tiny_model, tok.pad_token_id, attention="torch")
    prefixes = [tok(f"Compute {a}+{b}*3.\n")["input_ids"] for a, b in ((1, 2), (14, 7), (123, 45))]
    params = SamplingParams(temperature=0.8, max_new_tokens=24, stop_token_ids=(tok.eos_token_id,))
    for seed in (0, 1):
        a = fast.generate(prefixes, 4, params, seed=seed, max_new=[24, 9, 15])
        b = slow.generate(prefixes, 4, params, seed=seed, max_new=[24, 9, 15])
        for xs, ys in zip(a, b):
            for x, y in zip(xs, ys):
                assert x.token_ids == y.token_ids and x.finish_reason == y.finish_reason
                assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-5)
                assert torch.allclose(torch.tensor(x.entropies), torch.tensor(y.entropies), atol=1e-5)


def test_modes_and_a_missing_compiler(monkeypatch, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown mode 'cuda'"):
        dk.kernel("cuda")
    assert dk.kernel("torch") is None
    monkeypatch.setenv("IBTPO_KERNEL_CACHE", str(tmp_path))  # nothing built here yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    dk.kernel.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="no C compiler"):
            dk.kernel("c")
        assert dk.kernel("auto") is None  # falls back to torch, and says so
        assert "C kernel unavailable, using torch matmuls" in capsys.readouterr().err
        att = dk.DecodeAttention("auto")
        q, Kt, V = torch.randn(2, 1, 1, 4), torch.randn(2, 1, 4, 6), torch.randn(2, 1, 6, 4)
        assert torch.allclose(att(q, Kt, V, 5, None, None, 1.0)[:, :, 0].double(), reference(q, Kt, V, 5, None, 1.0),
                              atol=1e-6)
    finally:
        dk.kernel.cache_clear()


@needs_cc
def test_build_is_cached_per_source(monkeypatch, tmp_path):
    monkeypatch.setenv("IBTPO_KERNEL_CACHE", str(tmp_path))
    first = dk.build()
    assert first.parent == tmp_path and first.exists()
    stamp = first.stat().st_mtime_ns
    assert dk.build() == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left behind
