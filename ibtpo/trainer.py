"""The one RL training loop: sample -> grade -> advantage -> clipped token loss -> step.

It knows no method by name: the method is a composition from config (``sampler``, ``advantage``,
``loss``) whose pieces are looked up in :mod:`ibtpo.registry`.

Per step it logs (progress line + ``metrics.jsonl``): reward mean/std, Eff-Rate (share of
problems whose trajectory rewards are not all equal), mean token entropy of the sampled tokens,
KL, clip fractions low/high, response length, generated tokens (step and cumulative, and per
problem), wall time, and, when the step's trees carry fork records (any tree sampler), where they
forked: ``fork_root_share``, ``fork_position``, ``n_forks`` (:mod:`ibtpo.analysis.forks`).

Checkpoints every ``checkpoint_every`` steps (HF format + trainer state, atomically). A rerun
resumes from the latest complete checkpoint: the data order and the per-step sampling seeds are
functions of ``(seed, step)``, and optimizer, scheduler and RNG states are restored, so a resumed
run reproduces the uninterrupted one.

Several processes (``train.num_processes``, launched by ``accelerate launch``; the group is
accelerate's, the model's split over it in :mod:`ibtpo.distributed`) split a step's problems:
problem ``j`` of the step goes to process ``j % world``, which samples and scores its share. The
update is then the one-process update on the whole (global) batch: trajectories keep their
global order (problem position, then leaf), minibatches are cut from that order, the loss
normalisers are the minibatch's global token and sequence counts, gradients are summed over
processes, logged metrics are reduced over them, and only process 0 writes checkpoints and
``metrics.jsonl``. Rollout seeds depend on the process (:func:`rollout_seed`), so runs are
reproducible for a given number of processes.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object

from . import checkpoint as ckpt, precision
from .analysis.forks import FORK_KEYS, combine as combine_forks, progress as fork_progress, tree_forks
from .distributed import Dist, max_value, single, sum_values
from .logprob_mismatch import add_sums, mismatch_metrics, mismatch_sums
from .logprobs import packs, sequence_logprobs
from .losses import policy_loss
from .registry import build_advantage, build_sampler
from .rollout.backend import SamplingParams
from .rollout.context import RolloutContext
from .trajectories import Trajectory, extract, leaf_sequences


@dataclass
class TrainSettings:
    """Optimisation settings shared by every method: the config's ``train`` section plus the RL seed.
    Keys, types and defaults are declared once, in the schema (``pipelines/schemas/config.schema.yaml``);
    build one with :meth:`of`."""

    steps: int
    batch_problems: int  # problems per step; trajectories per step = batch_problems * G
    checkpoint_every: int
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    grad_clip: float
    warmup_steps: int
    schedule: str  # constant | cosine (after warm-up)
    ppo_epochs: int  # passes over one step's trajectories
    minibatches: int  # optimizer steps per pass
    update_chunks: int  # chunks per minibatch (gradient accumulation; length- or prefix-sorted, see _chunk_order)
    num_processes: int  # training processes (GPUs); > 1 is launched by ``accelerate launch``
    parallel: str  # accelerate config under pipelines/accelerate/ when num_processes > 1
    precision: str = "fp32"  # fp32 | bf16-mixed (ibtpo/precision.py)
    gradient_checkpointing: bool = False  # recompute each layer's activations in the backward
    seed: int = 0  # the RL seed (not a config key: the DAG's seeds list)

    @classmethod
    def of(cls, train: dict, seed: int = 0) -> "TrainSettings":
        """From a ``train`` section (checked, completed with the schema's defaults)."""
        from .config import fill_section

        return cls(**fill_section("train", train), seed=seed)


@dataclass
class LossSettings:
    """Loss settings of a method (its ``loss`` section; keys and defaults in the schema, build with
    :meth:`of`). ``norm_len`` ``None``: the rollout's ``max_new_tokens``."""

    clip_low: float
    clip_high: float
    kl_coef: float
    entropy_coef: float
    aggregation: str
    norm_len: int | None

    @classmethod
    def of(cls, loss: dict | None = None) -> "LossSettings":
        from .config import fill_section

        return cls(**fill_section("method_defs.*.loss", loss))


@dataclass
class Method:
    name: str
    sampler: dict = field(default_factory=lambda: {"name": "chains", "G": 8})
    advantage: dict = field(default_factory=lambda: {"name": "grpo"})
    loss: dict = field(default_factory=dict)

    def check_shared(self) -> None:
        """A parameter both the sampler and the advantage take (the IB parameters ``ib``: IBTree's node
        selection and the IB-TPO advantage) must have one value: the method is refused otherwise."""
        for key in sorted((set(self.sampler) & set(self.advantage)) - {"name"}):
            if self.sampler[key] != self.advantage[key]:
                raise ValueError(f"method {self.name!r}: sampler.{key} {self.sampler[key]!r} and advantage.{key} "
                                 f"{self.advantage[key]!r} disagree; declare it once (config method_defs.<m>.{key})")


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2**31 - 1)


