"""Time of one generate call per decode path (``rollout.decode``: hf, torch, c), interleaved in one process.

The call is a GRPO rollout of the tiny preset: 16 arithmetic prompts x 8 samples, temperature 1.0, at
most ``--max-new-tokens`` (96) new tokens, stop at ``<eos>``, on the default 4-layer d_model-128 char
Llama (random weights, so samples mostly run to the cap) or ``--base DIR`` (an SFT base: realistic
lengths). Each round runs every path once on the same seed (the same samples on every path, checked),
in a rotating order; prints per-path medians and, as the last line, ``ratio c/torch = X.XX`` (median
time of the C kernel path over the torch path: below 1 the kernel buys time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ibtpo.data.arithmetic import ArithmeticSpec, generate  # noqa: E402
from ibtpo.model.tokenizer import build_char_tokenizer  # noqa: E402
from ibtpo.rollout.backend import SamplingParams  # noqa: E402
from ibtpo.rollout.hf_backend import HFBackend  # noqa: E402

PATHS = ("hf", "torch", "c")


def load(base: str | None):
    tok = build_char_tokenizer()
    if base:
        from transformers import AutoModelForCausalLM

        return tok, AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    from ibtpo.model.tiny import build_tiny_llama

    return tok, build_tiny_llama(tok, n_layer=4, d_model=128, n_head=4, d_mlp=512, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="an SFT base directory (default: random weights)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok, model = load(args.base)
    prefixes = [tok(f"{p['problem']}\n")["input_ids"] for p in generate(ArithmeticSpec(), 16, seed=0)]
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens, stop_token_ids=(tok.eos_token_id,))
    backends = {p: HFBackend(model, tok.pad_token_id, decode=p) for p in PATHS}
    for b in backends.values():  # warm-up: builds the kernel, the fused weights, the RoPE table
        b.generate(prefixes, 8, params, seed=0)
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    for r in range(args.rounds):
        samples = {}
        for p in PATHS[r % 3:] + PATHS[:r % 3]:
            t0 = time.perf_counter()
            out = backends[p].generate(prefixes, 8, params, seed=100 + r)
            times[p].append(time.perf_counter() - t0)
            samples[p] = [c.token_ids for o in out for c in o]
        same = all(samples[p] == samples["hf"] for p in PATHS)
        tokens = sum(len(s) for s in samples["hf"])
        print(f"round {r}: " + "  ".join(f"{p} {times[p][-1] * 1e3:.0f} ms" for p in PATHS)
              + f"  ({tokens} tokens, same samples: {same})", flush=True)
    med = {p: statistics.median(times[p]) for p in PATHS}
    print("median: " + "  ".join(f"{p} {med[p] * 1e3:.0f} ms" for p in PATHS))
    print(f"ratio torch/hf = {med['torch'] / med['hf']:.2f}")
    print(f"ratio c/torch = {med['c'] / med['torch']:.2f}")


if __name__ == "__main__":
    main()
