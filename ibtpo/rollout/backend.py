"""The one generation-backend interface every sampler and the evaluator go through.

Given token prefixes and sampling settings, a backend returns ``n`` continuations per prefix with
their token ids, per-token log-probs and per-token entropies, and counts the tokens it generated.
Samplers never call a model directly.

Log-prob and entropy convention (all backends): both are taken from the policy's distribution at
the sampling temperature, ``softmax(logits / T)``, *before* top-k / top-p truncation. The trainer
scores tokens with the same ``logits / T`` so behaviour and training log-probs agree.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 96
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature}); greedy decoding is not supported")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 (got {self.max_new_tokens})")


@dataclass
class Completion:
    """One continuation of a prefix. ``token_ids`` includes the stop token when one was produced."""

    token_ids: list[int]
    logprobs: list[float]
    entropies: list[float]
    finish_reason: str  # "stop" | "length"

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class GenerationStats:
    calls: int = 0
    tokens_generated: int = 0
    prefix_tokens_encoded: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class GenerationBackend(abc.ABC):
    """Samples continuations; implementations: ``hf`` (transformers, CPU/GPU) and ``vllm``."""

    stats: GenerationStats

    @abc.abstractmethod
    def generate(self, prefixes: Sequence[Sequence[int]], n: int, params: SamplingParams,
                 seed: int | None = None, max_new: Sequence[int] | None = None) -> list[list[Completion]]:
        """``n`` continuations of each prefix: ``out[i][j]`` is the j-th sample of prefix i.

        ``max_new[i]`` (optional) caps prefix i's continuations below ``params.max_new_tokens``
        (tree samplers keep a whole response within the budget when continuing a deep node)."""

    def sync_weights(self, model) -> None:  # noqa: B027 - optional hook
        """Make the backend sample from ``model``'s current weights (no-op when it shares them)."""

    def release(self) -> None:  # noqa: B027 - optional hook
        """Free generation memory while the trainer updates (vLLM sleep mode; no-op otherwise)."""