def rollout_seed(seed: int, step: int, rank: int = 0) -> int:
    """The sampling seed of process ``rank``'s share of ``step`` (process 0: the one-process seed).

    Backends draw one random stream per batched call, so a problem's samples depend on what else
    is in the call; a multi-process run therefore reproduces itself for a given number of
    processes, not a one-process run's rollouts (its *update* on a given batch is the same)."""
    return (_step_seed(seed, step) + rank * 1_000_033) % (2**31 - 1)


def problems_for_step(n_problems: int, batch: int, seed: int, step: int) -> list[int]:
    """Indices of the problems of ``step`` (0-based): epochs of seeded permutations, concatenated."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n_problems)
        perm = np.random.default_rng([seed, epoch]).permutation(n_problems)
        take = min(batch - len(out), n_problems - offset)
        out.extend(int(i) for i in perm[offset:offset + take])
    return out


# -- the shape of an update (pure: the trainer's loop and the preflight job both use these) -------

def needs_reference(loss: LossSettings) -> bool:
    """Whether the loss has a KL term, so the trainer keeps a frozen reference model and runs a
    no-grad pass of it over every step's trajectories."""
    return loss.kl_coef > 0


def needs_old_logprobs(train: TrainSettings) -> bool:
    """Whether an update runs a no-grad pass of the policy for the old log-probs: it does when a
    step's trajectories are updated on more than once (several passes or minibatches). A single
    update is on-policy: its old log-probs are its current ones."""
    return train.ppo_epochs > 1 or train.minibatches > 1


def split_minibatches(order, minibatches: int) -> list[np.ndarray]:
    """``order`` (positions in the step's batch) cut into the minibatches of one pass, one
    optimizer step each."""
    return np.array_split(order, minibatches)


def split_chunks(order, chunks: int, collective: bool = False) -> list[np.ndarray]:
    """``order`` cut into at most ``chunks`` consecutive chunks, one forward (and backward) each:
    gradient accumulation, or a no-grad log-prob pass. ``collective`` (sharded parameters, every
    forward a collective): exactly ``chunks`` chunks, some possibly empty, so that every process
    runs the same number of passes."""
    order = np.asarray(order, dtype=int)
    if collective:
        return np.array_split(order, chunks)
    return np.array_split(order, min(chunks, len(order))) if len(order) else []


def largest_chunks(n: int, train: TrainSettings) -> tuple[int, int]:
    """``(update, no-grad)``: the most sequences one gradient-accumulation chunk and one no-grad
    log-prob chunk hold when a process updates on ``n`` trajectories (one process, unsharded)."""
    def largest(parts) -> int:
        return max((len(p) for p in parts), default=0)

    per_minibatch = largest(split_minibatches(np.arange(n), train.minibatches))
    return (largest(split_chunks(np.arange(per_minibatch), train.update_chunks)),
            largest(split_chunks(np.arange(n), train.update_chunks)))


