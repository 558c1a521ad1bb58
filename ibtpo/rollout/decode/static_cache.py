"""The plain Llama loop on a static KV cache, its step captured as one CUDA graph: ``decode: graph``.

On a GPU the per-row loop (:mod:`~.row_cache`) is bound by kernel launches and host work, not by the
GPU (issue 22: ~25 launches per layer per step; 5-7k tok/s for a 0.5B model at batch 128 on an H200, in
bf16 and fp32 alike). Here every tensor a step touches has a fixed shape and address for the whole
generate call, so the step is recorded once as a CUDA graph and replayed: one launch per step.

* The cache, per layer, ``Kt (rows, heads, head_dim, width + steps)`` and ``V (rows, heads, width + steps,
  head_dim)``: the prefill (each prefix repeated ``n`` times) in the first ``width`` columns; a step writes
  column ``width + s`` through a device tensor (``index_copy_``), so the graph serves every step.
* Attention over the full ``width + steps`` columns every step, with an additive bias (0 / -inf, the
  activations' dtype) that opens a column when it is written (``index_fill_``): the same scores as the
  per-row path's filled slice, plus -inf columns that add exact zeros to the softmax.
* Compaction does not shrink the cache: the batch rows the sampling loop keeps index the static rows;
  finished rows keep computing (their outputs unused) until the call ends.

Without CUDA (or ``graph=False``) the same step runs eagerly: that is how the CPU suite tests this path
(same samples as the HF forward; ``tests/test_decode_paths.py``). The first step runs once eagerly
(warm-up: writes the column its replay rewrites with the same values), then is captured and replayed.
"""

from __future__ import annotations

import torch

from ...model.plain_llama import LlamaDecodeStep
from .base import DecodePath
from .row_cache import prefill_rows, torch_attention


class LlamaStaticCache(DecodePath):
    """:class:`~ibtpo.model.plain_llama.LlamaDecodeStep` on a static cache, one CUDA graph per generate
    call (module docstring)."""

    def __init__(self, model, llama: LlamaDecodeStep, graph: bool = True):
        self.model, self.llama = model, llama
        self.graph_wanted = graph
        self.kv: list = []
        self.bias = self.col = self.tok = self.pos = self.logits = None
        self.rows = None  # batch row -> static row
        self.graph = None

    def prefill(self, ids, mask, pos, n, steps):
        # zeros in the unwritten columns: the attention reads them (weight 0; uninitialised memory could be NaN)
        logits, mask, self.kv = prefill_rows(self.model, self.llama, ids, mask, pos, n, steps, torch.Tensor.new_zeros)
        rows, width = logits.shape[0], ids.shape[1]
        open_ = torch.cat([mask.bool(), mask.new_zeros((rows, steps), dtype=torch.bool)], dim=-1)
        self.bias = torch.zeros(open_.shape, device=ids.device, dtype=self.kv[0][0].dtype).masked_fill_(
            ~open_, float("-inf"))[:, None, None, :]
        self.col = torch.tensor([width], device=ids.device)
        self.tok = torch.zeros(rows, dtype=torch.long, device=ids.device)
        self.pos = torch.zeros(rows, dtype=torch.long, device=ids.device)
        self.rows = torch.arange(rows, device=ids.device)
        return logits

    def _step(self) -> torch.Tensor:
        """One step on the static tensors (what the graph records): write column ``col``, open it, attend."""
        self.bias.index_fill_(-1, self.col, 0.0)

        def attend(i, q, k, v, scale):
            Kt, V = self.kv[i]
            Kt.index_copy_(3, self.col, k[..., None])
            V.index_copy_(2, self.col, v[:, :, None])
            return torch_attention(q, Kt, V, Kt.shape[-1], self.bias, scale)

        return self.llama(self.tok, self.pos, attend)

    def step(self, tok, pos, live):
        self.tok.index_copy_(0, self.rows, tok)
        self.pos.index_copy_(0, self.rows, pos)
        if self.graph is not None:
            self.graph.replay()
        elif self.graph_wanted and self.tok.is_cuda:
            self._capture()
        else:
            self.logits = self._step()
        self.col += 1
        return self.logits[self.rows]

    def _capture(self) -> None:
        """Warm up on a side stream (one eager step: it writes what the replay rewrites), record the step,
        replay it once for this step's logits."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._step()
        self.graph.replay()

    def compact(self, keep):
        self.rows = self.rows[keep]
