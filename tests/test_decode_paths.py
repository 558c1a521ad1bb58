"""Every decode path (ibtpo/rollout/decode) in every dtype the schema offers: the same samples as the HF
forward for a seed, log-probs equal to a full forward of the same model (computed here), with padded
prefixes, several samples per prefix, per-prefix caps, stop tokens and compaction; and the choice of path."""

import copy
import shutil

import pytest
import torch

from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.decode import choose
from ibtpo.rollout.hf_backend import HFBackend

FP32, BF16, FP16 = torch.float32, torch.bfloat16, torch.float16
TOL = {FP32: 1e-5, BF16: 1e-2, FP16: 2e-3}  # bf16 keeps 8 bits of mantissa, fp16 11
CLASS = {"hf": "HFForward", "torch": "LlamaRowCache", "c": "LlamaSharedPrefix", "graph": "LlamaStaticCache"}
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the kernel cannot be built")
CASES = [pytest.param(d, t, id=f"{d}-{n}", marks=[needs_cc] if d == "c" else [])
         for d, ts in (("hf", (FP32, BF16, FP16)), ("torch", (FP32, BF16, FP16)), ("c", (FP32,)),
                       ("graph", (FP32, BF16, FP16)))
         for t, n in zip(ts, ("fp32", "bf16", "fp16"))]


@pytest.mark.parametrize("decode,dtype", CASES)
def test_every_path_samples_what_the_hf_forward_samples(tok, tiny_model, decode, dtype):
    model = copy.deepcopy(tiny_model).to(dtype)
    path, ref = HFBackend(model, tok.pad_token_id, decode=decode), HFBackend(model, tok.pad_token_id, decode="hf")
    assert type(path.decode_path()).__name__ == CLASS[decode]
    prefixes = [tok(f"Compute {a}+{b}*3.\n")["input_ids"] for a, b in ((1, 2), (14, 7), (123, 45))]
    params = SamplingParams(temperature=0.8, max_new_tokens=24, stop_token_ids=(tok.eos_token_id,))
    for seed in (0, 1):
        a = path.generate(prefixes, 4, params, seed=seed, max_new=[24, 9, 15])
        b = ref.generate(prefixes, 4, params, seed=seed, max_new=[24, 9, 15])
        assert {len(x.token_ids) for xs in a for x in xs} != {24}  # caps and compaction were exercised
        for p, xs, ys in zip(prefixes, a, b):
            for x, y in zip(xs, ys):
                assert x.token_ids == y.token_ids and x.finish_reason == y.finish_reason
                assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=TOL[dtype])
                assert torch.allclose(torch.tensor(x.entropies), torch.tensor(y.entropies), atol=10 * TOL[dtype])
                with torch.no_grad():  # the reference: a full forward of prefix + sample, float32 softmax
                    lp = torch.log_softmax(model(torch.tensor([p + x.token_ids])).logits[0].float() / 0.8, -1)
                pos = torch.arange(len(p) - 1, len(p) - 1 + len(x.token_ids))
                assert torch.allclose(torch.tensor(x.logprobs), lp[pos, torch.tensor(x.token_ids)], atol=TOL[dtype])


def test_auto_picks_the_fastest_path_that_serves_the_model(tiny_model, monkeypatch):
    from ibtpo.rollout.decode.attention_kernel import kernel

    assert choose(tiny_model, "auto") == ("c" if kernel() is not None else "torch")
    assert choose(copy.deepcopy(tiny_model).to(BF16), "auto") == "torch"
    import ibtpo.rollout.decode as decode

    monkeypatch.setattr(decode, "_on_cuda", lambda model: True)  # a model on CUDA (no GPU here)
    assert choose(tiny_model, "auto") == "graph"
    assert choose(torch.nn.Linear(2, 2), "auto") == "hf"
    assert choose(torch.nn.Linear(2, 2), "auto") == "hf"
    assert choose(torch.nn.Linear(2, 2), "hf") == "hf"


def test_a_path_that_cannot_serve_the_model_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="unknown decode path 'kernel'"):
        choose(tiny_model, "kernel")
    with pytest.raises(ValueError, match="Linear.*is not a plain Llama"):
        choose(torch.nn.Linear(2, 2), "torch")
    with pytest.raises(ValueError, match="serves CPU float32 models; this one is torch.bfloat16 on cpu"):
        choose(copy.deepcopy(tiny_model).to(BF16), "c")


def test_the_llama_step_follows_in_place_weight_updates(tok):
    """The backend keeps its Llama step (fused weights, RoPE table) across calls; after an optimizer
    step on the model it samples what a fresh backend on the updated model samples."""
    from ibtpo.model.tiny import build_tiny_llama

    model = build_tiny_llama(tok, n_layer=2, d_model=32, n_head=2, d_mlp=64, max_positions=128, seed=3)
    b = HFBackend(model, tok.pad_token_id, decode="torch")
    prefixes = [tok("Compute 7*8.\n")["input_ids"], tok("Compute 12-5.\n")["input_ids"]]
    params = SamplingParams(temperature=1.0, max_new_tokens=16)
    before = b.generate(prefixes, 3, params, seed=4)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # an in-place update, as an optimizer step
    after = b.generate(prefixes, 3, params, seed=4)
    fresh = HFBackend(model, tok.pad_token_id, decode="torch").generate(prefixes, 3, params, seed=4)
    assert [[c.logprobs for c in o] for o in after] == [[c.logprobs for c in o] for o in fresh]
    assert [[c.logprobs for c in o] for o in after] != [[c.logprobs for c in o] for o in before]


def test_unfused_projections_give_the_same_samples(tok, tiny_model):
    """Off the CPU the Llama step runs the separate projections (no concatenated weight copy): the same
    numbers as the fused GEMMs (forced here on the CPU)."""
    params = SamplingParams(temperature=0.9, max_new_tokens=12)
    prefixes = [tok("Compute 3+4.\n")["input_ids"], tok("Compute 10*2-7.\n")["input_ids"]]
    fused = HFBackend(tiny_model, tok.pad_token_id, decode="torch")
    unfused = HFBackend(tiny_model, tok.pad_token_id, decode="torch")
    unfused.decode_path().llama.fuse_weights = False  # the step object is kept across calls
    a, b = fused.generate(prefixes, 3, params, seed=2), unfused.generate(prefixes, 3, params, seed=2)
    assert unfused.decode_path().llama.fuse_weights is False
    for xs, ys in zip(a, b):
        for x, y in zip(xs, ys):
            assert x.token_ids == y.token_ids
            assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-6)
