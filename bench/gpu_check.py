"""Check of the shared rollout and trainer on a device: every decode path and dtype, training, throughput.

On a GPU (``--device cuda``, the default where CUDA is available; CI never runs this mode):

1. every decode path the device serves (``hf``, ``torch``) in fp32, bf16 and fp16 samples the HF forward's
   tokens for a seed, with per-token log-probs within the dtype's tolerance of a full forward;
2. GRPO and IB-TPO training steps on a toy reward ("the answer starts with 7") learn it, in fp32 and in
   ``train.precision: bf16-mixed`` with gradient checkpointing and a bf16 rollout (``rollout.dtype``), with the
   rollout-vs-trainer log-prob gap;
3. generation throughput at the 0.5B Llama shape (24 x 1024, random weights): 16 prompts x 8 samples x
   256 tokens, in fp32 and bf16, through the plain loop (``decode: torch``; ``decode: graph``, its step as
   one CUDA graph), the HF-forward loop (``decode: hf``), transformers' ``model.generate`` and, on CUDA,
   its continuous batching (``generate_batch``);
4. the time of one GRPO step and one IB-TPO step (IBTree) at that shape, and of a GRPO step in bf16-mixed
   with gradient checkpointing and a bf16 rollout (peak memory on CUDA).

``--size tiny`` runs the same code at a tiny size (the char Llama, a few steps, short samples): the test
suite runs it on the CPU (``tests/test_gpu_check.py``), so a dtype or API bug fails CI without a GPU.
The last line is ``plain loop / model.generate, bf16 = X.XX`` (the faster of ``torch`` and ``graph``, tokens
per second, >1: ours is faster).

    python bench/gpu_check.py                      # on a GPU machine
    python bench/gpu_check.py --device cpu --size tiny
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ibtpo.model.tiny import build_tiny_llama  # noqa: E402
from ibtpo.model.tokenizer import build_char_tokenizer  # noqa: E402
from ibtpo.rollout.backend import SamplingParams  # noqa: E402
from ibtpo.rollout.hf_backend import HFBackend  # noqa: E402
from ibtpo.trainer import Method, Trainer, TrainSettings  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOL = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 1e-2}  # |log-prob - full forward|; bf16 keeps 8 mantissa bits
SIZES = {  # generation shape: prompts, samples, tokens; model; training steps / tokens
    "full": dict(prompts=16, samples=8, tokens=256, layers=24, width=1024, heads=16, train_steps=30, step_tokens=128),
    "tiny": dict(prompts=4, samples=2, tokens=12, layers=2, width=32, heads=2, train_steps=6, step_tokens=8),
}


class StartsWithSeven:
    def grade_many(self, pairs):
        return [pred.startswith("7") for _, pred in pairs]


def toy_trainer(model, tok, problems, method, dev: str, run_dir, train: dict, max_new_tokens: int,
                decode: str = "auto", rollout_dtype: str = "float32") -> Trainer:
    """A trainer rewarded by :class:`StartsWithSeven`, sampling at most ``max_new_tokens`` through ``decode`` in
    ``rollout_dtype`` (``rollout.dtype``)."""
    return Trainer(model, tok, problems, method, TrainSettings.of(train),
                   SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=(tok.eos_token_id,)),
                   HFBackend(model, tok.pad_token_id, dev, decode=decode, dtype=rollout_dtype), StartsWithSeven(),
                   run_dir, device=dev, log=lambda *_: None)


def sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def check_decode_paths(tok, dev: str) -> None:
    """(1) every path x dtype: the HF forward's samples, log-probs near a full forward of the same model."""
    base = build_tiny_llama(tok, n_layer=2, d_model=64, n_head=4, d_mlp=128, max_positions=256, seed=1)
    prefixes = [tok(f"Compute {a}+{b}*3.\n")["input_ids"] for a, b in ((1, 2), (14, 7), (123, 45))]
    params = SamplingParams(temperature=0.8, max_new_tokens=24, stop_token_ids=(tok.eos_token_id,))
    for name, dtype in DTYPES.items():
        model = copy.deepcopy(base).to(dev, dtype)
        ref = HFBackend(model, tok.pad_token_id, dev, decode="hf").generate(prefixes, 4, params, seed=0)
        for path in ("hf", "torch", "graph"):
            out = HFBackend(model, tok.pad_token_id, dev, decode=path).generate(prefixes, 4, params, seed=0)
            same = all(x.token_ids == y.token_ids for xs, ys in zip(out, ref) for x, y in zip(xs, ys))
            worst = 0.0
            for p, xs in zip(prefixes, out):
                for c in xs:
                    with torch.no_grad():
                        logits = model(torch.tensor([p + c.token_ids], device=dev)).logits[0].float()
                    lp = torch.log_softmax(logits / 0.8, -1)
                    pos = torch.arange(len(p) - 1, len(p) - 1 + len(c.token_ids), device=dev)
                    got = torch.tensor(c.logprobs, device=dev)
                    worst = max(worst, (lp[pos, torch.tensor(c.token_ids, device=dev)] - got).abs().max().item())
            print(f"decode {path:5s} {name}: same samples as hf {same}, max |logprob - full forward| {worst:.1e}")
            assert worst < TOL[name], f"decode {path} {name}: log-probs off by {worst}"
            assert same or name != "fp32", f"decode {path} fp32 drew other samples than the HF forward"


