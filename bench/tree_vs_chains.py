"""IBTree (4,9,1,1) G=12 vs independent chains G=8 on the same checkpoint and problems.

Interleaved in one run (chains, tree, random tree, chains, ...), same sampling settings. Prints per
round, then where the trees fork (share of forks at the root, mean share of the response already
written at a fork) and the random-branching reference ratio, and as the last three lines:

    tokens/problem ibtree/chains8 = X.XXX      goal <= 1.05 (paper: 1.016)
    rollout time ibtree/chains8 = X.XX         goal <= 1.10
    ib-score + tree bookkeeping share of an ibtpo training step = X.X%   goal <= 5%

The third figure times one full IB-TPO training step (rollout + advantage + update) and, inside it,
the IB-Score node selection, step splitting / tree building, and the advantage computation.

    .venv/bin/python bench/tree_vs_chains.py --checkpoint results/tiny/base --problems 64

``--pi-mode`` picks the step-probability normalisation of the IB parameters (IBTree's selection and
the IB-TPO advantage; default ``length_norm``, METHOD.md §1): the fork statistics show
that under ``sibling`` a single-child node always scores -(1+beta)/beta while the root scores about
-(1+beta)/(beta*B0), so IBTree forks at the root and costs what independent chains cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ibtpo import registry  # noqa: E402
from ibtpo.analysis.branching import sampler_stats  # noqa: E402
from ibtpo.analysis.forks import fork_stats  # noqa: E402
from ibtpo.data.arithmetic import ArithmeticSpec, generate  # noqa: E402
from ibtpo.grading import Grader  # noqa: E402
from ibtpo.ib_score import PI_MODES, IBParams  # noqa: E402
from ibtpo.rollout import context as context_mod, ibtree  # noqa: E402
from ibtpo.rollout.backend import SamplingParams  # noqa: E402
from ibtpo.rollout.chains import ChainSampler  # noqa: E402
from ibtpo.rollout.context import RolloutContext  # noqa: E402
from ibtpo.rollout.hf_backend import HFBackend  # noqa: E402
from ibtpo.trainer import Method, Trainer, TrainSettings  # noqa: E402


class Timers:
    def __init__(self):
        self.total = 0.0

    def wrap(self, owner, name):
        fn = getattr(owner, name)

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.total += time.perf_counter() - t0

        setattr(owner, name, timed)
        return fn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="HF checkpoint dir (e.g. results/tiny/base)")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pi-mode", default=IBParams.pi_mode, choices=PI_MODES,
                    help="IB parameters' step-probability normalisation (default %(default)s, METHOD.md §1)")
    args = ap.parse_args()
    ib = IBParams(pi_mode=args.pi_mode)
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32).eval()
    problems = generate(ArithmeticSpec(), args.problems, seed=777, prefix="bench")
    params = SamplingParams(max_new_tokens=args.max_new_tokens, stop_token_ids=(tok.eos_token_id,))
    with Grader() as grader:
        ctx = RolloutContext(HFBackend(model, tok.pad_token_id), tok, grader, params)
        samplers = {"chains8": ChainSampler(G=8), "ibtree": ibtree.IBTreeSampler(4, 9, 1, 1, ib=ib),
                    "random": ibtree.IBTreeSampler(4, 9, 1, 1, selection="random")}
        sampler_stats(samplers["chains8"], problems[:16], ctx, seed=1)  # warm-up
        res = {k: [] for k in samplers}
        for r in range(args.rounds):
            for name, s in samplers.items():
                st = sampler_stats(s, problems, ctx, seed=1000 * r)
                res[name].append(st)
                print(f"round {r} {name:>8}: G={st['G']:.0f} tokens/problem={st['tokens_per_problem']:.1f} "
                      f"eff={st['eff_rate']:.1f}% avg={st['avg_rate']:.1f}% t={st['seconds']:.2f}s", flush=True)
        tok_ratio = statistics.mean(x["tokens_per_problem"] for x in res["ibtree"]) / \
            statistics.mean(x["tokens_per_problem"] for x in res["chains8"])
        time_ratio = statistics.median(x["seconds"] for x in res["ibtree"]) / \
            statistics.median(x["seconds"] for x in res["chains8"])
        rand_ratio = statistics.mean(x["tokens_per_problem"] for x in res["random"]) / \
            statistics.mean(x["tokens_per_problem"] for x in res["chains8"])
        for name in ("ibtree", "random"):
            fs = fork_stats([t for x in res[name] for t in x["trees"]])
            root, share = fs["fork_root_share"] or 0.0, fs["fork_position"] or 0.0
            print(f"{name} forks: {100 * root:.0f}% at the root; mean share of the response written at a fork "
                  f"{100 * share:.0f}% ({fs['n_forks']} forks)")
        print(f"reference: tokens/problem random tree/chains8 = {rand_ratio:.3f}")

        # bookkeeping share inside real IB-TPO training steps
        timers = Timers()
        orig = [(ibtree, "pick_nodes", timers.wrap(ibtree, "pick_nodes")),
                (context_mod.RolloutContext, "add_steps", timers.wrap(context_mod.RolloutContext, "add_steps"))]
        registry.load_plugins()
        adv = registry.ADVANTAGES["ibtpo"]

        def timed_adv(tree, **kw):
            t0 = time.perf_counter()
            out = adv(tree, **kw)
            timers.total += time.perf_counter() - t0
            return out

        registry.ADVANTAGES["ibtpo"] = timed_adv
        with tempfile.TemporaryDirectory() as d:
            train_model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32)
            tr = Trainer(train_model, tok, problems,
                         Method("ibtpo", {"name": "ibtree", "B0": 4, "L": 9, "K": 1, "B": 1, "ib": ib},
                                {"name": "ibtpo", "ib": ib}, {"kl_coef": 0.001}),
                         TrainSettings.of(dict(steps=3, batch_problems=16, checkpoint_every=3, lr=2e-4)), params,
                         HFBackend(train_model, tok.pad_token_id), grader, d, log=lambda *_: None)
            tr.train_step()  # warm-up
            timers.total, t0 = 0.0, time.perf_counter()
            for _ in range(2):
                tr.train_step()
            step_time = time.perf_counter() - t0
        for owner, name, fn in orig:
            setattr(owner, name, fn)
        registry.ADVANTAGES["ibtpo"] = adv
        share = 100.0 * timers.total / step_time
    print(f"tokens/problem ibtree/chains8 = {tok_ratio:.3f}")
    print(f"rollout time ibtree/chains8 = {time_ratio:.2f}")
    print(f"ib-score + tree bookkeeping share of an ibtpo training step = {share:.1f}%")


if __name__ == "__main__":
    main()
