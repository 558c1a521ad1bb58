"""Decode paths of the HF generation backend, one class each behind :class:`~.base.DecodePath`.

``rollout.decode`` (config) / ``HFBackend(decode=...)`` names the path; it is resolved once per
generate call from the model (:func:`choose`):

* ``hf`` — :class:`~.hf_forward.HFForward`: the model's HF forward with a ``DynamicCache``; any model.
* ``torch`` — :class:`~.row_cache.LlamaRowCache`: the plain Llama loop
  (:class:`~ibtpo.model.plain_llama.LlamaDecodeStep`) on a preallocated per-row cache, attention as
  two batched GEMMs; plain Llamas (:func:`~ibtpo.model.plain_llama.is_plain_llama`), any dtype / device.
* ``c`` — :class:`~.shared_prefix.LlamaSharedPrefix`: the plain Llama loop on a shared-prefix cache with
  the attention as a C kernel (:mod:`~.attention_kernel`, built on first use); plain Llamas on the CPU in
  float32. It pays there: a generate call of the tiny preset 20% faster than ``torch`` (bench/README.md).
* ``graph`` — :class:`~.static_cache.LlamaStaticCache`: the plain Llama loop on a static cache, each step
  one CUDA graph replay on a GPU (eager elsewhere: how the CPU suite tests it); plain Llamas, any dtype.
* ``auto`` — for a plain Llama: ``graph`` on CUDA (measured 3.2x ``torch`` and 3.8x ``model.generate`` in
  bf16 on an H200, bench/README.md), ``c`` on the CPU in float32 where the kernel builds (else one warning),
  else ``torch``; any other model ``hf``.

All paths draw the same samples for a seed (the same random stream; logits equal up to float rounding:
the attention's summation order), tested per path and dtype in ``tests/test_decode_paths.py``.
"""

from __future__ import annotations

import torch

from ...model.plain_llama import is_plain_llama
from .attention_kernel import kernel
from .base import DecodePath

DECODES = ("auto", "hf", "torch", "c", "graph")


def _serves_kernel(model) -> bool:
    p = next(model.parameters())
    return p.device.type == "cpu" and p.dtype == torch.float32


def _on_cuda(model) -> bool:
    return next(model.parameters()).device.type == "cuda"


def choose(model, decode: str) -> str:
    """The path (``hf`` | ``torch`` | ``c``) that ``decode`` names for ``model`` (module docstring);
    a named path that cannot serve the model is an error saying why."""
    if decode not in DECODES:
        raise ValueError(f"rollout.decode: unknown decode path {decode!r}; allowed: {list(DECODES)}")
    if decode == "hf":
        return "hf"
    plain = is_plain_llama(model)
    if decode == "auto":
        if not plain:
            return "hf"
        if _on_cuda(model):
            return "graph"
        return "c" if _serves_kernel(model) and kernel() is not None else "torch"
    if not plain:
        raise ValueError(f"rollout.decode: {decode!r} is the hand-written Llama loop; this model "
                         f"({type(model).__name__}) is not a plain Llama (ibtpo.model.plain_llama.is_plain_llama): "
                         "use 'auto' or 'hf'")
    if decode == "c":
        if not _serves_kernel(model):
            p = next(model.parameters())
            raise ValueError(f"rollout.decode: 'c' (the C attention kernel) serves CPU float32 models; this one is "
                             f"{p.dtype} on {p.device}: use 'auto' or 'torch'")
        kernel(required=True)  # a failed build raises here, with the compiler's message
    return decode


__all__ = ["DECODES", "DecodePath", "choose"]
