"""vLLM generation backend: the rollout interface of :mod:`ibtpo.rollout.backend` on vLLM's offline
``LLM`` engine, colocated with the trainer on the same GPU (GPU machines with the ``vllm`` extra).

Engine. One in-process engine per training process (``distributed_executor_backend=
"external_launcher"``, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the colocation mode TRL uses), so the
trainer's tensors can be loaded into the engine's model without leaving the process. Prefix caching
is on: IBTree and EPTree continue earlier prefixes (the prompt plus part of a sampled response),
and vLLM serves the full KV blocks it has already computed. With a policy attached the engine starts
from random weights (``load_format="dummy"``) and takes the trainer's weights before its first
generation, so a resumed run never samples from the base checkpoint by mistake.

Requests (:func:`build_requests`, pure). One request per prefix with ``n`` samples;
``max_tokens = min(params.max_new_tokens, max_new[i])``; ``top_k`` 0 (off) becomes vLLM's -1;
``ignore_eos=True`` plus ``stop_token_ids = params.stop_token_ids``, so a sample stops exactly where
the HF backend's would (at one of the given ids, which is kept as the last token) and not at ids
the model's generation config adds; no detokenisation. Seeds: vLLM gives child ``j`` of an
``n``-sample request the seed ``seed + j``; request ``i`` gets a seed hashed from ``(seed, i)``,
so no two samples of a call share a random stream, and a root continuation in a later call does
not replay an earlier sample's stream (our choice; the HF backend draws one stream per call).

Log-probs and entropies (``rollout.vllm.logprobs``). The project's convention is the log-prob of
``softmax(logits / T)`` before top-k / top-p truncation. vLLM cannot return that:

* its default ``raw_logprobs`` are of ``softmax(logits)`` at T = 1 (wrong whenever T != 1);
* ``processed_logprobs`` are taken after temperature *and* top-k / top-p, i.e. of the truncated,
  renormalised distribution: ``log p_T(x) - log Z`` with ``Z`` the mass the truncation keeps. They
  equal the convention only when ``top_p = 1`` and ``top_k = 0``; otherwise they are higher by
  ``-log Z >= 0`` (per token, varying);
* no full-vocabulary entropy at all.

So the default, ``logprobs: policy``, rescores every sample with one no-grad forward of the
trainer's own model (:func:`ibtpo.logprobs.sequence_logprobs`, the function the loss uses): exact
log-probs and entropies by the convention, for the cost of one forward over the generated
sequences (in chunks of ``rescore_tokens`` tokens). ``logprobs: vllm`` skips that forward and
returns vLLM's ``processed_logprobs`` with NaN entropies: downstream, the trainer's
``sample_entropy`` metric then reads ``nan`` rather than a wrong number, and IB-Score / EPTree see
the truncated distribution's log-probs (``stats.extra["logprobs"]`` says which).

Weights. :meth:`VLLMBackend.sync_weights` loads the trainer's parameters into the engine's model
(``model_runner.model.load_weights``, with vLLM's own name mapping, e.g. q/k/v into qkv_proj) and
resets the prefix cache (cached KV blocks belong to the old weights). ``generate`` also checks the
policy's parameter version counters (:func:`weights_version`, bumped by every in-place update such
as ``optimizer.step`` or ``load_state_dict``) and syncs first when they moved: calling
``sync_weights`` after each optimizer step and before the next rollout is therefore the same thing,
and a missed call cannot leave the engine sampling from stale weights (edits through ``.data``
bypass the counters: call ``sync_weights`` after those). :meth:`VLLMBackend.check_weight_sync`
compares the engine's log-probs of a fixed sequence with the model's before and after a sync.

Colocation. ``gpu_memory_utilization`` is the share of the GPU vLLM takes (weights + KV cache).
With ``sleep: true`` the engine is built with sleep mode and :meth:`VLLMBackend.release` puts it to
sleep (level 2: weights and KV cache freed; level 1: weights kept in CPU memory) while the trainer
updates; the next ``generate`` wakes the weights, loads the trainer's, then wakes the KV cache.
Sleeping discards the prefix cache, so ``release`` belongs after a step's last rollout call, not
between IBTree rounds.
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
from dataclasses import dataclass, fields
from typing import Any, Iterable, Sequence

import numpy as np

from .backend import Completion, GenerationBackend, GenerationStats, SamplingParams

MIN_VLLM = (0, 10, 2)  # logprobs_mode (processed_logprobs), in-process V1 engine, tagged wake_up
LOGPROB_SOURCES = ("policy", "vllm")
DTYPES = ("auto", "bfloat16", "float16", "float32")


class VLLMUnavailable(RuntimeError):
    """vLLM is missing (or too old) where a vLLM path was selected."""


def require_vllm(what: str):
    """Import vLLM for ``what`` (a config key, e.g. ``"rollout.backend: vllm"``) or fail clearly."""
    try:
        import vllm
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken CUDA install
        raise VLLMUnavailable(
            f"{what} needs vLLM, which is not installed here ({type(e).__name__}: {e}). vLLM is a GPU-only "
            "optional extra with its own torch/transformers pins: on a CUDA machine install it with "
            "`pip install '.[vllm]'` (or IBTPO_EXTRAS=dev,vllm scripts/setup.sh); on a CPU machine use "
            "rollout.backend: hf and evaluation.model: ibtpo") from None
    version = tuple(int(x) for x in re.findall(r"\d+", getattr(vllm, "__version__", "0"))[:3])
    if version < MIN_VLLM:
        raise VLLMUnavailable(f"{what}: vLLM {vllm.__version__} is too old; this backend needs vLLM >= "
                              f"{'.'.join(map(str, MIN_VLLM))} (logprobs_mode, in-process V1 engine)")
    return vllm


# ------------------------------------------------------------------------------------------------
# Settings (config section rollout.vllm)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VLLMSettings:
    """``rollout.vllm``: engine and colocation settings (defaults are our choice, see module doc)."""

    gpu_memory_utilization: float = 0.4  # share of the GPU for vLLM; the trainer needs the rest
    sleep: bool = True  # sleep mode: release() frees vLLM's memory while the trainer updates
    sleep_level: int = 2  # 2: weights + KV cache freed (weights come back from the trainer); 1: weights to CPU
    dtype: str = "auto"  # engine dtype; "auto" = the checkpoint's
    max_model_len: int | None = None  # None: the model's own limit (KV cache must hold one such sequence)
    max_num_seqs: int | None = None  # None: vLLM's default
    enforce_eager: bool = False  # True: no CUDA graphs (less memory, slower decoding)
    logprobs: str = "policy"  # policy: exact, rescored by the trainer's model; vllm: processed_logprobs, NaN entropies
    rescore_tokens: int = 4096  # tokens per rescoring forward (full-vocabulary logits of this many positions)

    @classmethod
    def from_config(cls, section: dict | None, where: str = "rollout.vllm") -> "VLLMSettings":
        section = dict(section or {})
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(section) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {allowed}")
        s = cls(**section)
        problems = []
        if not 0 < s.gpu_memory_utilization <= 1:
            problems.append(f"{where}.gpu_memory_utilization: must be in (0, 1] (got {s.gpu_memory_utilization})")
        if s.sleep_level not in (1, 2):
            problems.append(f"{where}.sleep_level: 1 or 2 (got {s.sleep_level})")
        if s.dtype not in DTYPES:
            problems.append(f"{where}.dtype: {s.dtype!r}; allowed: {list(DTYPES)}")
        if s.logprobs not in LOGPROB_SOURCES:
            problems.append(f"{where}.logprobs: {s.logprobs!r}; allowed: {list(LOGPROB_SOURCES)}")
        if s.rescore_tokens < 1:
            problems.append(f"{where}.rescore_tokens: must be >= 1 (got {s.rescore_tokens})")
        if s.max_model_len is not None and s.max_model_len < 2:
            problems.append(f"{where}.max_model_len: must be >= 2 (got {s.max_model_len})")
        if problems:
            raise ValueError("; ".join(problems))
        return s

    def engine_kwargs(self, model_path: str, seed: int = 0, dummy_weights: bool = False) -> dict:
        """Keyword arguments of ``vllm.LLM`` for this backend."""
        kw: dict[str, Any] = {
            "model": str(model_path),
            "tokenizer": str(model_path),
            "dtype": self.dtype,
            "seed": int(seed),
            "tensor_parallel_size": 1,
            "distributed_executor_backend": "external_launcher",  # in-process: weights can be loaded directly
            "enable_prefix_caching": True,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_sleep_mode": self.sleep,
            "enforce_eager": self.enforce_eager,
        }
        if self.max_model_len is not None:
            kw["max_model_len"] = self.max_model_len
        if self.max_num_seqs is not None:
            kw["max_num_seqs"] = self.max_num_seqs
        if self.logprobs == "vllm":
            kw["logprobs_mode"] = "processed_logprobs"  # after temperature (and top-k/top-p), see module doc
        if dummy_weights:
            kw["load_format"] = "dummy"  # the trainer's weights are loaded before the first generation
        return kw


# ------------------------------------------------------------------------------------------------
# Requests (pure)
# ------------------------------------------------------------------------------------------------

def request_seed(seed: int, i: int) -> int:
    """Seed of request ``i`` of a call seeded ``seed`` (vLLM adds the child index ``j < n``).

    Hashed from ``(seed, i)`` to 62 bits, so the ``n``-long runs of child seeds of different requests
    and of different calls do not overlap (barring a ~n/2^62 chance)."""
    return int(np.random.SeedSequence([int(seed) & (2**63 - 1), i]).generate_state(1, np.uint64)[0] >> np.uint64(2))


def build_requests(prefixes: Sequence[Sequence[int]], n: int, params: SamplingParams, seed: int | None = None,
                   max_new: Sequence[int] | None = None, want_logprobs: bool = False) -> list[tuple[dict, dict]]:
    """One ``(prompt, SamplingParams kwargs)`` pair per prefix (see the module doc for the mapping)."""
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    if max_new is not None and len(max_new) != len(prefixes):
        raise ValueError(f"max_new has {len(max_new)} entries for {len(prefixes)} prefixes")
    stop = sorted({int(t) for t in params.stop_token_ids})
    out = []
    for i, p in enumerate(prefixes):
        if len(p) == 0:
            raise ValueError(f"prefix {i} is empty; vLLM needs at least one prompt token")
        cap = params.max_new_tokens if max_new is None else min(params.max_new_tokens, int(max_new[i]))
        if cap < 1:
            raise ValueError(f"prefix {i}: no token budget left (max_new={max_new[i]}); "
                             "the sampler must not continue a prefix that used up max_new_tokens")
        kw = {
            "n": int(n),
            "temperature": float(params.temperature),
            "top_p": float(params.top_p),
            "top_k": int(params.top_k) if params.top_k else -1,  # vLLM: -1 = off (0 too in recent versions)
            "max_tokens": int(cap),
            "seed": None if seed is None else request_seed(seed, i),
            "stop_token_ids": stop,
            "ignore_eos": True,  # stop only at stop_token_ids, as the HF backend does
            "logprobs": 0 if want_logprobs else None,  # 0: the sampled token's log-prob only
            "detokenize": False,
        }
        out.append(({"prompt_token_ids": [int(t) for t in p]}, kw))
    return out


# ------------------------------------------------------------------------------------------------
# Outputs (pure)
# ------------------------------------------------------------------------------------------------

def _logprob_value(entry: Any, token: int, where: str) -> float:
    """The sampled token's log-prob from one position of vLLM's ``logprobs`` (``{token: Logprob}``)."""
    try:
        item = entry[token]
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"{where}: vLLM returned no log-prob for the sampled token {token}") from None
    value = getattr(item, "logprob", item)
    return float(value)


def convert_output(request_output: Any, n: int, stop_ids: Iterable[int], max_tokens: int,
                   want_logprobs: bool, where: str = "request") -> list[Completion]:
    """A vLLM ``RequestOutput`` (``outputs``: ``CompletionOutput`` with ``index``, ``token_ids``,
    ``logprobs``, ``finish_reason``, ``stop_reason``) -> ``n`` :class:`Completion` in index order.

    Log-probs are vLLM's when ``want_logprobs`` (else NaN, to be rescored); entropies are NaN.
    Anything but a stop at one of ``stop_ids`` (kept as the last token) or a length stop is an error."""
    stop_ids = set(int(t) for t in stop_ids)
    outs = sorted(request_output.outputs, key=lambda c: c.index)
    if len(outs) != n:
        raise RuntimeError(f"{where}: vLLM returned {len(outs)} samples, expected n={n}")
    result = []
    for c in outs:
        w = f"{where} sample {c.index}"
        ids = [int(t) for t in c.token_ids]
        if not ids:
            raise RuntimeError(f"{w}: vLLM returned no tokens (finish_reason={c.finish_reason!r})")
        if len(ids) > max_tokens:
            raise RuntimeError(f"{w}: {len(ids)} tokens exceed max_tokens={max_tokens}")
        reason = c.finish_reason
        if reason == "stop":
            if ids[-1] not in stop_ids:
                raise RuntimeError(f"{w}: vLLM stopped without one of the stop ids {sorted(stop_ids)} "
                                   f"(last token {ids[-1]}, stop_reason={getattr(c, 'stop_reason', None)!r}); "
                                   "stop strings and EOS are not used by this backend")
        elif reason != "length":
            raise RuntimeError(f"{w}: unexpected finish_reason {reason!r} (aborted or failed request)")
        if want_logprobs:
            if c.logprobs is None or len(c.logprobs) != len(ids):
                got = None if c.logprobs is None else len(c.logprobs)
                raise RuntimeError(f"{w}: {got} log-prob entries for {len(ids)} tokens")
            lps = [_logprob_value(e, t, f"{w} token {k}") for k, (e, t) in enumerate(zip(c.logprobs, ids))]
        else:
            lps = [math.nan] * len(ids)
        result.append(Completion(ids, lps, [math.nan] * len(ids), reason))
    return result


# ------------------------------------------------------------------------------------------------
# Prefix bookkeeping (pure)
# ------------------------------------------------------------------------------------------------

class PrefixLedger:
    """Which prompt tokens vLLM's prefix cache can serve: a prefix's leading *full* KV blocks
    (``block_size`` tokens) whose whole token prefix the engine has computed since the cache was
    last reset (by a weight sync or sleep). Chained block keys, as vLLM's own block hashes.

    An upper bound on cache hits (vLLM may evict blocks, and recomputes the last prompt token);
    :attr:`VLLMBackend.stats` reports it next to the count vLLM itself reports."""

    def __init__(self, block_size: int = 16):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1 (got {block_size})")
        self.block_size = block_size
        self._blocks: set[int] = set()

    def _keys(self, ids: Sequence[int]) -> list[int]:
        keys, h = [], 0
        for k in range(len(ids) // self.block_size):
            h = hash((h, tuple(ids[k * self.block_size:(k + 1) * self.block_size])))
            keys.append(h)
        return keys

    def cached_tokens(self, ids: Sequence[int]) -> int:
        hit = 0
        for key in self._keys(ids):
            if key not in self._blocks:
                break
            hit += self.block_size
        return hit

    def add(self, ids: Sequence[int]) -> None:
        self._blocks.update(self._keys(ids))

    def reset(self) -> None:
        self._blocks.clear()

    def __len__(self) -> int:
        return len(self._blocks)


# ------------------------------------------------------------------------------------------------
# Weights
# ------------------------------------------------------------------------------------------------

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")


def named_weights(model) -> Iterable[tuple[str, Any]]:
    """``(HF name, tensor)`` of every parameter, tied ones once, wrapper prefixes (DDP ``module.``,
    ``torch.compile``'s ``_orig_mod.``, checkpoint / FSDP wrappers) removed."""
    for name, p in model.named_parameters():
        for pre in WRAPPER_PREFIXES:
            name = name.replace(pre, "")
        yield name, p.detach()


def weights_version(model) -> tuple[int, int]:
    """``(id(model), sum of parameter version counters)``: changes with every in-place update of a
    parameter (optimizer step, ``load_state_dict``, ``copy_``), not with forward or backward."""
    return id(model), sum(int(p._version) for p in model.parameters())


ENGINE_RUNNER_PATHS = (
    ("llm_engine", "model_executor", "driver_worker", "worker", "model_runner"),
    ("llm_engine", "model_executor", "driver_worker", "model_runner"),
)


def engine_model(llm):
    """The ``nn.Module`` inside an in-process vLLM engine (it has ``load_weights``)."""
    for path in ENGINE_RUNNER_PATHS:
        obj = llm
        for attr in path:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is None:
            continue
        model = obj.get_model() if callable(getattr(obj, "get_model", None)) else getattr(obj, "model", None)
        if model is not None and hasattr(model, "load_weights"):
            return model
    tried = [".".join(p) for p in ENGINE_RUNNER_PATHS]
    raise RuntimeError("cannot reach the vLLM engine's model to load weights (tried "
                       f"{tried}); the engine must run in-process (distributed_executor_backend="
                       "'external_launcher', VLLM_ENABLE_V1_MULTIPROCESSING=0), "
                       "as VLLMBackend.from_pretrained builds it")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_process_env() -> None:
    """What ``external_launcher`` expects in a single process (kept when a launcher already set it)."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    if not os.environ.get("MASTER_PORT"):
        os.environ["MASTER_PORT"] = str(_free_port())


class _Seq:
    """A (prefix, continuation) pair in the shape :func:`ibtpo.logprobs.sequence_logprobs` reads."""

    __slots__ = ("prompt_ids", "response_ids")

    def __init__(self, prompt_ids, response_ids):
        self.prompt_ids, self.response_ids = list(prompt_ids), list(response_ids)


def policy_logprobs(model, seqs: list[_Seq], temperature: float, device, with_entropy: bool):
    """Per-token log-probs (and entropies) of each continuation under ``model`` at ``logits / T``,
    without gradients and in eval mode: the trainer's own scoring function."""
    import torch

    from ..logprobs import sequence_logprobs

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logp, mask, ent = sequence_logprobs(model, seqs, temperature, device, with_entropy=with_entropy)
    finally:
        if was_training:
            model.train()
    lens = [len(s.response_ids) for s in seqs]
    lp_rows = [logp[i, :L].tolist() for i, L in enumerate(lens)]
    ent_rows = [ent[i, :L].tolist() for i, L in enumerate(lens)] if with_entropy else None
    return lp_rows, ent_rows


def token_chunks(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive index groups whose summed length stays within ``budget`` (at least one each)."""
    chunks, cur, total = [], [], 0
    for i, L in enumerate(lengths):
        if cur and total + L > budget:
            chunks.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += L
    if cur:
        chunks.append(cur)
    return chunks


# ------------------------------------------------------------------------------------------------
# The backend
# ------------------------------------------------------------------------------------------------

class VLLMBackend(GenerationBackend):
    """Generation on a vLLM ``LLM`` that follows the trainer's ``policy`` (see the module doc).

    ``llm``: the engine (anything with vLLM's ``generate`` / ``sleep`` / ``wake_up`` /
    ``reset_prefix_cache`` and an in-process model); ``sampling_params_cls``: ``vllm.SamplingParams``
    by default (tests pass a stand-in); ``device``: where the policy lives (for rescoring)."""

    def __init__(self, llm, policy=None, settings: VLLMSettings | None = None, sampling_params_cls=None,
                 device=None, block_size: int = 16):
        self.llm = llm
        self.policy = policy
        self.settings = settings or VLLMSettings()
        if self.settings.logprobs == "policy" and policy is None:
            raise ValueError("rollout.vllm.logprobs: 'policy' rescoring needs the trainer's model (policy=...)")
        if self.settings.sleep and self.settings.sleep_level == 2 and policy is None:
            raise ValueError("rollout.vllm.sleep_level 2 discards the engine's weights; without a policy to "
                             "reload them from, use sleep_level: 1 or sleep: false")
        if sampling_params_cls is None:
            sampling_params_cls = require_vllm("rollout.backend: vllm").SamplingParams
        self._sp = sampling_params_cls
        self.device = device if device is not None else _model_device(policy)
        self.ledger = PrefixLedger(block_size)
        self._synced: tuple[int, int] | None = None  # weights_version of the policy the engine holds
        self._force_sync = policy is not None  # the engine does not hold the policy's weights yet
        self._asleep = False
        self._weights_lost = False  # level-2 sleep discarded the engine's weights
        self.stats = GenerationStats(extra={
            "logprobs": ("exact: rescored by the trainer's model at logits/T" if self.settings.logprobs == "policy"
                         else "vLLM processed_logprobs (after temperature and top-k/top-p); entropies NaN"),
            "prompt_tokens": 0, "prompt_tokens_cached_vllm": 0, "prompt_tokens_reusable": 0,
            "weight_syncs": 0, "sync_seconds": 0.0, "rescore_seconds": 0.0, "sleeps": 0, "wake_seconds": 0.0,
        })

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model_path: str, policy=None, settings: VLLMSettings | None = None, seed: int = 0,
                        what: str = "rollout.backend: vllm") -> "VLLMBackend":
        """Build the in-process engine on ``model_path`` (a local HF checkpoint or hub id)."""
        vllm = require_vllm(what)
        settings = settings or VLLMSettings()
        _in_process_env()
        llm = vllm.LLM(**settings.engine_kwargs(model_path, seed=seed, dummy_weights=policy is not None))
        return cls(llm, policy, settings, vllm.SamplingParams, block_size=_block_size(llm))

    # -- weights and memory ----------------------------------------------------------------------
    def sync_weights(self, model=None) -> None:
        """Follow ``model`` (default: the attached policy). Loads now when the engine is awake; a
        sleeping engine loads when it wakes (at the next ``generate``)."""
        if model is not None:
            if model is not self.policy:
                self.device = _model_device(model)
            self.policy = model
        if self.policy is None:
            raise ValueError("sync_weights: no model to take the weights from")
        self._force_sync = True
        if not self._asleep:
            self._load_policy()

    def _load_policy(self) -> None:
        t0 = time.perf_counter()
        engine_model(self.llm).load_weights(named_weights(self.policy))
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        self.ledger.reset()
        self._synced = weights_version(self.policy)
        self._force_sync = self._weights_lost = False
        self.stats.extra["weight_syncs"] += 1
        self.stats.extra["sync_seconds"] += time.perf_counter() - t0

    def _stale(self) -> bool:
        return self.policy is not None and (self._force_sync or self._weights_lost
                                            or weights_version(self.policy) != self._synced)

    def release(self) -> None:
        """Free vLLM's GPU memory for the trainer's update (sleep mode; a no-op without it)."""
        if not self.settings.sleep or self._asleep:
            return
        self.llm.sleep(level=self.settings.sleep_level)
        self._asleep = True
        self._weights_lost = self.settings.sleep_level == 2
        self.ledger.reset()  # sleep discards the KV cache
        self.stats.extra["sleeps"] += 1

    def _wake(self, tags: list[str]) -> None:
        try:
            self.llm.wake_up(tags=tags)
        except TypeError:  # a vLLM without tagged wake-up
            self.llm.wake_up()

    def _ready(self) -> None:
        """Awake, holding the policy's current weights (see the module doc for the order)."""
        t0 = time.perf_counter()
        if self._asleep:
            _empty_cuda_cache()  # memory torch's allocator keeps cached after the update is not vLLM's to take
            self._wake(["weights"])
        if self._stale():
            self._load_policy()
        if self._asleep:
            self._wake(["kv_cache"])
            self._asleep = False
            self.stats.extra["wake_seconds"] += time.perf_counter() - t0

    # -- generation ------------------------------------------------------------------------------
    def generate(self, prefixes: Sequence[Sequence[int]], n: int, params: SamplingParams,
                 seed: int | None = None, max_new: Sequence[int] | None = None) -> list[list[Completion]]:
        t0 = time.perf_counter()
        if not prefixes:
            return []
        vllm_lps = self.settings.logprobs == "vllm"
        requests = build_requests(prefixes, n, params, seed, max_new, want_logprobs=vllm_lps)
        self._ready()
        reusable = 0
        for prompt, _ in requests:
            reusable += self.ledger.cached_tokens(prompt["prompt_token_ids"])
            self.ledger.add(prompt["prompt_token_ids"])
        outs = self.llm.generate([p for p, _ in requests], sampling_params=[self._sp(**kw) for _, kw in requests],
                                 use_tqdm=False)
        if len(outs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outs)} outputs for {len(requests)} requests")
        stop = params.stop_token_ids
        result = [convert_output(o, n, stop, kw["max_tokens"], vllm_lps, where=f"prefix {i}")
                  for i, (o, (_, kw)) in enumerate(zip(outs, requests))]
        for p, comps in zip(prefixes, result):
            for c in comps:
                self.ledger.add(list(p) + c.token_ids)  # vLLM caches the generated full blocks too
        if not vllm_lps:
            self._rescore(prefixes, result, params.temperature)
        prompt_tokens = sum(len(p) for p in prefixes)
        cached = sum(int(getattr(o, "num_cached_tokens", 0) or 0) for o in outs)
        st = self.stats
        st.calls += 1
        st.tokens_generated += sum(len(c.token_ids) for comps in result for c in comps)
        st.prefix_tokens_encoded += max(0, prompt_tokens - cached)
        st.extra["prompt_tokens"] += prompt_tokens
        st.extra["prompt_tokens_cached_vllm"] += cached
        st.extra["prompt_tokens_reusable"] += reusable
        st.seconds += time.perf_counter() - t0
        return result

    def _rescore(self, prefixes, result: list[list[Completion]], temperature: float) -> None:
        """Exact log-probs and entropies of every sample under the policy (``logprobs: policy``)."""
        t0 = time.perf_counter()
        rows = [(p, c) for p, comps in zip(prefixes, result) for c in comps]
        for chunk in token_chunks([len(p) + len(c.token_ids) for p, c in rows], self.settings.rescore_tokens):
            seqs = [_Seq(rows[i][0], rows[i][1].token_ids) for i in chunk]
            lps, ents = policy_logprobs(self.policy, seqs, temperature, self.device, with_entropy=True)
            for i, lp, ent in zip(chunk, lps, ents):
                rows[i][1].logprobs, rows[i][1].entropies = lp, ent
        self.stats.extra["rescore_seconds"] += time.perf_counter() - t0

    # -- checks ----------------------------------------------------------------------------------
    def engine_logprobs(self, ids: Sequence[int], sync: bool = True) -> list[float]:
        """The engine's log-probs (T = 1, no truncation) of ``ids[1:]`` given their prefixes; with
        ``sync=False`` of whatever weights the engine holds (a sleeping engine is woken as it is)."""
        if sync:
            self._ready()
        elif self._asleep:
            self._wake(["weights"])
            self._wake(["kv_cache"])
            self._asleep = False
        sp = self._sp(n=1, max_tokens=1, temperature=1.0, top_p=1.0, top_k=-1, prompt_logprobs=1,
                      ignore_eos=True, detokenize=False)
        out = self.llm.generate([{"prompt_token_ids": [int(t) for t in ids]}], sampling_params=[sp], use_tqdm=False)[0]
        plp = out.prompt_logprobs
        if plp is None or len(plp) != len(ids):
            raise RuntimeError(f"vLLM returned {None if plp is None else len(plp)} prompt log-probs "
                               f"for {len(ids)} tokens")
        return [_logprob_value(plp[k], int(ids[k]), f"probe token {k}") for k in range(1, len(ids))]

    def logprob_gap(self, ids: Sequence[int], model=None) -> dict:
        """Mean and max |engine - model| log-prob over ``ids[1:]`` at T = 1, without syncing first:
        ~0 (dtype rounding) exactly when the engine holds ``model``'s weights."""
        model = model if model is not None else self.policy
        engine = np.asarray(self.engine_logprobs(ids, sync=False))
        ref, _ = policy_logprobs(model, [_Seq(ids[:1], ids[1:])], 1.0, _model_device(model), with_entropy=False)
        d = np.abs(engine - np.asarray(ref[0]))
        return {"mean": float(d.mean()), "max": float(d.max()), "tokens": int(d.size)}

    def check_weight_sync(self, model=None, probe: Sequence[int] | None = None, tol: float = 0.05) -> dict:
        """Log-prob gap of a fixed probe sequence between the engine and ``model`` before and after
        :meth:`sync_weights`. Raises when the mean gap after the sync exceeds ``tol`` nats (our
        choice: well above bf16 rounding, far below what one optimizer step of a small model moves)."""
        model = model if model is not None else self.policy
        if model is None:
            raise ValueError("check_weight_sync: no model")
        if probe is None:
            probe = default_probe(model.config.vocab_size)
        before = self.logprob_gap(probe, model)
        self.sync_weights(model)
        after = self.logprob_gap(probe, model)
        if after["mean"] > tol:
            raise RuntimeError(f"weight sync did not take: engine vs trainer log-prob gap {after['mean']:.4g} "
                               f"(mean over {after['tokens']} tokens) after the sync exceeds {tol} "
                               f"(before the sync: {before['mean']:.4g})")
        return {"before": before, "after": after, "tol": tol}


def default_probe(vocab_size: int, length: int = 48, seed: int = 0) -> list[int]:
    """A fixed pseudo-random token sequence for :meth:`VLLMBackend.check_weight_sync`."""
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab_size, size=length)]


