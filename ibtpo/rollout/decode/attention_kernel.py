"""The plain decode loop's single-query attention as a small C kernel (``attention_kernel.c``), loaded
with ``ctypes``: the ``c`` decode path (:mod:`~.shared_prefix`).

Why: at query length 1 the attention of a decode step is, per (row, head), one score vector and one
weighted sum over the cached keys / values. Through torch that is two batched matmuls of
``rows x heads`` tiny GEMMs plus a softmax; on the CPU the per-matrix overhead and the strided reads
of a cache that does not fit the caches make it ~40% of a decode step on the tiny model. The kernel
reads each key and value once, in one pass per (row, head), prefetching the next row's block; the
cache (:class:`SharedPrefixKV`) holds each prefix's prefilled keys / values once for all its samples,
and finished rows stay in place (batch rows index cache rows). Measured on a generate call of the
tiny model's ``trainer_vs_trl.py`` step (16 prefixes x 8 samples, 4 heads; interleaved A/B, same
samples): the whole call ~20% faster with the kernel than with the torch matmuls; the kernel's own
time 241 ms without prefetching, 130 ms with; the shared prefix another 2-5% of the call.

Build: the source is compiled on first use with the system C compiler (``$CC``, else ``cc``;
``-O3 -march=native``, IEEE semantics: no ``-ffast-math``) into ``$IBTPO_KERNEL_CACHE`` (default
``~/.cache/ibtpo/kernels``), one file per (source, flags, compiler, resolved native target) hash
(:func:`native_target`), written atomically so parallel jobs can race. No compiler, or a failed build,
leaves ``decode: auto`` on the torch path with one warning and is an error under ``decode: c`` (what the
kernel costs and buys: bench/README.md).

Result: equal to the formula up to float rounding (summation order; ~5e-7 absolute on the tiny model's
outputs), tested in ``tests/test_attention_kernel.py``; every decode path draws the same samples
(``tests/test_decode_paths.py``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("attention_kernel.c")
COMPILE_FLAGS = ("-O3", "-march=native", "-fPIC", "-std=c11")  # IEEE semantics: no -ffast-math
LINK_FLAGS = ("-shared",)


def cache_dir() -> Path:
    return Path(os.environ.get("IBTPO_KERNEL_CACHE") or Path.home() / ".cache" / "ibtpo" / "kernels")


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def native_target(cc: str) -> str:
    """What ``-march=native`` resolves to on this machine, as the compiler says: GCC's ``-Q --help=target``
    (the chosen ``-march`` / ``-mtune`` and every enabled instruction-set flag), else clang's ``-###``
    (target CPU and features). Part of the library's cache key, so a library built for one CPU is never
    loaded on another (an illegal instruction kills the process; no exception to catch). Raises where the
    compiler says neither: then the kernel is not built."""
    for probe in ([cc, "-march=native", "-Q", "--help=target"],
                  [cc, "-march=native", "-###", "-x", "c", "-c", os.devnull, "-o", os.devnull]):
        r = subprocess.run(probe, capture_output=True, text=True)
        text = (r.stdout + r.stderr).strip()
        if r.returncode == 0 and ("-march=" in text or "target-cpu" in text):
            return text
    raise RuntimeError(f"{cc} does not say what -march=native means here; the decode attention kernel is not built")


def build() -> Path:
    """Compile the kernel (once per source / flags / compiler / resolved native target) and return the
    shared library's path."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC or cc); the decode attention kernel cannot be built")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    key = hashlib.sha256("\n".join([SOURCE.read_text(), " ".join(COMPILE_FLAGS + LINK_FLAGS), cc, *version,
                                    native_target(cc)]).encode()).hexdigest()[:16]
    out = cache_dir() / f"attention_kernel-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        obj, lib = Path(tmp) / "k.o", Path(tmp) / "k.so"
        for cmd in ([cc, *COMPILE_FLAGS, "-c", str(SOURCE), "-o", str(obj)],
                    [cc, *LINK_FLAGS, str(obj), "-o", str(lib), "-lm"]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"building {SOURCE.name} failed: {' '.join(cmd)}\n{r.stderr.strip()}")
        os.replace(lib, out)  # atomic: a concurrent build of the same key writes the same bytes
    return out


@functools.lru_cache(maxsize=None)
def _load(path: str):
    fn = ctypes.CDLL(path).decode_attention
    p, i = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [p, p, p, p, p, p, p, p, p, i, i, i, i, i, i, i, i, ctypes.c_float]
    fn.restype = None
    return fn


@functools.lru_cache(maxsize=None)
def kernel(required: bool = False):
    """The compiled kernel; where it cannot be built ``None`` with one warning on stderr, or, if
    ``required``, the build's error."""
    try:
        return _load(str(build()))
    except (RuntimeError, OSError) as e:
        if required:
            raise
        print(f"[ibtpo] decode attention: C kernel unavailable, using torch matmuls ({e})", file=sys.stderr)
        return None


