"""Where one GRPO step of this project's ``Trainer`` spends its time (the ``trainer_vs_trl.py`` setting).

Builds our side of ``trainer_vs_trl.py`` (same model, problems, sampling, method and optimiser), runs
``--warmup`` untimed steps, then ``--steps`` timed ones, and prints the median of each section, ms per step:

* ``generate``: the backend's sampling call (prefill + decode);
* ``grade``: ``Grader.grade_many``;
* ``advantage``: advantages + trajectory extraction (``time_adv``);
* ``ref_logp``: the reference model's no-grad log-probs;
* ``old_logp``: the policy's no-grad log-probs (only with several minibatches / epochs);
* ``policy_fwd``: the policy's forward with gradients (``sequence_logprobs``), ``loss``: ``policy_loss``;
* ``backward``; ``clip+opt``: gradient clipping and the optimizer step; ``rest``: everything else.

The decode micro-benchmark (``--decode``) times the HF backend's per-token decode cost at batch 128
and 16 on the same model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import trainer_vs_trl as tvt  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--decode", action="store_true", help="also run the decode micro-benchmark")
    a = p.parse_args(argv)
    args = tvt.parse_args(["--threads", str(a.threads)])
    torch.set_num_threads(a.threads)
    import ibtpo.trainer as tr_mod
    from ibtpo.data.arithmetic import ArithmeticSpec, generate

    problems = generate(ArithmeticSpec(), 512, args.data_seed)
    workdir = Path(tempfile.mkdtemp(prefix="bench_profile_step_"))
    base = tvt.prepare_base(args, workdir)
    clock = tvt.Clock()
    trainer, grader = tvt.build_ours(args, base, problems, workdir, clock)
    # build_ours wraps the backend's generate and the grader; split the forwards by model and grad mode
    from ibtpo.logprobs import sequence_logprobs as slp

    def split_slp(model_, *x, **k):
        key = "ref_logp" if model_ is trainer.ref_model else ("policy_fwd" if torch.is_grad_enabled() else "old_logp")
        return clock.wrap(key, slp)(model_, *x, **k)

    tr_mod.sequence_logprobs = split_slp
    tr_mod.policy_loss = clock.wrap("loss", tr_mod.policy_loss)
    orig_backward = torch.Tensor.backward
    torch.Tensor.backward = clock.wrap("backward", orig_backward)
    trainer.opt.step = clock.wrap("clip+opt", trainer.opt.step)
    trainer.dist.clip_global_grad_norm_ = clock.wrap("clip+opt", trainer.dist.clip_global_grad_norm_)
    rows = []
    try:
        for k in range(a.warmup + a.steps):
            clock.take()
            t0 = time.perf_counter()
            m = trainer.train_step()
            t = clock.take()
            t["total"] = time.perf_counter() - t0
            t["advantage"] = m["time_adv"]
            t["rest"] = t["total"] - sum(v for key, v in t.items() if key != "total")
            t["tokens"] = m["gen_tokens"]
            if k >= a.warmup:
                rows.append(t)
            print(f"[{'warmup' if k < a.warmup else 'timed '} {k}] {t['total']:.2f}s tok {m['gen_tokens']}", flush=True)
    finally:
        torch.Tensor.backward = orig_backward
        grader.close()
    keys = ("generate", "grade", "advantage", "ref_logp", "old_logp", "policy_fwd", "loss", "backward", "clip+opt",
            "rest", "total")
    print("\n# median ms per step (threads %d, %d timed steps)" % (a.threads, len(rows)))
    print(" ".join(f"{k:>10}" for k in keys))
    print(" ".join(f"{statistics.median(r.get(k, 0.0) for r in rows) * 1000:10.0f}" for k in keys))
    tok = statistics.median(r["tokens"] for r in rows)
    gen = statistics.median(r["generate"] for r in rows)
    print(f"generated tokens {tok:.0f}; generate {gen / tok * 1e6:.0f} us per generated token")
    if a.decode:
        decode_bench(trainer)


def decode_bench(trainer):
    """Per-token decode time of the HF backend at batch 128 (16 x 8) and 16 (16 x 1), fixed length."""
    from ibtpo.rollout.backend import SamplingParams

    b = trainer.ctx.backend
    prefix = trainer.tokenizer("12+34*5-6\n", add_special_tokens=False)["input_ids"]
    params = SamplingParams(max_new_tokens=64, stop_token_ids=())  # no stop: every row decodes 64 tokens
    for n_pref, n in ((16, 8), (16, 1)):
        ts = []
        for r in range(3):
            t0 = time.perf_counter()
            b.generate([prefix] * n_pref, n, params, seed=r)
            ts.append(time.perf_counter() - t0)
        print(f"decode batch {n_pref * n:4d}: {min(ts) / 64 * 1000:.2f} ms per step (64 steps, best of 3)")


if __name__ == "__main__":
    main()