def _empty_cuda_cache() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _block_size(llm, default: int = 16) -> int:
    """The engine's KV block size (for :class:`PrefixLedger`); vLLM's default 16 when not found."""
    engine = getattr(llm, "llm_engine", None)
    for holder in (getattr(engine, "vllm_config", None), engine):
        size = getattr(getattr(holder, "cache_config", None), "block_size", None)
        if isinstance(size, int) and size > 0:
            return size
    return default


def _model_device(model):
    if model is None:
        return None
    try:
        return next(model.parameters()).device
    except StopIteration:
        return None


# ------------------------------------------------------------------------------------------------
# Wiring: the train job and lm-eval
# ------------------------------------------------------------------------------------------------

def build_backend(cfg: dict, model, model_path: str | None = None, seed: int = 0) -> VLLMBackend:
    """The ``rollout.backend: vllm`` backend of a resolved config, following ``model``; the engine
    reads config and tokenizer from ``model_path`` (default: where ``model`` was loaded from)."""
    require_vllm("rollout.backend: vllm")
    if not str(cfg.get("device", "cpu")).startswith("cuda"):
        raise ValueError(f"rollout.backend: vllm runs on CUDA GPUs only (device is {cfg.get('device')!r})")
    settings = VLLMSettings.from_config(cfg["rollout"].get("vllm"))
    path = model_path or getattr(model, "name_or_path", None)
    if not path:
        raise ValueError("rollout.backend: vllm needs the checkpoint the policy was loaded from (model_path)")
    return VLLMBackend.from_pretrained(str(path), policy=model, settings=settings, seed=seed)


def lm_eval_model_args(checkpoint: str, seed: int, extra: dict | None = None) -> dict:
    """Model args of lm-eval's ``vllm`` model: our choices are prefix caching on (the k samples of a
    problem share its prompt), the checkpoint's dtype, 90% of the GPU (an evaluation job has the
    GPU to itself; ``gpu_memory_utilization`` in ``extra`` overrides), the job's seed."""
    args = {"pretrained": str(checkpoint), "seed": int(seed), "dtype": "auto", "enable_prefix_caching": True,
            "gpu_memory_utilization": 0.9}
    args.update(extra or {})
    return args