def _pad(rows: list, R: int, device) -> torch.Tensor:
    out = torch.zeros((len(rows), R), dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.as_tensor(np.asarray(r, dtype=np.float32))
    return out.to(device)


class Trainer:
    def __init__(self, model, tokenizer, problems: list[dict], method: Method, train: TrainSettings,
                 sampling: SamplingParams, backend, grader, run_dir: str | Path, prompt_template: str = "{problem}\n",
                 device: str = "cpu", log=print, dist: Dist | None = None):
        if not problems:
            raise ValueError("no training problems")
        self.dist = dist or single(device)  # the model split over processes: what accelerate cannot do
        self.accelerator = self.dist.accelerator  # this process in the group
        self.tokenizer, self.problems = tokenizer, problems
        self.method, self.cfg, self.sampling = method, train, sampling
        self.loss_cfg = LossSettings.of(method.loss)
        self.device = torch.device(device)
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "ckpt"
        self.log = log if self.accelerator.is_main_process else (lambda *_, **__: None)
        method.check_shared()
        self.sampler = build_sampler(method.sampler)
        self.advantage = build_advantage(method.advantage)  # advantage(tree): per-token values per leaf
        # grading runs in the background while the reference log-probs are computed (train_step)
        self.ctx = RolloutContext(backend, tokenizer, grader, sampling, prompt_template, defer_grading=True)
        # sharded parameters cannot generate (ragged decoding is no collective): keep a full copy
        self.gen_model = copy.deepcopy(model).requires_grad_(False) if self.dist.collective_forward else model
        precision.check_device(train.precision, device)
        self.ref_model = None
        if needs_reference(self.loss_cfg):  # its parameters in bf16 under bf16-mixed
            self.ref_model = self.dist.shard(precision.cast_copy(model, precision.frozen_copy_dtype(train.precision)))
        if train.gradient_checkpointing:
            precision.enable_gradient_checkpointing(model)
        self.model = self.dist.shard(model)
        if self.gen_model is not model:
            backend.sync_weights(self.gen_model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=train.lr, betas=tuple(train.betas),
                                     weight_decay=train.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.step = 0
        self.cum_tokens = 0

    def _lr_factor(self, step: int) -> float:
        c = self.cfg
        if c.warmup_steps and step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        if c.schedule == "cosine":
            frac = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return 1.0

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """What resuming needs (under ``fsdp`` gathered from the shards: every process calls it)."""
        return {
            "step": self.step,
            "cum_tokens": self.cum_tokens,
            "optimizer": self.dist.optimizer_state(self.model, self.opt),
            "scheduler": self.sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "ref_model": self.dist.model_state(self.ref_model) if self.ref_model is not None else None,
            "processes": self.accelerator.num_processes,
            "strategy": self.dist.strategy,
        }

    def try_resume(self) -> bool:
        if self.accelerator.is_main_process:
            ckpt.clean_partial(self.ckpt_root)
        self.accelerator.wait_for_everyone()
        last = ckpt.latest(self.ckpt_root)
        if last is None:
            return False
        d = ckpt.step_dir(self.ckpt_root, last)
        state = torch.load(d / ckpt.STATE_FILE, weights_only=False)
        procs, strategy = state.get("processes", 1), state.get("strategy", "single")
        world = self.accelerator.num_processes
        if procs != world or (strategy == "fsdp") != (self.dist.strategy == "fsdp"):
            raise RuntimeError(
                f"checkpoint {d} was written by a {procs}-process '{strategy}' run; this run has {world} "
                f"process(es) ('{self.dist.strategy}'). Rollout seeds and the optimizer state layout depend on "
                f"that, so it cannot resume here: restore train.num_processes / train.parallel "
                f"or remove {self.ckpt_root}")
        from safetensors.torch import load_file

        weights = load_file(str(d / "model.safetensors"))
        missing, unexpected = self.gen_model.load_state_dict(weights, strict=False)
        if unexpected or any("embed" not in k and "lm_head" not in k for k in missing):
            raise RuntimeError(f"checkpoint {d} does not match the model: missing={missing} unexpected={unexpected}")
        if self.gen_model.config.tie_word_embeddings:
            self.gen_model.tie_weights()
        if self.gen_model is not self.model:
            self.dist.load_model_state(self.model, self.gen_model.state_dict())
        self.dist.load_optimizer_state(self.model, self.opt, state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if self.ref_model is not None and state.get("ref_model") is not None:
            self.dist.load_model_state(self.ref_model, state["ref_model"])
        self.step, self.cum_tokens = state["step"], state["cum_tokens"]
        self.ctx.backend.sync_weights(self.gen_model)  # a rollout copy (rollout.dtype) takes the resumed weights
        if self.accelerator.is_main_process:
            self._truncate_metrics(self.step)
        self.log(f"[train] resumed from {d} (step {self.step})")
        return True

    def _truncate_metrics(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if path.exists():
            keep = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l)["step"] <= step]
            path.write_text("".join(l + "\n" for l in keep))

    def save(self) -> Path:
        """Checkpoint the current step; process 0 writes it, every process waits for it."""
        state = self.state_dict()
        path = ckpt.step_dir(self.ckpt_root, self.step)
        if self.accelerator.is_main_process:
            path = ckpt.save(self.ckpt_root, self.step, self.gen_model, self.tokenizer, state)
        self.accelerator.wait_for_everyone()
        return path

    # -- one step ----------------------------------------------------------------------------
    def train_step(self) -> dict:
        t0 = time.perf_counter()
        idx = problems_for_step(len(self.problems), self.cfg.batch_problems, self.cfg.seed, self.step)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        mine = list(range(rank, len(idx), world))  # this process's problem positions
        batch = [self.problems[idx[j]] for j in mine]
        seed = rollout_seed(self.cfg.seed, self.step, rank)
        trees = self.sampler.sample(batch, self.ctx, seed=seed) if batch else []
        t_gen = time.perf_counter() - t0
        self.ctx.backend.release()  # colocated engines free their memory for the update
        ref_all = None
        if self.ref_model is not None:  # needs only the tokens: overlaps the last round's grading
            seqs = leaf_sequences(trees)
            ref_all = self.frozen_logprobs(self.ref_model, seqs, max((len(q.response_ids) for q in seqs), default=1))
        t_ref = time.perf_counter() - t0 - t_gen
        self.ctx.settle()
        t_wait = time.perf_counter() - t0 - t_gen - t_ref
        trajs = extract(trees, [self.advantage(t) for t in trees])
        t_adv = time.perf_counter() - t0 - t_gen - t_ref - t_wait
        metrics = self.update(trajs, self._global_layout(mine, trajs), ref_all=ref_all)
        roll = self._rollout_stats(mine, trees, trajs)
        gen_tokens = sum(r["gen_tokens"] for r in roll)
        self.cum_tokens += gen_tokens
        self.step += 1
        rewards = np.array([x for r in roll for x in r["rewards"]])
        forks = combine_forks([r["forks"] for r in roll])  # over the whole step's trees
        metrics.update({
            "step": self.step,
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()),
            "eff_rate": float(np.mean([r["eff"] for r in roll])),
            "sample_entropy": float(np.mean([e for r in roll for e in r["entropies"]])),
            "response_len": float(np.mean([x for r in roll for x in r["lengths"]])),
            "truncated_frac": float(np.mean([x for r in roll for x in r["truncated"]])),
            "trajectories": len(rewards),
            "gen_tokens": gen_tokens,
            "cum_gen_tokens": self.cum_tokens,
            "tokens_per_problem": forks["tokens_per_problem"],
            "lr": self.sched.get_last_lr()[0],
            "time_gen": t_gen,
            "time_ref": t_ref,
            "time_grade_wait": t_wait,
            "time_adv": t_adv,
            "time_step": time.perf_counter() - t0,
        })
        if forks["n_forks"]:
            metrics.update({k: forks[k] for k in FORK_KEYS})
        return metrics

    def _global_layout(self, positions: list[int], trajs: list[Trajectory]) -> list[tuple[int, int, int]]:
        """``(process, local index, response tokens)`` of every trajectory of the step, in the
        one-process order (problem position in the step, then leaf order)."""
        rank = self.accelerator.process_index
        local = [(positions[t.problem_index], rank, k, len(t.response_ids)) for k, t in enumerate(trajs)]
        return [(r, k, n) for _, r, k, n in sorted(gather_object(local))]

    def _rollout_stats(self, positions: list[int], trees, trajs: list[Trajectory]) -> list[dict]:
        """Per problem of the whole step (gathered from every process, in problem order): what the
        progress metrics are computed from."""
        per_tree: list[list[Trajectory]] = [[] for _ in trees]
        for t in trajs:
            per_tree[t.problem_index].append(t)
        local = [{"pos": positions[i], "rewards": [t.reward for t in ts],
                  "eff": len(set(tree.rewards())) > 1,
                  "entropies": [e for n in tree.nodes[1:] for e in n.entropies],
                  "lengths": [len(t.response_ids) for t in ts], "truncated": [t.truncated for t in ts],
                  "gen_tokens": tree.generated_tokens, "forks": tree_forks(tree)}
                 for i, (tree, ts) in enumerate(zip(trees, per_tree))]
        return sorted(gather_object(local), key=lambda r: r["pos"])

    @staticmethod
    def _chunk_order(model, trajs: list[Trajectory], rows) -> list[int]:
        """``rows`` in chunking order: by length (less padding), or, where :func:`~ibtpo.logprobs.sequence_logprobs`
        packs the batch into a prefix trie (no padding there), by token sequence, so rows sharing a
        prefix (a group's prompt, a tree's path) fall into one chunk and their prefix is computed once."""
        if packs(model):
            return sorted(rows, key=lambda i: (trajs[i].prompt_ids, trajs[i].response_ids))
        return sorted(rows, key=lambda i: len(trajs[i].prompt_ids) + len(trajs[i].response_ids))

    def _chunks(self, order) -> list[np.ndarray]:
        """Sorted ``order`` (:meth:`_chunk_order`) cut into this run's chunks (:func:`split_chunks`)."""
        return split_chunks(order, self.cfg.update_chunks, self.dist.collective_forward)

    def _idle_pass(self, model, backward: bool) -> None:
        """An empty chunk under sharded parameters: a one-token forward (and a zero backward) that
        joins the other processes' collectives and adds nothing."""
        ids = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        with torch.set_grad_enabled(backward):
            with self._autocast():
                logits = model(input_ids=ids).logits
            if backward:
                (logits.sum() * 0.0).backward()

    @torch.no_grad()
    def frozen_logprobs(self, model, trajs: list[Trajectory], R: int, skip: frozenset = frozenset()) -> torch.Tensor:
        """``(B, R)`` log-probs under ``model`` without gradients, computed in chunks (:meth:`_chunk_order`;
        rows in ``skip`` are left at zero)."""
        out = torch.zeros((len(trajs), R), device=self.device)
        order = self._chunk_order(model, trajs, [i for i in range(len(trajs)) if i not in skip])
        for chunk in self._chunks(order):
            if not len(chunk):
                self._idle_pass(model, backward=False)
                continue
            with self._autocast():
                lp = sequence_logprobs(model, [trajs[i] for i in chunk], self.sampling.temperature, self.device)[0]
            out[torch.as_tensor(chunk, device=self.device), :lp.shape[1]] = lp
        return out

    def _autocast(self):
        """The context of the trainer's forwards: autocast under ``train.precision: bf16-mixed``."""
        return precision.autocast(self.cfg.precision, self.device)

    def update(self, trajs: list[Trajectory], layout: list[tuple[int, int, int]] | None = None,
               ref_all: torch.Tensor | None = None) -> dict:
        """PPO-style passes over the step's trajectories. ``layout`` (from :meth:`_global_layout`)
        places this process's trajectories in the global batch; without it the batch is local.
        ``ref_all``: the reference log-probs of ``trajs`` when already computed (train_step
        computes them while the rollout is graded); else computed here."""
        rank = self.accelerator.process_index
        if layout is None:
            layout = [(rank, k, len(t.response_ids)) for k, t in enumerate(trajs)]
        R = max((len(t.response_ids) for t in trajs), default=1)
        adv_all = _pad([t.advantages for t in trajs], R, self.device)
        if ref_all is None and self.ref_model is not None:
            ref_all = self.frozen_logprobs(self.ref_model, trajs, R)
        order = np.arange(len(layout))
        # The first minibatch of a single pass is updated before any optimizer step: its old
        # log-probs are its current ones (ratio 1), detached from its own forward, so the no-grad
        # pass for old log-probs covers only the later minibatches (a later pass revisits all).
        first = split_minibatches(order, self.cfg.minibatches)[0] if self.cfg.ppo_epochs == 1 else []
        on_policy = frozenset(layout[g][1] for g in first if layout[g][0] == rank)
        old_all = self.frozen_logprobs(self.model, trajs, R, skip=on_policy) if needs_old_logprobs(self.cfg) else None
        rollout_all = _pad([t.old_logprobs for t in trajs], R, self.device)  # the sampler's own log-probs
        self.model.train()
        agg: dict[str, list[float]] = {}
        mismatch: dict[str, float] = {}  # rollout vs trainer log-probs: the first pass, before any update
        for epoch in range(self.cfg.ppo_epochs):
            if epoch:
                order = broadcast_object_list([np.random.permutation(len(layout))])[0]  # rank 0's order
            for i, mb in enumerate(split_minibatches(order, self.cfg.minibatches)):
                local = [layout[g][1] for g in mb if layout[g][0] == rank]
                self.opt.zero_grad(set_to_none=True)
                old = None if (epoch, i) == (0, 0) else old_all  # None: on-policy, old := current
                m = self._accumulate_gradients(local, trajs, adv_all, old, ref_all,
                                               n_tokens=float(sum(layout[g][2] for g in mb)), n_seqs=float(len(mb)),
                                               rollout_all=rollout_all if epoch == 0 else None, mismatch=mismatch)
                m = sum_values(m)
                gnorm = self.dist.clip_global_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                if not torch.isfinite(gnorm):
                    raise FloatingPointError(f"non-finite gradient norm at step {self.step + 1}; step refused")
                self.opt.step()
                m["grad_norm"] = gnorm.item()
                for k, v in m.items():
                    agg.setdefault(k, []).append(v)
        self.sched.step()
        self.dist.copy_full_params(self.model, self.gen_model)
        self.ctx.backend.sync_weights(self.gen_model)
        mm_max = max_value(mismatch.pop("mm_max", 0.0))
        return {**{k: float(np.mean(v)) for k, v in agg.items()}, **mismatch_metrics({**sum_values(mismatch),
                                                                                       "mm_max": mm_max})}

    def _accumulate_gradients(self, mb, trajs, adv_all, old_all, ref_all,
                              n_tokens: float | None = None, n_seqs: float | None = None,
                              rollout_all: torch.Tensor | None = None, mismatch: dict | None = None) -> dict:
        """Backward of one minibatch's loss, in chunks (:meth:`_chunk_order`: length-sorted, or prefix-sorted).

        Chunk losses use the whole minibatch's token / sequence counts as denominators (by default
        those of ``mb``; several processes pass the global minibatch's), so their gradients add up
        to the unchunked minibatch gradient (up to float summation order). With ``rollout_all`` (the
        sampler's log-probs; the first pass only, whose old log-probs are the trainer's before any update)
        the chunks' :func:`~ibtpo.logprob_mismatch.mismatch_sums` are added into ``mismatch``."""
        lc, T = self.loss_cfg, self.sampling.temperature
        mb = self._chunk_order(self.model, trajs, list(mb))
        if n_tokens is None:
            n_tokens = float(sum(len(trajs[i].response_ids) for i in mb))
        if n_seqs is None:
            n_seqs = float(len(mb))
        parts: dict[str, float] = {}
        for chunk in self._chunks(mb):
            if not len(chunk):
                self._idle_pass(self.model, backward=True)
                continue
            ch_trajs = [trajs[i] for i in chunk]
            with self._autocast():
                logp, mask, ent = sequence_logprobs(self.model, ch_trajs, T, self.device,
                                                    with_entropy=lc.entropy_coef > 0)
            r = logp.shape[1]
            sel = torch.as_tensor(chunk, device=self.device)
            old = old_all[sel, :r] if old_all is not None else logp.detach()
            if rollout_all is not None and mismatch is not None:
                add_sums(mismatch, mismatch_sums(rollout_all[sel, :r], old, mask))
            loss, m = policy_loss(
                logp, old, adv_all[sel, :r], mask, eps_low=lc.clip_low, eps_high=lc.clip_high,
                aggregation=lc.aggregation, ref_logp=ref_all[sel, :r] if ref_all is not None else None,
                kl_coef=lc.kl_coef, entropy=ent, entropy_coef=lc.entropy_coef,
                norm_len=lc.norm_len or self.sampling.max_new_tokens, n_tokens=n_tokens, n_seqs=n_seqs)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step + 1}; step refused")
            loss.backward()
            for k, v in m.items():
                parts[k] = parts.get(k, 0.0) + v
        return parts

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.try_resume()
        metrics_path = self.run_dir / "metrics.jsonl"
        if self.accelerator.is_main_process and self.step == 0 and not ckpt.list_steps(self.ckpt_root):
            metrics_path.write_text("")
        t_start = time.perf_counter()
        while self.step < self.cfg.steps:
            m = self.train_step()
            m["method"] = self.method.name
            if self.accelerator.is_main_process:
                with metrics_path.open("a") as f:
                    f.write(json.dumps(m) + "\n")
            self.log(
                f"[train {self.method.name} seed={self.cfg.seed}] step {m['step']}/{self.cfg.steps} "
                f"reward={m['reward_mean']:.3f} eff={m['eff_rate']:.2f} ent={m['sample_entropy']:.3f} "
                f"kl={m.get('kl', 0):.4f} clip={m['clipfrac_low']:.3f}/{m['clipfrac_high']:.3f} "
                f"len={m['response_len']:.1f} tok={m['gen_tokens']} cum={m['cum_gen_tokens']}{fork_progress(m)} "
                f"t={m['time_step']:.2f}s (gen {m['time_gen']:.2f}s) elapsed={time.perf_counter() - t_start:.0f}s"
            )
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                self.save()
