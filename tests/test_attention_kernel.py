"""The decode attention C kernel (ibtpo/rollout/decode/attention_kernel.py) and the torch attention of the
per-row path: equal to softmax attention computed from its formula, in every layout corner (padding masks,
partially filled caches, odd sizes, several threads). That every decode path samples the same:
tests/test_decode_paths.py."""

import math
import shutil

import pytest
import torch

from ibtpo.rollout.decode import attention_kernel as dk
from ibtpo.rollout.decode.row_cache import torch_attention

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the kernel cannot be built")


def softmax_attention(q, keys, values):
    """From the formula, in float64: sum_j softmax_j(<q, k_j>) v_j."""
    s = [float(q.double() @ k.double()) for k in keys]
    m = max(s)
    w = [math.exp(x - m) for x in s]
    return sum(wj / sum(w) * v.double() for wj, v in zip(w, values))


def per_row_reference(q, Kt, V, n, scale):
    B, H, D, _ = Kt.shape
    return torch.stack([torch.stack([softmax_attention(scale * q[b, h, 0], Kt[b, h, :, :n].T, V[b, h, :n])
                                     for h in range(H)]) for b in range(B)])


@needs_cc
@pytest.mark.parametrize("G,group,H,D,wp,wr,n,padded,drop", [(2, 3, 2, 8, 5, 10, 7, True, False),
                                                               (3, 2, 3, 17, 4, 23, 23, False, True),
                                                               (1, 4, 1, 32, 1, 40, 1, False, False),
                                                               (3, 1, 4, 5, 6, 9, 6, True, True)])
def test_kernel_equals_the_formula(G, group, H, D, wp, wr, n, padded, drop):
    g = torch.Generator().manual_seed(G * 100 + n)
    C = G * group
    k, v = torch.randn(G, H, wp, D, generator=g), torch.randn(G, H, wp, D, generator=g)
    kv = dk.SharedPrefixKV.from_prefill(k, v, group, wr)
    kv.kr.copy_(torch.randn(kv.kr.shape, generator=g))
    kv.vr.copy_(torch.randn(kv.vr.shape, generator=g))
    rows = torch.arange(C)[1::2] if drop else torch.arange(C)  # finished rows left the batch
    q = torch.randn(len(rows), H, 1, D, generator=g)
    pmask = None
    if padded:  # left padding of a different length per prefix (at least one prompt column stays)
        pmask = torch.ones(G, wp + 2, dtype=torch.bool)
        for i in range(G):
            pmask[i, :i % wp] = False
    got = dk.DecodeAttention()(q, kv, n, pmask, 0.3, rows)
    assert got.shape == (len(rows), H, 1, D)
    for b, c in enumerate(rows.tolist()):
        p = c // group
        cols = [j for j in range(wp) if pmask is None or bool(pmask[p, j])]
        for h in range(H):
            keys = [k[p, h, j] for j in cols] + [kv.kr[c, h, :, j] for j in range(n)]
            values = [v[p, h, j] for j in cols] + [kv.vr[c, h, j] for j in range(n)]
            want = softmax_attention(0.3 * q[b, h, 0], keys, values)
            assert torch.allclose(got[b, h, 0].double(), want, atol=2e-6)


def test_the_torch_path_equals_the_formula():
    g = torch.Generator().manual_seed(3)
    q, Kt, V = torch.randn(3, 2, 1, 6, generator=g), torch.randn(3, 2, 6, 9, generator=g), torch.randn(3, 2, 9, 6,
                                                                                                      generator=g)
    got = torch_attention(q, Kt, V, 7, None, 0.4)[:, :, 0].double()
    assert torch.allclose(got, per_row_reference(q, Kt, V, 7, 0.4), atol=1e-6)


@needs_cc
def test_rows_split_over_threads_give_the_same_bits():
    g = torch.Generator().manual_seed(0)
    kv = dk.SharedPrefixKV.from_prefill(torch.randn(3, 2, 4, 16, generator=g), torch.randn(3, 2, 4, 16, generator=g),
                                        3, 30)
    kv.kr.copy_(torch.randn(kv.kr.shape, generator=g))
    kv.vr.copy_(torch.randn(kv.vr.shape, generator=g))
    q, rows = torch.randn(7, 2, 1, 16, generator=g), torch.tensor([0, 1, 2, 4, 5, 7, 8])
    att = dk.DecodeAttention()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = att(q, kv, 21, None, 0.5, rows)
        torch.set_num_threads(3)
        three = att(q, kv, 21, None, 0.5, rows)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


def test_a_missing_compiler(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("IBTPO_KERNEL_CACHE", str(tmp_path))  # nothing built here yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    dk.kernel.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="no C compiler"):
            dk.kernel(required=True)
        assert dk.kernel() is None  # decode auto falls back to torch, and says so
        assert "C kernel unavailable, using torch matmuls" in capsys.readouterr().err
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


@needs_cc
def test_the_library_is_keyed_on_the_resolved_native_target(monkeypatch, tmp_path):
    """A library built for one CPU is never loaded on another: the cache key holds what the compiler
    says ``-march=native`` means (ARM Linux has no cpuinfo model name to key on)."""
    monkeypatch.setenv("IBTPO_KERNEL_CACHE", str(tmp_path))
    here = dk.native_target(shutil.which("cc"))
    assert "-march=" in here or "target-cpu" in here
    first = dk.build()
    monkeypatch.setattr(dk, "native_target", lambda cc: here + "\n  -mavx512f [enabled]")  # another CPU
    assert dk.build() != first
    assert "-ffast-math" not in dk.COMPILE_FLAGS  # IEEE semantics, as the torch path


def test_a_compiler_that_cannot_resolve_native_is_not_used(monkeypatch, tmp_path):
    monkeypatch.setenv("IBTPO_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", shutil.which("true") or "/bin/true")  # answers every probe with nothing
    with pytest.raises(RuntimeError, match="does not say what -march=native means"):
        dk.build()
    assert not list(tmp_path.iterdir())