@dataclass
class SharedPrefixKV:
    """One layer's KV cache in the kernel's layout: each prefix's keys / values once (``kp (G, H, D, wp)``
    transposed, ``vp (G, H, wp, D)``), each cache row's generated ones (``kr (C, H, D, wr)``, ``vr (C, H,
    wr, D)``); cache row ``c`` continues prefix ``c // group``."""

    kp: torch.Tensor
    vp: torch.Tensor
    kr: torch.Tensor
    vr: torch.Tensor
    group: int

    @classmethod
    def from_prefill(cls, k: torch.Tensor, v: torch.Tensor, group: int, room: int) -> "SharedPrefixKV":
        """From the prefill's ``(G, H, wp, D)`` keys / values, with room for ``room`` generated columns
        per each of the ``G * group`` cache rows."""
        G, H, wp, D = k.shape
        return cls(k.transpose(2, 3).contiguous(), v.contiguous(), k.new_empty((G * group, H, D, room)),
                   v.new_empty((G * group, H, room, D)), group)

    def write(self, col: int, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor) -> None:
        """Generated column ``col`` of cache rows ``rows``: ``k``, ``v`` ``(len(rows), H, D)``."""
        self.kr[rows, :, :, col] = k
        self.vr[rows, :, col] = v


class DecodeAttention:
    """Single-query attention of the ``c`` decode path on a :class:`SharedPrefixKV` cache, by the C
    kernel (``None`` where :func:`kernel` gave none). A batch row reads its cache row through
    ``rows``, so finished rows leave the batch without copying the cache. With several torch threads the
    rows are split over as many threads (``ctypes`` releases the GIL during the call)."""

    def __init__(self):
        self.fn = kernel(required=True)
        self._pool: ThreadPoolExecutor | None = None
        self._scratch = torch.empty((0, 0))

    def _scratch_for(self, threads: int, width: int) -> torch.Tensor:
        """Each thread's score buffer, ``(threads, >= width)`` floats: reused across steps and layers (a
        call's prompt + response width bounds every step's)."""
        if self._scratch.shape[0] < threads or self._scratch.shape[1] < width:
            self._scratch = torch.empty((threads, width), dtype=torch.float32)
        return self._scratch

    def __call__(self, q, kv: SharedPrefixKV, n: int, pmask, scale: float, rows: torch.Tensor) -> torch.Tensor:
        """``q (B, H, 1, D)`` against the prompt columns and the first ``n`` generated columns of cache rows
        ``rows`` (B,); ``pmask (G, >= wp)`` bool (True = attend) or ``None``. Returns ``(B, H, 1, D)``."""
        B, H = q.shape[0], kv.kr.shape[1]
        q = q.reshape(B, H, -1).contiguous()
        out = torch.empty(q.shape, dtype=torch.float32)
        pmask = None if pmask is None else pmask.contiguous()
        rows = rows.to(torch.int64).contiguous()
        threads = min(torch.get_num_threads(), B)
        scratch = self._scratch_for(threads, kv.kp.shape[3] + kv.kr.shape[3])
        if threads <= 1:
            self._run(q, kv, n, pmask, rows, out, scratch[0], 0, B, scale)
        else:
            if self._pool is None or self._pool._max_workers != threads:
                self._pool = ThreadPoolExecutor(threads)
            cuts = [B * i // threads for i in range(threads + 1)]
            list(self._pool.map(lambda i: self._run(q, kv, n, pmask, rows, out, scratch[i], cuts[i], cuts[i + 1],
                                                    scale), range(threads)))
        return out[:, :, None, :]

    def _run(self, q, kv: SharedPrefixKV, n: int, pmask, rows, out, scratch, lo: int, hi: int, scale: float) -> None:
        """Batch rows ``lo:hi`` (their q / out / rows slices; the kernel finds their cache rows); ``scratch``
        this thread's score buffer (``wp + n`` floats: no variable-length array on the thread's stack)."""
        if hi <= lo:
            return
        H, D, wp = kv.kp.shape[1:]
        f = 4  # bytes per float32; rows are int64 (8 bytes)
        self.fn(q.data_ptr() + lo * H * D * f, kv.kp.data_ptr(), kv.vp.data_ptr(),
                None if pmask is None else pmask.data_ptr(), kv.kr.data_ptr(), kv.vr.data_ptr(),
                rows.data_ptr() + lo * 8, out.data_ptr() + lo * H * D * f, scratch.data_ptr(), hi - lo, H, D, wp,
                kv.kr.shape[3], n,
                kv.group, 0 if pmask is None else pmask.stride(0), scale)
