"""lm-eval model ``ibtpo``: sampling through the project's own generation backend.

Registered with lm-eval as ``ibtpo`` (importing this module registers it)::

    lm_eval.simple_evaluate(model="ibtpo",
                            model_args="pretrained=/path/to/ckpt,seed=0,threads=2",
                            device="cpu", batch_size=32, ...)

It loads a local Hugging Face checkpoint (``AutoModelForCausalLM`` / ``AutoTokenizer``,
``local_files_only=True``) and answers ``generate_until`` requests with
:class:`ibtpo.rollout.hf_backend.HFBackend`, the same sampler the trainer uses.

How lm-eval 0.4.13 hands over ``repeats``: a task with ``repeats: k`` creates ONE ``Instance``
per document; ``evaluator.evaluate`` then passes ``[req] * k`` (the very same object k times) to
``generate_until`` and appends the k answers to ``req.resps``. Here the requests are grouped by
``(context, gen_kwargs)``: a context that occurs ``m`` times is prefilled once and sampled with
``n = m`` (the backend forks the KV cache), so the k answers of a document are k distinct samples
from one prefill. Whether the task's ``process_results`` sees all k is up to the task's filter
(lm-eval's default ``take_first`` keeps only the first one; our task YAMLs use ``take_first_k``).

Supported generation kwargs: ``do_sample`` (must be true: greedy decoding is not supported),
``temperature`` (> 0), ``top_p``, ``top_k`` (0 = off), ``max_gen_toks``, ``until`` (the text is
cut at the first occurrence of any stop string; EOS always stops). Any other key is an error
rather than silently ignored.

Model args: ``pretrained`` (checkpoint dir), ``device`` (default ``cpu``; lm-eval's
``simple_evaluate(device=...)`` passes it), ``batch_size`` (max number of distinct prompts per
backend call; each carries its ``n`` samples), ``seed`` (sampling is reproducible for a given
seed, batch size and request order), ``threads`` (``torch.set_num_threads``), ``dtype``
(``float32`` default, ``bfloat16``, ``float16``, ``auto``), ``add_special_tokens`` (default
false, as the trainer encodes prompts).

The loglikelihood request types raise ``NotImplementedError``: this model only samples.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import lm_eval.models  # noqa: F401 - see below
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from ibtpo.precision import DTYPES
from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.hf_backend import HFBackend

log = logging.getLogger(__name__)

# lm-eval 0.4.13 fills its model registry with the built-in models ("hf", "vllm", ...) lazily,
# and only when the registry is still empty at the first `get_model`; registering our model first
# would hide them all. Importing `lm_eval.models` (above) registers them (as cheap placeholders).

SUPPORTED_GEN_KWARGS = {"do_sample", "temperature", "top_p", "top_k", "max_gen_toks", "until"}
DEFAULT_MAX_GEN_TOKS = 256


def _as_bool(x: Any) -> bool:
    if isinstance(x, str):
        return x.strip().lower() in {"1", "true", "yes", "y", "on"}
    return bool(x)


def _freeze(obj: Any):
    """Hashable form of a gen_kwargs dict (lists -> tuples)."""
    if isinstance(obj, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(_freeze(v) for v in obj)
    return obj


def parse_gen_kwargs(gen_kwargs: dict) -> tuple[SamplingParams, list[str]]:
    """lm-eval ``generation_kwargs`` -> ``(SamplingParams, stop strings)``; strict about keys."""
    gen_kwargs = dict(gen_kwargs or {})
    unknown = set(gen_kwargs) - SUPPORTED_GEN_KWARGS
    if unknown:
        raise ValueError(f"ibtpo lm-eval model: unsupported generation kwargs {sorted(unknown)}; "
                         f"supported: {sorted(SUPPORTED_GEN_KWARGS)}")
    if not _as_bool(gen_kwargs.get("do_sample", False)):
        raise ValueError("ibtpo lm-eval model samples only: set `do_sample: true` (with temperature > 0) in the "
                         f"task's generation_kwargs; greedy decoding is not supported (got {gen_kwargs})")
    until = gen_kwargs.get("until") or []
    if isinstance(until, str):
        until = [until]
    until = [s for s in until if s]
    params = SamplingParams(
        temperature=float(gen_kwargs.get("temperature", 1.0)),
        top_p=float(gen_kwargs.get("top_p", 1.0)),
        top_k=int(gen_kwargs.get("top_k", 0) or 0),
        max_new_tokens=int(gen_kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)),
    )
    return params, list(until)


def truncate_at_stop(text: str, until: list[str]) -> str:
    """Cut ``text`` at the earliest occurrence of any stop string."""
    cut = len(text)
    for s in until:
        i = text.find(s)
        if 0 <= i < cut:
            cut = i
    return text[:cut]


@register_model("ibtpo")
class IBTPOLM(LM):
    """lm-eval ``LM`` that samples with :class:`HFBackend` (see module docstring)."""

    def __init__(self, pretrained: str, device: str | None = "cpu", batch_size: int | str | None = 32,
                 seed: int = 0, threads: int | None = None, dtype: str = "float32",
                 add_special_tokens: bool | str = False, max_batch_size: int | None = None,
                 trust_remote_code: bool | str = False, **kwargs):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if kwargs:
            log.warning("ibtpo lm-eval model: ignoring unknown model args %s", sorted(kwargs))
        if device is None or device == "":
            device = "cpu"
        if batch_size in (None, "", "auto") or str(batch_size).startswith("auto"):
            batch_size = 32
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        if threads not in (None, "", 0, "0"):
            torch.set_num_threads(int(threads))
        self.seed = int(seed)
        self.add_special_tokens = _as_bool(add_special_tokens)
        self._device = torch.device(device)
        self.pretrained = str(pretrained)

        torch_dtype = {**DTYPES, "auto": "auto"}[str(dtype)]
        remote = _as_bool(trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(self.pretrained, local_files_only=True,
                                                       trust_remote_code=remote)
        self.model = AutoModelForCausalLM.from_pretrained(self.pretrained, local_files_only=True,
                                                          dtype=torch_dtype, trust_remote_code=remote)
        self.model.to(self._device).eval()

        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        if pad is None:
            raise ValueError(f"{self.pretrained}: tokenizer has neither a pad nor an eos token")
        eos: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            eos.add(int(self.tokenizer.eos_token_id))
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            eos.update(int(t) for t in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]))
        if not eos:
            raise ValueError(f"{self.pretrained}: no EOS token id in the tokenizer or generation config")
        self.eos_token_ids = tuple(sorted(eos))
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        self.backend = HFBackend(self.model, pad_token_id=int(pad), device=self._device)
        self._calls = 0

    # ---------------------------------------------------------------- helpers
    def tok_encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"]

    def _stop_ids(self, until: list[str]) -> tuple[int, ...]:
        """EOS plus every stop string that is exactly one token (stopping there is equivalent to
        cutting the text there); longer stop strings are handled by truncating the text."""
        ids = set(self.eos_token_ids)
        for s in until:
            enc = self.tokenizer(s, add_special_tokens=False)["input_ids"]
            if len(enc) == 1 and self.tokenizer.decode(enc) == s:
                ids.add(int(enc[0]))
        return tuple(sorted(ids))

    def _decode(self, token_ids: list[int], finish_reason: str) -> str:
        if finish_reason == "stop" and token_ids:
            token_ids = token_ids[:-1]  # the stop token itself is not part of the text
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    # ---------------------------------------------------------------- lm-eval API
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        # (gen_kwargs key) -> (context) -> [request indices]; first-appearance order throughout
        by_cfg: "OrderedDict[Any, tuple[dict, OrderedDict[str, list[int]]]]" = OrderedDict()
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            key = _freeze(gen_kwargs)
            if key not in by_cfg:
                by_cfg[key] = (gen_kwargs, OrderedDict())
            by_cfg[key][1].setdefault(context, []).append(i)

        jobs = []  # (params, until, stop-ids, n, [contexts])
        for gen_kwargs, contexts in by_cfg.values():
            params, until = parse_gen_kwargs(gen_kwargs)
            params = SamplingParams(params.temperature, params.top_p, params.top_k, params.max_new_tokens,
                                    stop_token_ids=self._stop_ids(until))
            by_n: "OrderedDict[int, list[str]]" = OrderedDict()
            for ctx, idx in contexts.items():
                by_n.setdefault(len(idx), []).append(ctx)
            for n, ctxs in by_n.items():
                for s in range(0, len(ctxs), self.batch_size):
                    jobs.append((params, until, n, ctxs[s:s + self.batch_size], contexts))

        warned = False
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="ibtpo generate_until")
        for params, until, n, ctxs, contexts in jobs:
            prefixes = [self.tok_encode(c) for c in ctxs]
            if (not warned and self.max_positions
                    and max(len(p) for p in prefixes) + params.max_new_tokens > self.max_positions):
                log.warning("ibtpo lm-eval model: prompt + max_gen_toks exceeds the model's "
                            "max_position_embeddings=%d", self.max_positions)
                warned = True
            call_seed = (self.seed * 1_000_003 + self._calls) % (2 ** 63)
            self._calls += 1
            completions = self.backend.generate(prefixes, n=n, params=params, seed=call_seed)
            for ctx, comps in zip(ctxs, completions):
                for req_i, comp in zip(contexts[ctx], comps, strict=True):
                    text = truncate_at_stop(self._decode(comp.token_ids, comp.finish_reason), until)
                    out[req_i] = text
                    self.cache_hook.add_partial("generate_until", requests[req_i].args, text)
            bar.update(n * len(ctxs))
        bar.close()
        assert all(o is not None for o in out)
        return out  # type: ignore[return-value]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("the `ibtpo` lm-eval model only samples (generate_until); loglikelihood "
                                  "tasks are not supported — use model='hf' for them")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("the `ibtpo` lm-eval model only samples (generate_until); "
                                  "loglikelihood_rolling tasks are not supported — use model='hf' for them")
