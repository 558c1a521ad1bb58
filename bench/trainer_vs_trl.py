"""Time per full GRPO training step (rollout + update): this project's ``Trainer`` vs TRL's ``GRPOTrainer``.

Both trainers start from their own copy of the same initial weights (the default 4-layer, d_model 128
char-level tiny Llama, or ``--base DIR``) and do the same work per step:

* 16 problems x G=8 completions (``ibtpo.data.arithmetic``; prompt ``"{problem}\\n"``; step k of both
  uses the same 16 problems: TRL reads them in our per-step order, unshuffled), sampled at
  temperature 1.0, top_p 1.0, no top-k, at most ``--max-new-tokens`` (96) new tokens, stop at ``<eos>``;
* reward = the project's grader (``Grader.grade_many([(gold, completion), ...])``, gold first; one
  ``Grader`` per trainer), group-normalised advantages (sample std, ddof=1);
* one optimizer update (AdamW, lr 2e-4, betas (0.9, 0.99), grad clip 1.0, constant lr) on all 128
  completions: PPO clip eps 0.2, k3 KL to a frozen reference with coefficient 0.001, token-mean loss.

TRL settings (read from TRL 1.16's GRPOConfig / GRPOTrainer; see ``trl_config``):
``per_device_train_batch_size=128``, ``gradient_accumulation_steps=1`` -> ``steps_per_generation=1``,
``generation_batch_size=128`` (16 prompts x ``num_generations=8``): one generation batch per optimizer
step, one forward/backward over all 128 completions, ``num_iterations=1`` (so TRL skips the
old-logprob pass, as ours does). ``loss_type="dapo"``: sum of per-token losses divided by the number of
completion tokens in the whole generation batch, i.e. exactly our ``token-mean`` (``bnpo`` would be
identical here, with one micro-batch). ``use_bias_correction_kl=False`` so the KL term is plain k3 like
ours. ``gradient_checkpointing=False`` (TRL defaults it to True; ours does not checkpoint).

Procedure: ``--warmup`` steps of each (untimed), then ``--rounds`` rounds, each one TRL step then one
step of ours, in one process: a ``TrainerCallback`` runs our step inside TRL's ``on_step_end``, and a
TRL step is timed from the end of our previous step to TRL's next ``on_step_end`` (so it includes
TRL's data loading, generation, reward, reference pass, forward/backward, clip, optimizer step and
logging bookkeeping).

Prints per-step timings, generated tokens and completion lengths of both, a time breakdown of both,
the medians, and as the last line ``ratio ours/trl = X.XX`` (median ours / median TRL).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="timed steps per trainer (interleaved)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per trainer before timing")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both")
    p.add_argument("--base", default=None, help="HF checkpoint dir (model + tokenizer); default: fresh tiny Llama")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--problems", type=int, default=16, help="problems per step")
    p.add_argument("--G", type=int, default=8, help="completions per problem")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta", type=float, default=0.001, help="KL coefficient (both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=0, help="seed of the arithmetic problem pool")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# small timing helpers
# ----------------------------------------------------------------------------------------------

class Clock:
    """Accumulates wall time of wrapped callables under named keys."""

    def __init__(self):
        self.t: dict[str, float] = {}

    def wrap(self, key, fn):
        @functools.wraps(fn)
        def inner(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[key] = self.t.get(key, 0.0) + time.perf_counter() - t0
        return inner

    def take(self) -> dict[str, float]:
        out, self.t = self.t, {}
        return out


def fmt_ms(x: float) -> str:
    return f"{x * 1000:8.0f}"


# ----------------------------------------------------------------------------------------------
# setup
# ----------------------------------------------------------------------------------------------

def prepare_base(args, workdir: Path) -> str:
    """Directory holding the initial weights + tokenizer both trainers load (their own copies)."""
    if args.base:
        return args.base
    from ibtpo.model.tiny import build_tiny_llama
    from ibtpo.model.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    model = build_tiny_llama(tok, n_layer=4, d_model=128, n_head=4, d_mlp=512, seed=args.seed)
    out = workdir / "base"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def load_model(base: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)


def build_ours(args, base: str, problems: list[dict], workdir: Path, clock: Clock):
    import ibtpo.trainer as tr_mod
    from transformers import AutoTokenizer

    from ibtpo.grading import Grader
    from ibtpo.rollout.backend import SamplingParams
    from ibtpo.rollout.hf_backend import HFBackend
    from ibtpo.trainer import Method, Trainer, TrainSettings

    tok = AutoTokenizer.from_pretrained(base)
    model = load_model(base)
    sampling = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=args.max_new_tokens,
                              stop_token_ids=(tok.eos_token_id,))
    method = Method("grpo", {"name": "chains", "G": args.G}, {"name": "grpo"},
                    {"kl_coef": args.beta, "clip_low": 0.2, "clip_high": 0.2, "aggregation": "token-mean"})
    settings = TrainSettings.of(dict(steps=10**6, batch_problems=args.problems, checkpoint_every=10**6, lr=args.lr,
                                     betas=[0.9, 0.99], grad_clip=1.0), seed=args.seed)
    grader = Grader()
    backend = HFBackend(model, tok.pad_token_id)
    trainer = Trainer(model, tok, problems, method, settings, sampling, backend, grader, workdir / "ours",
                      prompt_template="{problem}\n", log=lambda *_: None)
    # timing probes (instance / module attributes only; no project file is changed)
    backend.generate = clock.wrap("generate", backend.generate)
    grader.grade_many = clock.wrap("grade", grader.grade_many)
    orig_slp = tr_mod.sequence_logprobs  # the trainer's name for ibtpo.logprobs.sequence_logprobs: its forwards

    def slp(model_, *a, **k):
        key = "ref_logp" if model_ is trainer.ref_model else "policy_fwd"
        return clock.wrap(key, orig_slp)(model_, *a, **k)

    tr_mod.sequence_logprobs = slp
    return trainer, grader


def trl_config(args, workdir: Path, max_steps: int):
    from trl import GRPOConfig

    n = args.problems * args.G
    return GRPOConfig(
        output_dir=str(workdir / "trl"),
        use_cpu=True, bf16=False, fp16=False,
        report_to="none", save_strategy="no", eval_strategy="no",
        logging_steps=10**6, disable_tqdm=True, log_completions=False,
        max_steps=max_steps, seed=args.seed, dataloader_num_workers=0, shuffle_dataset=False,
        # one optimizer step == one generation batch of problems x G completions, one micro-batch
        per_device_train_batch_size=n, gradient_accumulation_steps=1, steps_per_generation=None,
        generation_batch_size=None, num_generations=args.G, num_iterations=1,
        # sampling
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, min_p=None,
        repetition_penalty=1.0, use_vllm=False, use_transformers_continuous_batching=False,
        pad_to_multiple_of=None,
        # loss: token-mean over the whole batch ("dapo"), clip 0.2/0.2, k3 KL * beta, no IS factor on KL
        loss_type="dapo", epsilon=0.2, epsilon_high=0.2, beta=args.beta, use_bias_correction_kl=False,
        scale_rewards="group", mask_truncated_completions=False, importance_sampling_level="token",
        top_entropy_quantile=1.0, entropy_coef=0.0,
        # optimiser as ours: AdamW, constant lr, betas (0.9, 0.99), no weight decay, grad clip 1.0
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.99, adam_epsilon=1e-8, optim="adamw_torch", max_grad_norm=1.0,
        gradient_checkpointing=False, disable_dropout=True,
    )


def build_trl(args, base: str, problems: list[dict], workdir: Path, max_steps: int, clock: Clock, callback,
              seen_prompts: list):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from ibtpo.grading import Grader
    from ibtpo.trainer import problems_for_step

    grader = Grader()

    def ibtpo_grader_reward(prompts, completions, answer, **kwargs):
        seen_prompts.append(list(prompts))
        # gold first, completion second; one batched call, as our trainer's RolloutContext does
        return [1.0 if ok else 0.0 for ok in grader.grade_many(list(zip(answer, completions)))]

    tok = AutoTokenizer.from_pretrained(base, padding_side="left", truncation_side="left")
    model = load_model(base)  # its own copy; TRL builds the reference model from the same dir
    # TRL step k sees the same 16 problems as our step k: the dataset is our per-step problem order,
    # read sequentially (shuffle_dataset=False); only the sampled completions differ between the two
    order = [problems[i] for k in range(max_steps)
             for i in problems_for_step(len(problems), args.problems, args.seed, k)]
    ds = Dataset.from_dict({"prompt": [f"{p['problem']}\n" for p in order], "answer": [p["answer"] for p in order]})
    trainer = GRPOTrainer(model=model, reward_funcs=ibtpo_grader_reward, args=trl_config(args, workdir, max_steps),
                          train_dataset=ds, processing_class=tok, callbacks=[callback])
    trainer.remove_callback(PrinterCallback)
    # timing probes on the instance
    trainer._generate = clock.wrap("generate", trainer._generate)
    trainer._calculate_rewards = clock.wrap("grade", trainer._calculate_rewards)
    trainer._generate_and_score_completions = clock.wrap("rollout", trainer._generate_and_score_completions)
    return trainer, grader


# ----------------------------------------------------------------------------------------------
# the interleaved run
# ----------------------------------------------------------------------------------------------

def main(argv=None) -> float:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import TrainerCallback

    from ibtpo.data.arithmetic import ArithmeticSpec, generate

    total = args.warmup + args.rounds
    n_pool = max(512, args.problems * (total + 1))
    problems = generate(ArithmeticSpec(), n_pool, args.data_seed)
    workdir = Path(tempfile.mkdtemp(prefix="bench_trainer_vs_trl_"))
    base = prepare_base(args, workdir)

    ours_clock, trl_clock = Clock(), Clock()
    ours, ours_grader = build_ours(args, base, problems, workdir, ours_clock)
    rows: list[dict] = []

    class Interleave(TrainerCallback):
        """TRL step k (timed from the end of our step k-1), then our step k, inside TRL's train loop."""

        def __init__(self):
            self.mark = None
            self.trainer = None

        def on_train_begin(self, a, state, control, **kw):
            torch.set_num_threads(args.threads)
            self.mark = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            t_trl = time.perf_counter() - self.mark
            m = self.trainer._metrics["train"]
            trl = {"time": t_trl, "len": m["completions/mean_length"][-1],
                   "max_len": m["completions/max_length"][-1],
                   "reward": m["reward"][-1] if m.get("reward") else float("nan"),
                   "threads": torch.get_num_threads(), **trl_clock.take()}
            ours_clock.take()
            t0 = time.perf_counter()
            om = ours.train_step()
            t_ours = time.perf_counter() - t0
            o = {"time": t_ours, "len": om["response_len"], "tokens": om["gen_tokens"], "reward": om["reward_mean"],
                 "time_gen": om["time_gen"], **ours_clock.take()}
            k = state.global_step
            rows.append({"step": k, "warmup": k <= args.warmup, "trl": trl, "ours": o})
            tag = "warmup" if k <= args.warmup else "timed "
            print(f"[{tag} {k:2d}] ours {t_ours:6.2f}s (tok {o['tokens']:5d}, len {o['len']:5.1f}) | "
                  f"trl {t_trl:6.2f}s (len {trl['len']:5.1f}, max {trl['max_len']:3.0f}, "
                  f"threads {trl['threads']})", flush=True)
            self.mark = time.perf_counter()

    cb = Interleave()
    trl_prompts: list[list[str]] = []
    trl, trl_grader = build_trl(args, base, problems, workdir, total, trl_clock, cb, trl_prompts)
    cb.trainer = trl
    n = args.problems * args.G
    print(f"# setting: {args.problems} problems x G={args.G} = {n} completions/step, max_new_tokens "
          f"{args.max_new_tokens}, T=1.0, top_p=1.0, lr {args.lr}, beta {args.beta}, clip 0.2, threads "
          f"{args.threads}, base {'(fresh tiny Llama 4x128)' if not args.base else base}")
    print(f"# TRL {__import__('trl').__version__}: per_device_train_batch_size={trl.args.per_device_train_batch_size} "
          f"grad_accum={trl.args.gradient_accumulation_steps} steps_per_generation={trl.args.steps_per_generation} "
          f"generation_batch_size={trl.args.generation_batch_size} num_iterations={trl.args.num_iterations} "
          f"loss_type={trl.args.loss_type} scale_rewards={trl.args.scale_rewards} beta={trl.args.beta} "
          f"grad_ckpt={trl.args.gradient_checkpointing}")
    print(f"# warmup {args.warmup} + {args.rounds} timed rounds (each: one TRL step, then one step of ours)",
          flush=True)
    try:
        trl.train()
    finally:
        ours_grader.close()
        trl_grader.close()

    timed = [r for r in rows if not r["warmup"]]
    if not timed:
        raise SystemExit("no timed rounds")

    def med(side, key):
        vals = [r[side].get(key, 0.0) for r in timed]
        return statistics.median(vals)

    print("\n# per-step timings (timed rounds)")
    print(f"{'step':>4} {'ours_s':>8} {'trl_s':>8} {'ours_len':>9} {'trl_len':>8} {'ours_tok':>9} "
          f"{'trl_tok':>8} {'trl_rows*steps':>14}")
    for r in timed:
        o, t = r["ours"], r["trl"]
        print(f"{r['step']:>4} {o['time']:8.2f} {t['time']:8.2f} {o['len']:9.1f} {t['len']:8.1f} "
              f"{o['tokens']:9d} {t['len'] * n:8.0f} {n * t['max_len']:14.0f}")

    # derived parts per step first, then medians (medians of parts need not add up to the median total)
    for r in timed:
        o, t = r["ours"], r["trl"]
        # ours grades in the background (overlapping the reference pass): grading is not inside time_gen
        o["other_sample"] = o["time_gen"] - o.get("generate", 0.0)
        o["update_rest"] = o["time"] - o["time_gen"] - o.get("ref_logp", 0.0)
        t["other_rollout"] = t.get("rollout", 0.0) - t.get("generate", 0.0) - t.get("grade", 0.0)
        t["update_rest"] = t["time"] - t.get("rollout", 0.0)
    print("\n# median breakdown, ms per step (median of each part)")
    print("ours: generate grade(bg)  other_sample  ref_logp  policy_fwd+bwd+opt(+rest)     total")
    print("     " + " ".join(f"{fmt_ms(med('ours', k)):>{w}}" for k, w in
                            (("generate", 8), ("grade", 8), ("other_sample", 13), ("ref_logp", 9),
                             ("update_rest", 26), ("time", 9))))
    print("trl:  generate    grade  other_rollout(ref_logp,adv)  update(fwd+bwd+opt+rest)     total")
    print("     " + " ".join(f"{fmt_ms(med('trl', k)):>{w}}" for k, w in
                            (("generate", 8), ("grade", 8), ("other_rollout", 28), ("update_rest", 25),
                             ("time", 9))))

    from ibtpo.trainer import problems_for_step

    same = all(sorted(set(ps)) == sorted({f"{problems[i]['problem']}\n" for i in
                                          problems_for_step(len(problems), args.problems, args.seed, k)})
               and len(ps) == n for k, ps in enumerate(trl_prompts))
    print(f"\nsame {args.problems} problems per step on both sides: {'yes' if same else 'NO'}")
    o_len, t_len = statistics.mean(r["ours"]["len"] for r in timed), statistics.mean(r["trl"]["len"] for r in timed)
    print(f"mean completion length: ours {o_len:.1f}  trl {t_len:.1f} tokens "
          f"(TRL's HF generate decodes all {n} rows until the longest finishes: "
          f"mean max length {statistics.mean(r['trl']['max_len'] for r in timed):.1f})")
    print(f"mean reward: ours {statistics.mean(r['ours']['reward'] for r in timed):.3f}  "
          f"trl {statistics.mean(r['trl']['reward'] for r in timed):.3f}")
    m_ours, m_trl = med("ours", "time"), med("trl", "time")
    print(f"median step: ours {m_ours:.3f}s  trl {m_trl:.3f}s")
    ratio = m_ours / m_trl
    print(f"ratio ours/trl = {ratio:.2f}", flush=True)
    return ratio


if __name__ == "__main__":
    main()
