"""vLLM backend check on a GPU machine with the ``vllm`` extra (CI never runs it).

    python bench/vllm_check.py                       # a small Llama built on the fly (char tokenizer)
    python bench/vllm_check.py --base DIR            # an HF checkpoint (model + tokenizer) instead
    python bench/vllm_check.py --eval                # also one lm-eval run through its `vllm` model

Checks, each printed PASS / FAIL (exit status 1 if any fails):

1. **generation**: ``n`` samples per prefix, a per-prefix ``max_new`` respected, every ``stop``
   sample ending in the stop id, token counts in the stats;
2. **log-prob agreement** with the HF model on the same weights: with ``logprobs: vllm``
   (``processed_logprobs``, top-k / top-p off so it is the project's convention) vLLM's per-token
   log-probs against a full forward of the policy at ``logits / T`` (mean |diff| within ``--tol``;
   the engine runs in ``--dtype``, the policy in fp32); with ``logprobs: policy`` (rescoring) the
   log-probs and entropies equal that forward; and the mean log-prob of samples drawn by vLLM and by
   the HF backend (same model, same settings) agree, as samples of one distribution should;
3. **weight sync**: after an optimizer step on the policy the engine's log-prob gap on a fixed probe
   sequence is large, after :meth:`VLLMBackend.sync_weights` it is within ``--tol``; samples after
   the step are scored by the new weights;
4. **sleep / wake**: ``release()`` frees GPU memory (``torch.cuda.mem_get_info``), the next
   ``generate`` wakes the engine, reloads the weights and agrees with the policy again;
5. **prefix cache**: continuing the first call's samples (prompt + half a sample), vLLM reports
   cached prompt tokens;
6. **throughput**: generated tokens per second of vLLM and of the HF backend on the same batch
   (``--problems`` x ``--G`` samples, up to ``--max-new`` tokens), and their ratio (last line).

The built model gets a short supervised warm-up on arithmetic (``--sft-steps``, on the CPU) so its
next-token distributions are neither uniform nor one-hot (either would make log-prob agreement
trivial); the mean entropy of the checked tokens is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ibtpo.data.arithmetic import ArithmeticSpec, generate as arithmetic  # noqa: E402
from ibtpo.rollout.backend import SamplingParams  # noqa: E402
from ibtpo.rollout.hf_backend import HFBackend  # noqa: E402
from ibtpo.rollout.vllm_backend import (VLLMBackend, VLLMSettings, _Seq, default_probe,  # noqa: E402
                                       policy_logprobs, require_vllm)

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str) -> bool:
    RESULTS.append((name, bool(ok), detail))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)
    return ok


def build_model(args, out_dir: Path):
    """A small Llama over the char tokenizer, briefly trained on arithmetic (on the CPU) so that its
    next-token distributions are neither uniform nor one-hot, saved in HF format."""
    from ibtpo.model.sft import sft
    from ibtpo.model.tiny import build_tiny_llama
    from ibtpo.model.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    model = build_tiny_llama(tok, n_layer=args.layers, d_model=args.d_model, n_head=max(1, args.d_model // 64),
                             d_mlp=4 * args.d_model, max_positions=2048, seed=0)
    if args.sft_steps:
        t0 = time.perf_counter()
        sft(model, tok, arithmetic(ArithmeticSpec(), 4000, seed=3), "{problem}\n", steps=args.sft_steps,
            batch_size=32, lr=3e-3, warmup=20, log=lambda *a, **k: None)
        print(f"SFT of the check model: {args.sft_steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return str(out_dir)


def forward_logprobs(model, prefix, comp_ids, T):
    lps, ents = policy_logprobs(model, [_Seq(prefix, comp_ids)], T, next(model.parameters()).device, True)
    return np.asarray(lps[0]), np.asarray(ents[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="HF checkpoint dir (default: build a small Llama)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--sft-steps", type=int, default=200, help="CPU warm-up of the built model (0: random)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--tol", type=float, default=0.05, help="mean |log-prob diff| allowed (nats)")
    ap.add_argument("--eval", action="store_true", help="also evaluate through lm-eval's vllm model")
    ap.add_argument("--device", default="cuda",
                    help="cuda; cpu only for a dry run of this script with a stand-in engine")
    args = ap.parse_args()
    dev = args.device

    vllm = require_vllm("bench/vllm_check.py")
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = dev.startswith("cuda")
    assert not cuda or torch.cuda.is_available(), "no CUDA device"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"vllm {vllm.__version__} torch {torch.__version__} transformers {transformers.__version__} "
          f"device {torch.cuda.get_device_name(0) if cuda else dev}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="vllm-check-"))
    base = args.base or build_model(args, tmp / "base")
    tok = AutoTokenizer.from_pretrained(base)
    policy = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(dev)
    eos = tok.eos_token_id
    problems = arithmetic(ArithmeticSpec(), args.problems, seed=7)
    prefixes = [tok(p["problem"] + "\n", add_special_tokens=False)["input_ids"] for p in problems]
    T = args.temperature
    params = SamplingParams(temperature=T, max_new_tokens=args.max_new, stop_token_ids=(eos,))

    settings = VLLMSettings(gpu_memory_utilization=args.gpu_memory_utilization, dtype=args.dtype, logprobs="vllm",
                            sleep=True, sleep_level=2, max_model_len=1024)
    t0 = time.perf_counter()
    b_vllm = VLLMBackend.from_pretrained(base, policy=policy, settings=settings)
    print(f"engine up in {time.perf_counter() - t0:.1f} s", flush=True)
    # a second view of the same engine that rescores with the policy (logprobs: policy)
    b_exact = VLLMBackend(b_vllm.llm, policy, dataclasses.replace(settings, logprobs="policy"), vllm.SamplingParams)

    # 1. generation ------------------------------------------------------------------------------
    caps = [args.max_new if i % 2 else max(1, args.max_new // 4) for i in range(len(prefixes))]
    out = b_vllm.generate(prefixes, args.G, params, seed=0, max_new=caps)
    ok = all(len(o) == args.G for o in out)
    ok &= all(len(c.token_ids) <= cap for o, cap in zip(out, caps) for c in o)
    ok &= all(c.token_ids[-1] == eos for o in out for c in o if c.finish_reason == "stop")
    n_tok = sum(len(c.token_ids) for o in out for c in o)
    ok &= b_vllm.stats.tokens_generated == n_tok
    stops = sum(c.finish_reason == "stop" for o in out for c in o)
    check("generation", ok, f"{len(prefixes)} prefixes x {args.G}, {n_tok} tokens, {stops} stopped at EOS")

    # 2. log-prob agreement -----------------------------------------------------------------------
    diffs, ents = [], []
    for p, o in zip(prefixes[:8], out[:8]):
        for c in o[:2]:
            ref, ent = forward_logprobs(policy, p, c.token_ids, T)
            diffs.append(np.abs(np.asarray(c.logprobs) - ref))
            ents.append(ent)
    d = np.concatenate(diffs)
    check("logprobs vllm (processed) vs policy forward", d.mean() < args.tol,
          f"mean |diff| {d.mean():.4f}, max {d.max():.4f} over {d.size} tokens (engine {args.dtype}, policy fp32); "
          f"mean entropy {np.concatenate(ents).mean():.3f} nats")
    ex = b_exact.generate(prefixes[:4], 2, params, seed=1)
    worst = 0.0
    for p, o in zip(prefixes[:4], ex):
        for c in o:
            ref, ent = forward_logprobs(policy, p, c.token_ids, T)
            worst = max(worst, float(np.abs(np.asarray(c.logprobs) - ref).max()),
                        float(np.abs(np.asarray(c.entropies) - ent).max()))
    check("logprobs policy (rescored) are exact", worst < 1e-4, f"max |diff| {worst:.2e} (log-probs and entropies)")
    hf = HFBackend(policy, tok.pad_token_id, dev)
    hf_out = hf.generate(prefixes, args.G, params, seed=0)
    mean_v = float(np.mean([x for o in b_exact.generate(prefixes, args.G, params, seed=2)
                            for c in o for x in c.logprobs]))
    mean_h = float(np.mean([x for o in hf_out for c in o for x in c.logprobs]))
    check("vLLM and HF samples come from one distribution", abs(mean_v - mean_h) < 0.1,
          f"mean token log-prob under the policy: vLLM {mean_v:.4f}, HF {mean_h:.4f}")

    # 3. weight sync ------------------------------------------------------------------------------
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    ids = torch.tensor([prefixes[0] + out[0][0].token_ids], device=dev)
    policy(ids).logits.float().logsumexp(-1).mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    probe = default_probe(policy.config.vocab_size)
    res = b_vllm.check_weight_sync(policy, probe=probe, tol=args.tol)
    check("weight sync", res["before"]["mean"] > 5 * res["after"]["mean"] and res["after"]["mean"] < args.tol,
          f"probe log-prob gap before {res['before']['mean']:.4f}, after {res['after']['mean']:.4f} (mean nats)")
    o2 = b_vllm.generate(prefixes[:4], 2, params, seed=3)
    d2 = np.concatenate([np.abs(np.asarray(c.logprobs) - forward_logprobs(policy, p, c.token_ids, T)[0])
                         for p, o in zip(prefixes[:4], o2) for c in o])
    check("samples after the step use the new weights", d2.mean() < args.tol, f"mean |diff| {d2.mean():.4f}")

    # 4. sleep / wake -----------------------------------------------------------------------------
    sync()
    free_awake = torch.cuda.mem_get_info()[0] if cuda else 0
    b_vllm.release()
    sync()
    free_asleep = torch.cuda.mem_get_info()[0] if cuda else 2**30
    o3 = b_vllm.generate(prefixes[:4], 2, params, seed=4)
    d3 = np.concatenate([np.abs(np.asarray(c.logprobs) - forward_logprobs(policy, p, c.token_ids, T)[0])
                         for p, o in zip(prefixes[:4], o3) for c in o])
    check("sleep frees memory, waking restores the weights",
          free_asleep - free_awake > 2**28 and d3.mean() < args.tol,
          f"freed {(free_asleep - free_awake) / 2**30:.2f} GiB; after wake mean |diff| {d3.mean():.4f}")

    # 5. prefix cache -----------------------------------------------------------------------------
    first = b_vllm.generate(prefixes, 2, params, seed=5)
    conts = [p + c.token_ids[: len(c.token_ids) // 2] for p, o in zip(prefixes, first) for c in o[:1]
             if len(c.token_ids) >= 64]
    before = b_vllm.stats.extra["prompt_tokens_cached_vllm"]
    if conts:
        b_vllm.generate(conts, 2, params, seed=6)
        cached = b_vllm.stats.extra["prompt_tokens_cached_vllm"] - before
        check("prefix cache serves continued prefixes", cached > 0,
              f"{cached} of {sum(map(len, conts))} prompt tokens cached (ledger bound: "
              f"{b_vllm.stats.extra['prompt_tokens_reusable']} reusable so far)")
    else:
        check("prefix cache serves continued prefixes", False, "no sample long enough to continue (raise --max-new)")

    # 6. throughput -------------------------------------------------------------------------------
    t = {}
    for name, backend in (("vllm", b_vllm), ("hf", hf)):
        backend.generate(prefixes[:2], 2, params, seed=9)  # warm-up
        sync()
        t0 = time.perf_counter()
        o = backend.generate(prefixes, args.G, params, seed=10)
        sync()
        t[name] = (sum(len(c.token_ids) for x in o for c in x), time.perf_counter() - t0)
        print(f"throughput {name}: {t[name][0]} tokens in {t[name][1]:.2f} s = {t[name][0] / t[name][1]:.0f} tok/s",
              flush=True)

    if args.eval:  # in its own process: lm-eval builds its own engine
        bench = tmp / "bench.jsonl"
        bench.write_text("".join(json.dumps(p) + "\n" for p in problems[:16]))
        spec = {"prompt_template": "{problem}\n", "temperature": T, "top_p": 1.0, "top_k": 0,
                "max_new_tokens": args.max_new, "k": 4, "pass_at": [1, 4], "batch_size": 16}
        b_vllm.release()
        if cuda:
            torch.cuda.empty_cache()
        r = subprocess.run([sys.executable, "-m", "ibtpo.eval.run", "--checkpoint", base, "--benchmarks",
                            json.dumps({"arith": {"path": str(bench)}}), "--spec", json.dumps(spec),
                            "--out", str(tmp / "eval"), "--device", "cuda", "--model", "vllm"],
                           capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        res = tmp / "eval" / "arith.json"
        ok = r.returncode == 0 and res.exists() and json.loads(res.read_text())["n_problems"] == 16
        check("lm-eval vllm model", ok, r.stdout.strip().splitlines()[-1] if ok else r.stderr[-1500:])

    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed" + (f"; FAILED: {failed}" if failed else ""))
    print(f"throughput ratio vllm/hf = {(t['vllm'][0] / t['vllm'][1]) / (t['hf'][0] / t['hf'][1]):.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