# label -> (train keys, rollout.dtype): bf16-mixed training with checkpointing samples a bf16 copy
PRECISIONS = {"fp32": ({}, "float32"),
              "bf16-mixed": ({"precision": "bf16-mixed", "gradient_checkpointing": True}, "bfloat16")}


def check_training(tok, dev: str, steps: int) -> None:
    """(2) GRPO and IB-TPO learn the toy reward, in fp32 and in bf16-mixed with gradient checkpointing and a bf16
    rollout (``rollout.dtype: bfloat16``); each step's rollout-vs-trainer log-prob mismatch (fp32: float
    rounding; bf16: bfloat16's)."""
    problems = [{"id": str(i), "problem": f"Q{i}", "answer": "7"} for i in range(8)]
    for prec, (extra, rollout_dtype) in PRECISIONS.items():
        for method in (Method("grpo", {"name": "chains", "G": 8}, {"name": "grpo"}, {"kl_coef": 0.001}),
                       Method("ibtpo", {"name": "ibtree", "B0": 4, "L": 5, "K": 1, "B": 1}, {"name": "ibtpo"},
                              {"kl_coef": 0.001})):
            m = build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, max_positions=64).to(dev)
            with tempfile.TemporaryDirectory() as d:
                tr = toy_trainer(m, tok, problems, method, dev, d, dict(steps=steps, batch_problems=4,
                                                                        checkpoint_every=steps, lr=1e-2, **extra), 3,
                                 rollout_dtype=rollout_dtype)
                rows = [tr.train_step() for _ in range(steps)]
            rewards = [r["reward_mean"] for r in rows]
            mism = max(r.get("rollout_logprob_absdiff_mean", 0.0) for r in rows)
            k = max(1, steps // 6)
            print(f"train {method.name} {prec}: reward first{k}={sum(rewards[:k]) / k:.2f} "
                  f"last{k}={sum(rewards[-k:]) / k:.2f}, rollout-vs-trainer |dlogp| mean <= {mism:.1e}")
            assert all(p.dtype == torch.float32 for p in tr.model.parameters()), "master weights left float32"


def big_llama(tok, s: dict, dtype, dev: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=s["width"], intermediate_size=4 * s["width"],
                      num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["heads"],
                      max_position_embeddings=2048, tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to(dev, dtype).eval()


def timed(fn, dev: str) -> float:
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t0


def check_throughput(tok, dev: str, s: dict) -> dict:
    """(3) tokens per second of the plain loop, the HF-forward loop and ``model.generate``, every row to the cap."""
    prefixes = [tok(f"Compute {i}+{i}*{i}.\n")["input_ids"] for i in range(s["prompts"])]
    params = SamplingParams(max_new_tokens=s["tokens"])  # no stop token: every row runs to the cap
    n = s["prompts"] * s["samples"] * s["tokens"]
    speeds = {}
    for name in ("fp32", "bf16"):
        model = big_llama(tok, s, DTYPES[name], dev)
        for path in ("torch", "graph", "hf"):
            b = HFBackend(model, tok.pad_token_id, dev, decode=path)
            b.generate(prefixes[:2], 2, SamplingParams(max_new_tokens=4), seed=0)  # warm-up
            speeds[(path, name)] = n / timed(lambda: b.generate(prefixes, s["samples"], params, seed=1), dev)
        width = max(len(p) for p in prefixes)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prefixes], device=dev)
        mask = (torch.arange(width, device=dev)[None] >= torch.tensor([width - len(p) for p in prefixes],
                                                                      device=dev)[:, None]).long()

        def hf_generate(model=model):
            with torch.no_grad():
                model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=s["tokens"],
                               min_new_tokens=s["tokens"], num_return_sequences=s["samples"],
                               pad_token_id=tok.pad_token_id, top_k=0)

        speeds[("generate", name)] = n / timed(hf_generate, dev)
        if dev.startswith("cuda"):
            speeds[("generate_batch", name)] = continuous_batching(model, prefixes, s, dev)
        for path in ("torch", "graph", "hf", "generate", "generate_batch"):
            if (path, name) not in speeds:
                continue
            print(f"generation {name} {path:8s}: {s['prompts']}x{s['samples']}x{s['tokens']} tokens "
                  f"{speeds[(path, name)]:,.0f} tok/s")
    return speeds


