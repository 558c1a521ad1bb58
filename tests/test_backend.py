import torch

from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.hf_backend import HFBackend, sample_next


def test_logprobs_and_entropies_match_a_full_forward(tok, tiny_model):
    b = HFBackend(tiny_model, tok.pad_token_id)
    prefixes = [tok("Compute 4+2.\n")["input_ids"], tok("Compute (14+2)*3-1.\n")["input_ids"]]
    params = SamplingParams(temperature=0.7, max_new_tokens=12)
    out = b.generate(prefixes, 3, params, seed=1)
    assert [len(o) for o in out] == [3, 3]
    for p, samples in zip(prefixes, out):
        for c in samples:
            ids = torch.tensor([p + c.token_ids])
            with torch.no_grad():
                lp = torch.log_softmax(tiny_model(ids).logits[0].float() / 0.7, -1)
            pos = torch.arange(len(p) - 1, len(p) - 1 + len(c.token_ids))
            ref_lp = lp[pos, torch.tensor(c.token_ids)]
            ref_ent = -(lp[pos].exp() * lp[pos]).sum(-1)
            assert torch.allclose(ref_lp, torch.tensor(c.logprobs), atol=1e-4)
            assert torch.allclose(ref_ent, torch.tensor(c.entropies), atol=1e-4)
    assert b.stats.tokens_generated == sum(len(c.token_ids) for o in out for c in o)


def test_generation_is_deterministic_given_seed(tok, tiny_model):
    b = HFBackend(tiny_model, tok.pad_token_id)
    p = [tok("Compute 1+2.\n")["input_ids"]]
    params = SamplingParams(max_new_tokens=10)
    a = [c.token_ids for c in b.generate(p, 4, params, seed=5)[0]]
    assert a == [c.token_ids for c in b.generate(p, 4, params, seed=5)[0]]
    assert a != [c.token_ids for c in b.generate(p, 4, params, seed=6)[0]]


def test_stop_token_ends_a_sample():
    class FixedLM(torch.nn.Module):  # always predicts token 3 then (after seeing 3) token 1 = eos
        def forward(self, input_ids, **kw):
            logits = torch.full((*input_ids.shape, 5), -1e9)
            logits[..., 3] = 0
            logits[input_ids == 3, :] = -1e9
            logits[input_ids == 3, 1] = 0
            return type("O", (), {"logits": logits})()

    b = HFBackend(FixedLM(), pad_token_id=0)
    # the real model needs a cache object; FixedLM ignores it
    out = b.generate([[2, 2]], 2, SamplingParams(max_new_tokens=8, stop_token_ids=(1,)), seed=0)
    assert [c.token_ids for c in out[0]] == [[3, 1], [3, 1]]
    assert all(c.finish_reason == "stop" for c in out[0])


def test_top_k_and_top_p_truncate():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    seen_k = {sample_next(logits, SamplingParams(top_k=2), g)[0].item() for _ in range(200)}
    assert seen_k == {0, 1}
    seen_p = {sample_next(logits, SamplingParams(top_p=0.7), g)[0].item() for _ in range(200)}
    assert seen_p == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    tok, lp, ent = sample_next(logits, SamplingParams(top_k=1), g)
    assert tok.item() == 0 and abs(lp.item() - torch.log(torch.tensor(0.5)).item()) < 1e-6
