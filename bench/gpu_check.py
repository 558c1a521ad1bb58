"""CUDA check of the shared rollout and trainer (run on a GPU machine; CI never runs it).

Checks, on ``cuda``: the HF backend's per-token log-probs match a full forward; a few IB-TPO and
GRPO training steps run end to end on a toy reward and move the policy; generation throughput of
the HF backend for the tiny model and for a ~0.5B-parameter Llama-shaped model (random weights),
fp32 and bf16. Prints a summary; the last line is the bf16/fp32 generation speed ratio.

    python bench/gpu_check.py
"""

from __future__ import annotations

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


class StartsWithSeven:
    def grade_many(self, pairs):
        return [pred.startswith("7") for _, pred in pairs]


def main():
    import transformers

    assert torch.cuda.is_available(), "no CUDA device"
    dev = "cuda"
    print(f"torch {torch.__version__} transformers {transformers.__version__} gpu {torch.cuda.get_device_name(0)}")
    tok = build_char_tokenizer()
    model = build_tiny_llama(tok).to(dev)
    b = HFBackend(model, tok.pad_token_id, dev)
    prefix = tok("Compute (4+2)*3.\n")["input_ids"]
    out = b.generate([prefix], 4, SamplingParams(max_new_tokens=40), seed=0)[0]
    worst = 0.0
    for c in out:
        ids = torch.tensor([prefix + c.token_ids], device=dev)
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0].float(), -1)
        pos = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(c.token_ids), device=dev)
        ref = lp[pos, torch.tensor(c.token_ids, device=dev)]
        worst = max(worst, (ref - torch.tensor(c.logprobs, device=dev)).abs().max().item())
    print(f"logprob max |backend - full forward| on cuda = {worst:.2e}")
    assert worst < 1e-3

    problems = [{"id": str(i), "problem": f"Q{i}", "answer": "7"} for i in range(8)]
    for method in (Method("grpo", {"name": "chains", "G": 8}, {"name": "grpo"}, {"kl_coef": 0.001}),
                   Method("ibtpo", {"name": "ibtree", "B0": 4, "L": 5, "K": 1, "B": 1}, {"name": "ibtpo"},
                          {"kl_coef": 0.001})):
        m = build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, max_positions=64).to(dev)
        with tempfile.TemporaryDirectory() as d:
            tr = Trainer(m, tok, problems, method,
                         TrainSettings.of(dict(steps=30, batch_problems=4, checkpoint_every=30, lr=1e-2)),
                         SamplingParams(max_new_tokens=3, stop_token_ids=(tok.eos_token_id,)),
                         HFBackend(m, tok.pad_token_id, dev), StartsWithSeven(), d, device=dev, log=lambda *_: None)
            rewards = []
            for _ in range(30):
                rewards.append(tr.train_step()["reward_mean"])
        print(f"{method.name} on cuda: reward first5={sum(rewards[:5]) / 5:.2f} last5={sum(rewards[-5:]) / 5:.2f}")

    from transformers import LlamaConfig, LlamaForCausalLM

    speeds = {}
    for name, cfg in (("tiny-1M", None), ("llama-0.5B", LlamaConfig(vocab_size=len(tok), hidden_size=1024,
                      intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
                      max_position_embeddings=2048, tie_word_embeddings=True))):
        for dtype in (torch.float32, torch.bfloat16):
            m = (build_tiny_llama(tok) if cfg is None else LlamaForCausalLM(cfg)).to(dev, dtype).eval()
            bk = HFBackend(m, tok.pad_token_id, dev)
            prefixes = [tok(f"Compute {i}+{i}.\n")["input_ids"] for i in range(64)]
            params = SamplingParams(max_new_tokens=256)
            bk.generate(prefixes[:4], 2, SamplingParams(max_new_tokens=8), seed=0)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = bk.generate(prefixes, 8, params, seed=1)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            n = sum(len(c.token_ids) for r in res for c in r)
            speeds[(name, dtype)] = n / dt
            print(f"generation {name} {str(dtype).split('.')[-1]}: 512 samples x <=256 tokens: {n} tokens in {dt:.2f}s "
                  f"= {n / dt:,.0f} tok/s")
    print("bf16/fp32 generation speed, llama-0.5B = "
          f"{speeds[('llama-0.5B', torch.bfloat16)] / speeds[('llama-0.5B', torch.float32)]:.2f}")


if __name__ == "__main__":
    main()