def continuous_batching(model, prefixes, s: dict, dev: str) -> float:
    """Tokens per second of transformers' continuous batching (``generate_batch``, CUDA graphs; what TRL's
    ``use_transformers_continuous_batching`` uses), counted from what it generated; 0 where it fails."""
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=s["tokens"], do_sample=True, top_k=0, num_return_sequences=s["samples"])
    try:
        model.generate_batch(inputs=[list(p) for p in prefixes[:2]], generation_config=cfg, max_new_tokens=4)
        sync(dev)
        t0 = time.perf_counter()
        out = model.generate_batch(inputs=[list(p) for p in prefixes], generation_config=cfg)
        sync(dev)
        dt = time.perf_counter() - t0
        return sum(len(r.generated_tokens) for r in out.values()) / dt
    except Exception as e:  # an API or kernel gap of this transformers: reported, not fatal
        print(f"generate_batch failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        return 0.0


def check_step_times(tok, dev: str, s: dict, decode: str) -> None:
    """(4) one GRPO step and one IB-TPO step (after one warm-up step each) at the throughput shape, fp32; and a
    GRPO step in bf16-mixed with gradient checkpointing and a bf16 rollout (peak memory beside each on CUDA)."""
    problems = [{"id": str(i), "problem": f"Compute {i}+{i}.", "answer": "7"} for i in range(s["prompts"])]
    grpo = Method("grpo", {"name": "chains", "G": s["samples"]}, {"name": "grpo"}, {"kl_coef": 0.001})
    ibtpo = Method("ibtpo", {"name": "ibtree", "B0": 4, "L": 9, "K": 1, "B": 1}, {"name": "ibtpo"}, {"kl_coef": 0.001})
    times = {}
    for label, method, prec in (("grpo", grpo, "fp32"), ("ibtpo", ibtpo, "fp32"), ("grpo", grpo, "bf16-mixed")):
        m = big_llama(tok, s, torch.float32, dev).train()
        if dev.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as d:
            tr = toy_trainer(m, tok, problems, method, dev, d, dict(steps=2, batch_problems=s["prompts"],
                                                                    checkpoint_every=100, lr=1e-5,
                                                                    **PRECISIONS[prec][0]),
                             s["step_tokens"], decode, PRECISIONS[prec][1])
            tr.train_step()
            times[(label, prec)] = timed(tr.train_step, dev)
        peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if dev.startswith("cuda") else ""
        print(f"step {label} {prec} (decode {decode}): {times[(label, prec)]:.2f} s{peak}")
        del m, tr
    print(f"GRPO step bf16-mixed / fp32 = {times[('grpo', 'bf16-mixed')] / times[('grpo', 'fp32')]:.2f}")
    print(f"IB-TPO step / GRPO step = {times[('ibtpo', 'fp32')] / times[('grpo', 'fp32')]:.2f}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--step-decode", default="graph", help="the decode path of the step-time check (4)")
    args = ap.parse_args(argv)
    import transformers

    dev, s = args.device, SIZES[args.size]
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "none"
    print(f"torch {torch.__version__} transformers {transformers.__version__} device {dev} gpu {gpu} size {args.size}")
    tok = build_char_tokenizer()
    check_decode_paths(tok, dev)
    check_training(tok, dev, s["train_steps"])
    speeds = check_throughput(tok, dev, s)
    check_step_times(tok, dev, s, args.step_decode)
    best = max(speeds[("torch", "bf16")], speeds[("graph", "bf16")])
    print(f"plain loop / model.generate, bf16 = {best / speeds[('generate', 'bf16')]:.2f}")
    return speeds


if __name__ == "__main__":
    main()
