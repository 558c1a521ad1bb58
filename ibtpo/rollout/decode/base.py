"""The interface every decode path implements, and the prefill they share.

A decode path owns one generate call's KV cache: :meth:`DecodePath.prefill` encodes the left-padded
prefixes (one HF forward) and lays the cache out its way, :meth:`DecodePath.step` feeds one sampled
token per batch row and returns the next logits, :meth:`DecodePath.compact` drops finished rows from
the batch. The sampling loop (:meth:`ibtpo.rollout.hf_backend.HFBackend.generate`) names no path.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod

import torch
from transformers import DynamicCache, PreTrainedModel


def cache_keyword(model) -> str:
    """Recent transformers 5.x take ``cache=`` (``past_key_values=`` is deprecated); older releases
    only know ``past_key_values`` and would silently drop ``cache=``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def prefill(model, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
    """One HF forward of the left-padded prefixes ``ids`` (P, width) into a fresh ``DynamicCache``.
    Returns the last position's logits ``(P, V)`` and the cache."""
    kw = cache_keyword(model)
    cache = DynamicCache()
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **{kw: cache})
    if isinstance(model, PreTrainedModel) and cache.get_seq_length() != ids.shape[1]:
        raise RuntimeError(f"the model did not fill the KV cache (argument {kw!r}); "
                           "this transformers version is not supported by the HF backend")
    return out.logits[:, -1, :], cache


class DecodePath(ABC):
    """One generate call's decoding: the cache, its layout and the model call per step."""

    @abstractmethod
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, n: int, steps: int) -> torch.Tensor:
        """Encode the prefixes (``ids``, ``mask``, ``pos``: ``(P, width)``, left-padded) for ``n`` samples
        each and room for ``steps`` generated tokens. Returns the first logits ``(P * n, V)``, row
        ``i * n + j`` sample ``j`` of prefix ``i``."""

    @abstractmethod
    def step(self, tok: torch.Tensor, pos: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        """Feed ``tok`` (B,) at positions ``pos`` (B,) for the current batch rows; ``live`` (B,) bool marks
        the rows still generating (the others' logits are not used). Returns the logits ``(B, V)``."""

    @abstractmethod
    def compact(self, keep: torch.Tensor) -> None:
        """Keep only batch rows ``keep`` (indices, in order) from now on."""
