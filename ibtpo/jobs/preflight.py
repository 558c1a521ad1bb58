"""Preflight: will a training step of this preset fit in memory? Find out in a minute, not hours in.

``python -m ibtpo --config PRESET preflight --base BASE --train-data TRAIN [--out report.json]``
allocates what a training job allocates and runs one step's worst case at full size:

1. **load**: the policy (as every job loads it: :func:`~ibtpo.model.load.load_policy`, fp32), the
   generation backend, and through the :class:`~ibtpo.trainer.Trainer` itself the reference model
   (when any method has a KL term) and the optimizer;
2. **update** (twice: the second runs with AdamW's moment buffers allocated, as every step after the
   first does): the trainer's own ``update`` on the largest gradient-accumulation chunk of the
   preset, every sequence as long as it can be (the longest training prompt + ``rollout.max_new_tokens``
   response tokens), plus the no-grad log-prob pass of the reference (or old) policy at its own
   largest chunk;
3. **generation** (between the two updates, so with optimizer state resident): one backend call with
   ``batch_problems`` copies of the longest prompt, ``G`` samples each (``G`` of the method with the
   most trajectories; no sampler asks for more in one call) and no stop token, so every sample runs
   to ``max_new_tokens``;
4. with ``rollout.backend: vllm``: the engine sleeps during the updates, wakes for the generation,
   and :meth:`~ibtpo.rollout.vllm_backend.VLLMBackend.check_weight_sync` checks that it samples from
   the updated weights.

The worst case over the preset's ``methods``: the largest ``G``, a reference model if any method
has ``kl_coef > 0``, the entropy term if any has ``entropy_coef > 0``. With ``train.num_processes
> 1`` it measures one process's share (``ceil(batch_problems / num_processes)`` problems) with the
whole model, which is exact for ``ddp``; ``fsdp`` (sharded weights and state) it refuses, before
loading anything, since one process with the whole model would report a failure training does not have.

It prints peak memory per phase (CUDA: ``torch.cuda.max_memory_allocated`` / reserved and the
device's used memory, which includes vLLM's; CPU: peak RSS) and writes a JSON report. On an
out-of-memory error, or a peak above ``--max-memory-gb``, it fails with the figures, the sizes that
caused them and the config keys that shrink them. Nothing is written but the report.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..rollout.vllm_backend import VLLMSettings

GIB = 2**30


class PreflightFailed(RuntimeError):
    """The preset does not fit (the message holds the figures and what to change)."""


# ------------------------------------------------------------------------------------------------
# Sizes (pure)
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    method: str  # the method with the most trajectories per problem
    G: int
    problems: int  # problems per process per step
    trajectories: int  # problems * G
    update_chunk: int  # sequences in the largest gradient-accumulation chunk (trainer.largest_chunks)
    frozen_chunk: int  # sequences in the largest no-grad log-prob chunk
    prompt_tokens: int  # the longest training prompt
    max_new_tokens: int
    seq_len: int
    reference_model: bool  # trainer.needs_reference
    entropy_term: bool
    need_old: bool  # a no-grad pass of the policy for old log-probs (trainer.needs_old_logprobs)
    loss: dict
    processes: int = 1
    parallel: str = "single"


def sampler_G(sampler: dict) -> int:
    """Trajectories per problem of a sampler config (its registered class's ``G``)."""
    from ..registry import SAMPLERS, get

    cls = get(SAMPLERS, "sampler", sampler["name"])
    obj = cls(**{k: v for k, v in sampler.items() if k != "name"})
    if not hasattr(obj, "G"):
        raise ValueError(f"sampler {sampler['name']!r} does not say how many trajectories it samples per problem (G)")
    return int(obj.G)


def make_plan(cfg: dict, prompt_tokens: int) -> Plan:
    """The worst case over ``cfg['methods']`` (see the module doc), sized by the trainer's own rules
    (:func:`~ibtpo.trainer.largest_chunks`, :func:`~ibtpo.trainer.needs_old_logprobs`,
    :func:`~ibtpo.trainer.needs_reference`)."""
    from ..trainer import LossSettings, TrainSettings, largest_chunks, needs_old_logprobs, needs_reference

    if not cfg["methods"]:
        raise PreflightFailed("preflight: methods: [] is evaluate-only (nothing is trained): there is no training "
                              "run to check")
    t = cfg["train"]
    mdefs = {m: cfg["method_defs"][m] for m in cfg["methods"]}
    Gs = {m: sampler_G(d["sampler"]) for m, d in mdefs.items()}
    method = max(Gs, key=lambda m: (Gs[m], -cfg["methods"].index(m)))
    losses = [d["loss"] for d in mdefs.values()]  # completed with the schema's defaults
    kl = max(float(l["kl_coef"]) for l in losses)
    ent = max(float(l["entropy_coef"]) for l in losses)
    loss = {**mdefs[method]["loss"], "kl_coef": kl, "entropy_coef": ent}
    settings = TrainSettings.of(t)
    processes = settings.num_processes
    problems = math.ceil(settings.batch_problems / processes)
    n = problems * Gs[method]
    update_chunk, frozen_chunk = largest_chunks(n, settings)
    max_new = cfg["rollout"]["max_new_tokens"]
    return Plan(method=method, G=Gs[method], problems=problems, trajectories=n, update_chunk=update_chunk,
                frozen_chunk=frozen_chunk, prompt_tokens=prompt_tokens, max_new_tokens=max_new,
                seq_len=prompt_tokens + max_new, reference_model=needs_reference(LossSettings.of(loss)),
                entropy_term=ent > 0, need_old=needs_old_logprobs(settings), loss=loss, processes=processes,
                parallel=settings.parallel if processes > 1 else "single")


def longest_prompt(problems: list[dict], tokenizer, template: str) -> tuple[int, list[int]]:
    """``(row index, token ids)`` of the longest prompt, encoded as the rollout encodes it."""
    texts = [template.format(problem=p["problem"]) for p in problems]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    i = int(np.argmax([len(x) for x in ids]))
    return i, list(ids[i])


# ------------------------------------------------------------------------------------------------
# Memory figures
# ------------------------------------------------------------------------------------------------

def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def snapshot(device: torch.device) -> dict:
    """Memory figures in GiB. CUDA: the phase's peak (since :func:`reset_peak`) of torch's allocator
    and the whole device's current use (other allocators such as vLLM's included); CPU: the
    process's peak RSS so far (Linux cannot reset it per phase) and its current RSS."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        free, total = torch.cuda.mem_get_info(device)
        return {"kind": "cuda", "peak_allocated_gib": torch.cuda.max_memory_allocated(device) / GIB,
                "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB,
                "allocated_gib": torch.cuda.memory_allocated(device) / GIB,
                "device_used_gib": (total - free) / GIB, "device_total_gib": total / GIB}
    rss = _rss_bytes()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"kind": "cpu", "peak_rss_gib": _peak_rss_bytes() / GIB,
            "rss_gib": None if rss is None else rss / GIB, "total_gib": total / GIB}


def peak_gib(snap: dict) -> float:
    """The one number compared with a budget: CUDA max(peak reserved, device used); CPU peak RSS."""
    if snap["kind"] == "cuda":
        return max(snap["peak_reserved_gib"], snap["device_used_gib"])
    return snap["peak_rss_gib"]


def _fmt(snap: dict) -> str:
    if snap["kind"] == "cuda":
        return (f"peak allocated {snap['peak_allocated_gib']:.2f} GiB, "
                f"peak reserved {snap['peak_reserved_gib']:.2f} GiB, "
                f"device in use {snap['device_used_gib']:.2f} / {snap['device_total_gib']:.2f} GiB")
    rss = "?" if snap["rss_gib"] is None else f"{snap['rss_gib']:.2f}"
    return f"peak RSS {snap['peak_rss_gib']:.2f} GiB (now {rss}) of {snap['total_gib']:.1f} GiB"


def is_oom(e: BaseException) -> bool:
    if isinstance(e, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and any(s in msg for s in ("out of memory", "can't allocate memory",
                                                                   "cannot allocate memory"))


def estimates(cfg: dict, plan: Plan, n_params: int, vocab: int) -> dict:
    """Back-of-envelope sizes (GiB) that the advice quotes: fp32 weights, gradients, AdamW moments,
    the reference copy (bf16 under ``train.precision: bf16-mixed``), and the full-vocabulary logits of one
    chunk (float32)."""
    w = 4 * n_params / GIB
    ref = w / 2 if cfg["train"].get("precision") == "bf16-mixed" else w
    return {"parameters": n_params, "weights": w, "gradients": w, "adam_moments": 2 * w,
            "reference_model": ref if plan.reference_model else 0.0,
            "chunk_logits": 4 * plan.update_chunk * plan.seq_len * vocab / GIB,
            "frozen_chunk_logits": 4 * plan.frozen_chunk * plan.seq_len * vocab / GIB}


def advice(phase: str, cfg: dict, plan: Plan, est: dict | None) -> list[str]:
    """What to change in the config when ``phase`` runs out of memory."""
    t, ro = cfg["train"], cfg["rollout"]
    vllm = ro["backend"] == "vllm"
    gpu_share = VLLMSettings.from_config(ro.get("vllm")).gpu_memory_utilization if vllm else None
    shape = f"{plan.seq_len} tokens ({plan.prompt_tokens} prompt + {plan.max_new_tokens} new)"
    if phase == "load":
        ref = f", {est['reference_model']:.2f} GiB for the reference model" if est and plan.reference_model else ""
        size = "" if est is None else f" (fp32: {est['weights']:.2f} GiB of weights{ref})"
        out = [f"the models do not fit{size}: use a smaller policy.base, or train.num_processes > 1 with "
               "train.parallel: fsdp to shard weights, gradients and optimizer state"]
        if vllm:
            out.append(f"lower rollout.vllm.gpu_memory_utilization (now {gpu_share}): "
                       "vLLM takes that share of the GPU when it starts")
        return out
    if phase == "generation":
        if vllm:
            return [f"lower rollout.vllm.gpu_memory_utilization (now {gpu_share}) "
                    "or rollout.vllm.max_num_seqs; keep rollout.vllm.sleep: true so the engine frees its memory "
                    "during the update", f"lower rollout.max_new_tokens (now {plan.max_new_tokens})"]
        return [f"the HF backend keeps {plan.problems} x {plan.G} = {plan.trajectories} sequences of {shape} in its "
                f"KV cache: lower train.batch_problems (now {t['batch_problems']}) or rollout.max_new_tokens "
                f"(now {plan.max_new_tokens}), or use rollout.backend: vllm on a GPU"]
    logits = "" if est is None else f" (float32 logits alone: {est['chunk_logits']:.2f} GiB)"
    out = [f"the largest update chunk holds {plan.update_chunk} sequences of {shape}{logits}: raise "
           f"train.update_chunks (now {t['update_chunks']}) or train.minibatches (now {t['minibatches']}) "
           "to make chunks smaller",
           f"lower rollout.max_new_tokens (now {plan.max_new_tokens}) or "
           f"train.batch_problems (now {t['batch_problems']})"]
    if est is not None:
        out.append(f"resident during the update: weights {est['weights']:.2f} + gradients {est['gradients']:.2f} + "
                   f"AdamW moments {est['adam_moments']:.2f} + reference {est['reference_model']:.2f} GiB; "
                   "train.num_processes > 1 with train.parallel: fsdp shards them")
    if vllm:
        out.append("keep rollout.vllm.sleep: true (the engine sleeps during the update) or lower "
                   "rollout.vllm.gpu_memory_utilization")
    return out


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

def _fake_trajectories(plan: Plan, prompt: list[int], count: int, vocab: int, seed: int = 0):
    """``count`` full-length trajectories (random response tokens, advantages of both signs)."""
    from ..trajectories import Trajectory

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        resp = rng.integers(0, vocab, size=plan.max_new_tokens).tolist()
        adv = np.where(np.arange(plan.max_new_tokens) % 2 == 0, 1.0, -1.0) * (1 if i % 2 else -1)
        out.append(Trajectory(list(prompt), resp, [0.0] * len(resp), adv, float(i % 2), True, i))
    return out


@dataclasses.dataclass
class _Preflight:
    """What the phases of one preflight share: the preset, its worst case, the device, the report
    being filled, the memory budget, the size estimates (once the model is loaded) and the phase
    now running (an out-of-memory error is reported against it)."""

    cfg: dict
    plan: Plan
    device: torch.device
    report: dict
    max_memory_gb: float | None
    log: Callable
    est: dict | None = None
    phase: str = "load"

    def start(self, name: str) -> None:
        """Enter phase ``name``: errors now belong to it, and the device's peak counts from here."""
        self.phase = name
        reset_peak(self.device)

    def finish(self, name: str, extra: dict | None = None) -> dict:
        """Record phase ``name``'s memory figures (and ``extra``) in the report, print them, and fail
        when the peak is above the budget."""
        snap = snapshot(self.device)
        self.report["phases"][name] = {"memory": snap, **(extra or {})}
        self.log(f"[preflight] {name}: {_fmt(snap)}")
        if self.max_memory_gb is not None and peak_gib(snap) > self.max_memory_gb:
            raise PreflightFailed(_failure(f"{name}: peak {peak_gib(snap):.2f} GiB exceeds the budget of "
                                           f"{self.max_memory_gb} GiB (--max-memory-gb)", name, self.cfg, self.plan,
                                           self.est, snap))
        return snap

    def out_of_memory(self, e: BaseException) -> PreflightFailed:
        """The failure to raise for out-of-memory error ``e`` in the running phase."""
        return PreflightFailed(_failure(f"{self.phase}: out of memory ({type(e).__name__}: {str(e).strip()[:400]})",
                                        self.phase, self.cfg, self.plan, self.est, snapshot(self.device)))


def _before_loading(cfg: dict, device: torch.device) -> None:
    """Start from a clean device (figures of this run only, not of memory an earlier caller left
    cached) and fail on a missing vLLM before loading anything."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    if cfg["rollout"]["backend"] == "vllm":
        from ..rollout.vllm_backend import require_vllm

        require_vllm("rollout.backend: vllm")


def _worst_case(cfg: dict, base: str, train_data: str | Path):
    """The tokenizer, the training problems, the longest prompt (row, ids) and the preset's
    worst-case :class:`Plan`; a sharded (fsdp) preset is refused here, before any model is loaded."""
    from transformers import AutoTokenizer

    from ..data.problems import load_problems

    tokenizer = AutoTokenizer.from_pretrained(base)
    problems = load_problems(train_data)
    row, prompt = longest_prompt(problems, tokenizer, cfg["prompt_template"])
    plan = make_plan(cfg, len(prompt))
    if plan.processes > 1 and plan.parallel == "fsdp":
        raise PreflightFailed(f"preflight cannot check this preset: train.parallel is fsdp with train.num_processes "
                              f"{plan.processes}, so each process holds 1/{plan.processes} of the weights, gradients "
                              "and optimizer state, and this preflight runs one process with the whole model (it "
                              "would report an out-of-memory that training does not have). It is exact for ddp and "
                              "one process; for fsdp, run one training step under accelerate instead")
    return tokenizer, problems, row, prompt, plan


def _load_phase(pf: _Preflight, base: str, tokenizer, problems: list[dict], run_dir: str):
    """Phase ``load``: the policy, the generation backend and, through the trainer, the reference
    model and the optimizer (one chunk, one minibatch, one pass: the update phases size the chunk)."""
    from ..model.load import load_policy
    from ..rollout.factory import make_backend, rollout_sampling
    from ..trainer import Method, Trainer, TrainSettings

    cfg, plan = pf.cfg, pf.plan
    pf.start("load")
    model = load_policy(base, str(pf.device))
    n_params = sum(p.numel() for p in model.parameters())
    pf.est = estimates(cfg, plan, n_params, int(model.config.vocab_size))
    pf.report["estimates_gib"] = pf.est
    backend = make_backend(cfg, model, tokenizer, model_path=base)
    sampling = rollout_sampling(cfg, tokenizer)
    mdef = cfg["method_defs"][plan.method]
    settings = TrainSettings.of({**cfg["train"], "update_chunks": 1, "minibatches": 1, "ppo_epochs": 1,
                                 "num_processes": 1})
    trainer = Trainer(model, tokenizer, problems, Method(plan.method, mdef["sampler"], mdef["advantage"], plan.loss),
                      settings, sampling, backend, None, run_dir, cfg["prompt_template"], str(pf.device),
                      log=lambda *a, **k: None)
    pf.finish("load", {"parameters": n_params})
    return model, backend, trainer


def _update_phase(pf: _Preflight, trainer, chunk: list, frozen: list, name: str) -> None:
    """Phase ``name``: the no-grad log-prob pass of the reference (or old) policy on ``frozen``,
    when the worst case has one, then the trainer's update on ``chunk``."""
    plan = pf.plan
    pf.start(name)
    t0 = time.perf_counter()
    if plan.reference_model or plan.need_old:
        trainer.frozen_logprobs(trainer.ref_model if plan.reference_model else trainer.model, frozen,
                                plan.max_new_tokens)
    m = trainer.update(chunk)
    if pf.device.type == "cuda":
        torch.cuda.synchronize(pf.device)
    pf.finish(name, {"seconds": time.perf_counter() - t0, "loss_metrics": m})


def _generation_phase(pf: _Preflight, backend, sampling, prompt: list[int]) -> None:
    """Phase ``generation``: one backend call, ``G`` samples for each of the step's copies of the
    longest prompt, with no stop token so every sample runs to ``max_new_tokens``."""
    plan = pf.plan
    pf.start("generation")
    t0 = time.perf_counter()
    params = dataclasses.replace(sampling, stop_token_ids=())  # no stop: every sample runs to the end
    outs = backend.generate([prompt] * plan.problems, plan.G, params, seed=0)
    gen_tokens = sum(len(c.token_ids) for o in outs for c in o)
    pf.finish("generation", {"seconds": time.perf_counter() - t0, "sequences": plan.problems * plan.G,
                             "tokens_generated": gen_tokens})


def _weight_sync_phase(pf: _Preflight, backend, model) -> None:
    """Phase ``weight_sync`` (vLLM): the engine samples from the updated weights."""
    pf.start("weight_sync")
    res = backend.check_weight_sync(model)
    pf.finish("weight_sync", {"logprob_gap": res})


def _summarise(report: dict, t_start: float, device: torch.device, log) -> None:
    """The overall peak, the phase it came from and the run time, into the report and the log."""
    peaks = {k: peak_gib(v["memory"]) for k, v in report["phases"].items()}
    report["peak_gib"] = max(peaks.values())
    report["peak_phase"] = max(peaks, key=peaks.get)
    report["seconds"] = time.perf_counter() - t_start
    log(f"[preflight] OK: peak {report['peak_gib']:.2f} GiB in {report['peak_phase']} "
        f"({'CUDA allocator / device' if device.type == 'cuda' else 'RSS'}); {report['seconds']:.1f} s")


def _write_report(report: dict, out: str | Path) -> None:
    """Write the report as JSON to ``out``, atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    os.replace(tmp_out, out)


def run(cfg: dict, base: str | Path, train_data: str | Path, out: str | Path | None = None,
        max_memory_gb: float | None = None, log=print) -> dict:
    """Run the preflight (module doc); returns the report, raises :class:`PreflightFailed`."""
    t_start = time.perf_counter()
    base = str(base)
    device = torch.device(cfg["device"])
    _before_loading(cfg, device)
    tokenizer, problems, row, prompt, plan = _worst_case(cfg, base, train_data)
    report: dict = {"preset": cfg.get("preset"), "base": base, "device": str(device),
                    "backend": cfg["rollout"]["backend"], "plan": dataclasses.asdict(plan),
                    "longest_prompt_row": row, "phases": {}}
    log(f"[preflight] {cfg.get('preset')} on {device}: worst case {plan.method} (G={plan.G}), "
        f"{plan.problems} problems x {plan.G} = {plan.trajectories} sequences of up to {plan.seq_len} tokens "
        f"({plan.prompt_tokens} prompt, row {row + 1} of {train_data}, + {plan.max_new_tokens} new); update chunk "
        f"{plan.update_chunk}, no-grad chunk {plan.frozen_chunk}; reference model: {plan.reference_model}")
    pf = _Preflight(cfg, plan, device, report, max_memory_gb, log)
    try:
        with tempfile.TemporaryDirectory(prefix="ibtpo-preflight-") as tmp:
            model, backend, trainer = _load_phase(pf, base, tokenizer, problems, tmp)
            release = getattr(backend, "release", lambda: None)
            vocab = int(model.config.vocab_size)
            chunk = _fake_trajectories(plan, prompt, plan.update_chunk, vocab)
            frozen = _fake_trajectories(plan, prompt, plan.frozen_chunk, vocab, seed=1)
            before = [p.detach().clone() for p in list(model.parameters())[:4]]
            release()  # the engine sleeps during the update
            _update_phase(pf, trainer, chunk, frozen, "update_1")
            _generation_phase(pf, backend, trainer.sampling, prompt)
            release()
            _update_phase(pf, trainer, chunk, frozen, "update_2")  # with AdamW's moments allocated
            report["params_changed"] = any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
            if cfg["rollout"]["backend"] == "vllm":
                _weight_sync_phase(pf, backend, model)
    except PreflightFailed:
        raise
    except Exception as e:  # noqa: BLE001 - out of memory is the case this job exists for
        if not is_oom(e):
            raise
        raise pf.out_of_memory(e) from None
    _summarise(report, t_start, device, log)
    if out is not None:
        _write_report(report, out)
    return report


def _failure(what: str, phase: str, cfg: dict, plan: Plan, est: dict | None, snap: dict) -> str:
    key = "generation" if phase == "generation" else "load" if phase == "load" else "update"
    lines = [f"preflight FAILED in {what}", f"  memory: {_fmt(snap)}",
             f"  sizes: {plan.problems} problems x G={plan.G} ({plan.method}) = {plan.trajectories} sequences of "
             f"{plan.seq_len} tokens; update chunk {plan.update_chunk}, no-grad chunk {plan.frozen_chunk}"]
    if est is not None:
        lines.append(f"  estimates: {est['parameters'] / 1e6:.1f}M parameters, fp32 weights {est['weights']:.2f} GiB, "
                     f"chunk logits {est['chunk_logits']:.2f} GiB")
    lines += ["  what to change:"] + [f"    - {a}" for a in advice(key, cfg, plan, est)]
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--base", required=True, help="the base policy (checkpoint directory or HF id)")
    p.add_argument("--train-data", required=True, help="training problems JSONL (the longest prompt is used)")
    p.add_argument("--out", help="JSON report (phases, memory peaks, the worst case)")
    p.add_argument("--max-memory-gb", type=float, default=None,
                   help="fail when a phase's peak exceeds this many GiB (default: only real OOMs fail)")


def main(args) -> int:
    from . import job_config

    try:
        run(job_config(args), args.base, args.train_data, args.out, max_memory_gb=args.max_memory_gb)
    except PreflightFailed as e:
        print(e, file=sys.stderr)
        return 1
    return 0
