"""The vLLM backend's logic that needs no GPU: request building, output conversion, prefix
bookkeeping, weight-version tracking, and the backend's orchestration (lazy weight sync, sleep /
wake order, rescoring) over a stand-in engine. The real engine is exercised by the last test
(skipped without vLLM + CUDA) and by ``bench/vllm_check.py`` on a GPU machine."""

from __future__ import annotations

import copy
import importlib.util
import math
from types import SimpleNamespace

import pytest
import torch

from ibtpo.rollout import vllm_backend as vb
from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.hf_backend import HFBackend

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


# ------------------------------------------------------------------------------------------------
# A stand-in for the slice of vllm.LLM the backend uses, computed with an HF model on the CPU
# ------------------------------------------------------------------------------------------------

class FakeSamplingParams:
    """Keeps the keyword arguments of ``vllm.SamplingParams`` that the backend may pass."""

    DEFAULTS = dict(n=1, temperature=1.0, top_p=1.0, top_k=0, max_tokens=16, seed=None, stop_token_ids=None,
                    ignore_eos=False, logprobs=None, detokenize=True, prompt_logprobs=None)

    def __init__(self, **kw):
        unknown = set(kw) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"unexpected SamplingParams arguments {sorted(unknown)}")
        self.__dict__.update({**self.DEFAULTS, **kw})


class FakeEngineModel:
    def __init__(self, model):
        self.model, self.loads = model, 0

    def load_weights(self, weights):
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, t in weights:
                params[name].copy_(t)  # KeyError on a name the engine does not know, as vLLM
        self.loads += 1


class FakeLLM:
    """Samples with a private copy of ``model`` (HF backend, one call per sample with seed
    ``request seed + child index``, vLLM's rule), stops at ``stop_token_ids`` (and at ``eos`` unless
    ``ignore_eos``), returns samples out of index order, forgets its weights on a level-2 sleep."""

    def __init__(self, model, eos: int | None = 1):
        self.model = copy.deepcopy(model).eval()
        self.eos = eos
        self.engine_model = FakeEngineModel(self.model)
        runner = SimpleNamespace(get_model=lambda: self.engine_model)
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)))
        self.calls: list[tuple] = []
        self.awake = {"weights": True, "kv_cache": True}

    def generate(self, prompts, sampling_params, use_tqdm=True):
        if not all(self.awake.values()):
            raise RuntimeError(f"generate while asleep: {self.awake}")
        self.calls.append(("generate", len(prompts)))
        outs = []
        for prompt, sp in zip(prompts, sampling_params, strict=True):
            ids = prompt["prompt_token_ids"]
            if sp.prompt_logprobs is not None:
                with torch.no_grad():
                    lp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), -1)
                plp = [None] + [{ids[k]: SimpleNamespace(logprob=lp[k - 1, ids[k]].item())} for k in range(1, len(ids))]
                outs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=plp, outputs=[], num_cached_tokens=0))
                continue
            stop = tuple(sp.stop_token_ids or ()) + (() if sp.ignore_eos or self.eos is None else (self.eos,))
            params = SamplingParams(sp.temperature, sp.top_p, max(sp.top_k, 0), sp.max_tokens, stop)
            hf = HFBackend(self.model, pad_token_id=0)
            comps = []
            for j in range(sp.n):
                c = hf.generate([ids], 1, params, seed=None if sp.seed is None else sp.seed + j)[0][0]
                lps = (None if sp.logprobs is None
                       else [{t: SimpleNamespace(logprob=x)} for t, x in zip(c.token_ids, c.logprobs)])
                comps.append(SimpleNamespace(index=j, token_ids=tuple(c.token_ids), logprobs=lps,
                                             finish_reason=c.finish_reason,
                                             stop_reason=c.token_ids[-1] if c.finish_reason == "stop" else None))
            outs.append(SimpleNamespace(prompt_token_ids=ids, outputs=comps[::-1], num_cached_tokens=3,
                                        prompt_logprobs=None))
        return outs

    def sleep(self, level=1):
        self.calls.append(("sleep", level))
        self.awake = {"weights": False, "kv_cache": False}
        if level == 2:  # weights discarded: whatever is in that memory after waking is garbage
            with torch.no_grad():
                for p in self.model.parameters():
                    p.normal_()

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tuple(tags) if tags else None))
        for t in tags or list(self.awake):
            self.awake[t] = True

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))
        return True


def _backend(policy, **settings):
    llm = FakeLLM(policy)
    return vb.VLLMBackend(llm, policy, vb.VLLMSettings(**settings), sampling_params_cls=FakeSamplingParams), llm


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def _full_forward(model, prefix, ids, T):
    """Log-probs and entropies of ``ids`` after ``prefix`` at ``logits / T`` (one plain forward)."""
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([list(prefix) + list(ids)])).logits[0].float() / T, -1)
    pos = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(ids))
    return lp[pos, torch.tensor(ids)], -(lp[pos].exp() * lp[pos]).sum(-1)


@pytest.fixture
def policy(tiny_model):
    return copy.deepcopy(tiny_model)


# ------------------------------------------------------------------------------------------------
# Requests
# ------------------------------------------------------------------------------------------------

def test_requests_map_every_sampling_setting():
    params = SamplingParams(temperature=0.7, top_p=0.9, top_k=0, max_new_tokens=20, stop_token_ids=(5, 1, 5))
    reqs = vb.build_requests([[3, 4], [7], [8, 9, 10]], 4, params, seed=11, max_new=[5, 50, 20])
    assert [p["prompt_token_ids"] for p, _ in reqs] == [[3, 4], [7], [8, 9, 10]]
    assert [kw["max_tokens"] for _, kw in reqs] == [5, 20, 20]  # min(max_new_tokens, max_new[i])
    for _, kw in reqs:
        assert kw["n"] == 4 and kw["temperature"] == 0.7 and kw["top_p"] == 0.9
        assert kw["top_k"] == -1  # our 0 (off) is vLLM's -1
        assert kw["stop_token_ids"] == [1, 5] and kw["ignore_eos"] is True
        assert kw["logprobs"] is None and kw["detokenize"] is False
    assert vb.build_requests([[1]], 1, SamplingParams(top_k=7), want_logprobs=True)[0][1]["top_k"] == 7
    assert vb.build_requests([[1]], 1, SamplingParams(), want_logprobs=True)[0][1]["logprobs"] == 0
    assert vb.build_requests([[1]], 1, SamplingParams(max_new_tokens=9))[0][1]["max_tokens"] == 9
    FakeSamplingParams(**reqs[0][1])  # only arguments vllm.SamplingParams takes


def test_request_seeds_are_reproducible_and_never_share_a_stream():
    params = SamplingParams()
    seeds = lambda s, k: [kw["seed"] for _, kw in vb.build_requests([[1]] * k, 8, params, seed=s)]  # noqa: E731
    assert seeds(3, 5) == seeds(3, 5)
    # vLLM gives child j of a request the seed (request seed + j): every child stream of two calls
    # (e.g. an IBTree round continuing the root with seed s + 2) must differ
    streams = [s + j for call in (3, 5) for s in seeds(call, 5) for j in range(8)]
    assert len(set(streams)) == len(streams)
    assert all(0 <= s < 2**62 for s in seeds(2**40, 3))
    assert [kw["seed"] for _, kw in vb.build_requests([[1]], 2, params, seed=None)] == [None]


def test_bad_requests_fail_naming_the_prefix():
    with pytest.raises(ValueError, match="prefix 1: no token budget"):
        vb.build_requests([[1], [2]], 2, SamplingParams(max_new_tokens=8), max_new=[3, 0])
    with pytest.raises(ValueError, match="max_new has 1 entries for 2 prefixes"):
        vb.build_requests([[1], [2]], 2, SamplingParams(), max_new=[3])
    with pytest.raises(ValueError, match="prefix 0 is empty"):
        vb.build_requests([[]], 2, SamplingParams())
    with pytest.raises(ValueError, match="n must be >= 1"):
        vb.build_requests([[1]], 0, SamplingParams())


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------

def _out(*samples, cached=0):
    return SimpleNamespace(outputs=[SimpleNamespace(**s) for s in samples], num_cached_tokens=cached)


def test_outputs_become_completions_in_index_order():
    lp = lambda toks, vals: [{t: SimpleNamespace(logprob=v), 99: SimpleNamespace(logprob=-9.0)}  # noqa: E731
                             for t, v in zip(toks, vals)]
    ro = _out(dict(index=1, token_ids=(4, 4, 4), logprobs=lp((4, 4, 4), (-1.0, -2.0, -3.0)), finish_reason="length",
                   stop_reason=None),
              dict(index=0, token_ids=(6, 2), logprobs=lp((6, 2), (-0.5, -0.25)), finish_reason="stop", stop_reason=2))
    a, b = vb.convert_output(ro, 2, stop_ids=[2], max_tokens=3, want_logprobs=True)
    assert (a.token_ids, a.logprobs, a.finish_reason, a.truncated) == ([6, 2], [-0.5, -0.25], "stop", False)
    assert (b.token_ids, b.logprobs, b.finish_reason, b.truncated) == ([4, 4, 4], [-1.0, -2.0, -3.0], "length", True)
    assert all(math.isnan(e) for e in a.entropies + b.entropies)  # vLLM has no full-vocabulary entropy
    c, = vb.convert_output(_out(dict(index=0, token_ids=[6], logprobs=None, finish_reason="length")), 1, [2], 1, False)
    assert math.isnan(c.logprobs[0])  # filled in by rescoring


@pytest.mark.parametrize("sample, n, match", [
    (dict(index=0, token_ids=[6, 3], logprobs=None, finish_reason="stop", stop_reason="</s>"), 1,
     "without one of the stop ids"),
    (dict(index=0, token_ids=[6], logprobs=None, finish_reason="abort"), 1, "unexpected finish_reason 'abort'"),
    (dict(index=0, token_ids=[6, 6, 6, 6], logprobs=None, finish_reason="length"), 1, "exceed max_tokens=3"),
    (dict(index=0, token_ids=[6], logprobs=None, finish_reason="length"), 2, "returned 1 samples, expected n=2"),
])
def test_unexpected_outputs_are_errors(sample, n, match):
    with pytest.raises(RuntimeError, match=match):
        vb.convert_output(_out(sample), n, [2], 3, False, where="prefix 4")


def test_missing_logprobs_are_errors():
    with pytest.raises(RuntimeError, match="1 log-prob entries for 2 tokens"):
        vb.convert_output(_out(dict(index=0, token_ids=[6, 7], logprobs=[{6: -1.0}], finish_reason="length")),
                          1, [2], 3, True)
    with pytest.raises(ValueError, match="no log-prob for the sampled token 7"):
        vb.convert_output(_out(dict(index=0, token_ids=[7], logprobs=[{6: -1.0}], finish_reason="length")),
                          1, [2], 3, True)


# ------------------------------------------------------------------------------------------------
# Prefix bookkeeping, weights
# ------------------------------------------------------------------------------------------------

def test_prefix_ledger_counts_full_blocks_of_seen_prefixes():
    led = vb.PrefixLedger(block_size=4)
    led.add(list(range(1, 11)))  # blocks [1..4], [5..8]; 9, 10 do not fill a block
    assert led.cached_tokens(list(range(1, 9)) + [99]) == 8
    assert led.cached_tokens(list(range(1, 11)) + [11, 12]) == 8  # [9..12] was never a full block
    assert led.cached_tokens([1, 2, 3, 4, 5, 6, 7, 0]) == 4
    assert led.cached_tokens([0, 2, 3, 4, 5, 6, 7, 8]) == 0  # a block counts only under its whole prefix
    assert led.cached_tokens([1, 2, 3]) == 0
    led.reset()
    assert led.cached_tokens(list(range(1, 9))) == 0 and len(led) == 0


def test_weights_version_moves_with_updates_not_with_forward(policy):
    v0 = vb.weights_version(policy)
    out = policy(torch.tensor([[3, 4, 5]])).logits.sum()
    out.backward()
    assert vb.weights_version(policy) == v0
    torch.optim.AdamW(policy.parameters(), lr=1e-3).step()
    v1 = vb.weights_version(policy)
    assert v1 != v0
    policy.load_state_dict(copy.deepcopy(policy.state_dict()))
    assert vb.weights_version(policy) != v1
    assert vb.weights_version(copy.deepcopy(policy)) != vb.weights_version(policy)  # another model


def test_named_weights_use_hf_names_once(policy):
    names = [n for n, _ in vb.named_weights(policy)]
    assert len(names) == len(set(names)) == len(list(policy.parameters()))
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names  # tied: sent once
    wrapped = torch.nn.Module()
    wrapped.module = policy
    assert [n for n, _ in vb.named_weights(wrapped)] == names  # DDP's "module." prefix removed


def test_token_chunks_respect_the_budget():
    assert vb.token_chunks([3, 3, 3, 10, 1], 6) == [[0, 1], [2], [3], [4]]
    assert vb.token_chunks([], 6) == []


def test_settings_validate_and_map_to_engine_arguments():
    s = vb.VLLMSettings.from_config(None)
    kw = s.engine_kwargs("/ckpt", seed=3, dummy_weights=True)
    assert kw["enable_prefix_caching"] is True and kw["distributed_executor_backend"] == "external_launcher"
    assert kw["enable_sleep_mode"] is True and kw["load_format"] == "dummy" and kw["seed"] == 3
    assert "logprobs_mode" not in kw  # exact log-probs come from rescoring
    kw = vb.VLLMSettings.from_config({"logprobs": "vllm", "sleep": False, "max_model_len": 4096}).engine_kwargs("/c")
    assert kw["logprobs_mode"] == "processed_logprobs" and kw["enable_sleep_mode"] is False
    assert kw["max_model_len"] == 4096 and "load_format" not in kw
    with pytest.raises(ValueError, match=r"rollout.vllm: unknown key\(s\) \['gpu_mem'\]"):
        vb.VLLMSettings.from_config({"gpu_mem": 0.3})
    with pytest.raises(ValueError, match="rollout.vllm.logprobs: 'raw'"):
        vb.VLLMSettings.from_config({"logprobs": "raw"})
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        vb.VLLMSettings.from_config({"gpu_memory_utilization": 1.5})


# ------------------------------------------------------------------------------------------------
# The backend over the stand-in engine
# ------------------------------------------------------------------------------------------------

def test_generate_returns_exact_logprobs_and_entropies_by_rescoring(tok, policy):
    b, llm = _backend(policy)
    prefixes = [tok("Compute 4+2.\n")["input_ids"], tok("Compute (14+2)*3-1.\n")["input_ids"]]
    params = SamplingParams(temperature=0.7, max_new_tokens=12, stop_token_ids=(tok.eos_token_id,))
    out = b.generate(prefixes, 3, params, seed=1, max_new=[12, 5])
    assert [len(o) for o in out] == [3, 3]
    assert all(len(c.token_ids) <= 5 for c in out[1])
    for p, samples in zip(prefixes, out):
        for c in samples:
            ref_lp, ref_ent = _full_forward(policy, p, c.token_ids, 0.7)
            assert torch.allclose(ref_lp, torch.tensor(c.logprobs), atol=1e-4)
            assert torch.allclose(ref_ent, torch.tensor(c.entropies), atol=1e-4)
            assert c.finish_reason == ("stop" if c.token_ids[-1] == tok.eos_token_id else "length")
    assert b.generate(prefixes, 3, params, seed=1, max_new=[12, 5])[0][0].token_ids == out[0][0].token_ids
    st = b.stats
    assert st.calls == 2 and st.tokens_generated == 2 * sum(len(c.token_ids) for o in out for c in o)
    assert st.extra["prompt_tokens"] == 2 * sum(map(len, prefixes))
    assert st.extra["prompt_tokens_cached_vllm"] == 2 * 2 * 3  # what the engine reported (3 per request)
    assert st.prefix_tokens_encoded == st.extra["prompt_tokens"] - 12
    assert b.generate([], 3, params) == []


def test_vllm_logprob_source_passes_the_engine_values_and_nan_entropies(tok, policy):
    b, _ = _backend(policy, logprobs="vllm", sleep=False)
    p = tok("Compute 1+2.\n")["input_ids"]
    c = b.generate([p], 2, SamplingParams(temperature=0.8, max_new_tokens=6), seed=0)[0][0]
    ref_lp, _ = _full_forward(policy, p, c.token_ids, 0.8)  # top-k/top-p off: processed == convention
    assert torch.allclose(ref_lp, torch.tensor(c.logprobs), atol=1e-4)
    assert all(math.isnan(e) for e in c.entropies)
    assert "NaN" in b.stats.extra["logprobs"]


def test_weights_follow_the_policy_lazily_and_the_check_sees_it(tok, policy):
    b, llm = _backend(policy, sleep=False)
    p = [tok("Compute 3*3.\n")["input_ids"]]
    params = SamplingParams(max_new_tokens=4)
    torch.manual_seed(0)
    with torch.no_grad():  # the engine starts from other weights (vLLM's dummy load)
        for q in llm.model.parameters():
            q.normal_()
    b.generate(p, 1, params, seed=0)
    assert llm.engine_model.loads == 1 and _same_weights(llm.model, policy)
    b.generate(p, 1, params, seed=0)
    assert llm.engine_model.loads == 1  # unchanged weights: no reload
    policy(torch.tensor([p[0]])).logits.pow(2).mean().backward()
    torch.optim.SGD(policy.parameters(), lr=5.0).step()  # an optimizer step, no explicit sync call
    assert not _same_weights(llm.model, policy)
    b.generate(p, 1, params, seed=0)
    assert llm.engine_model.loads == 2 and _same_weights(llm.model, policy)
    assert llm.calls[-2] == ("reset_prefix_cache",)  # the old weights' KV blocks are dropped

    with torch.no_grad():
        for q in policy.parameters():
            q.data += 0.05 * torch.randn_like(q)  # through .data: no version bump, the check still sees it
    res = b.check_weight_sync(policy, probe=p[0] * 3)
    assert res["before"]["mean"] > 1e-3 and res["after"]["max"] < 1e-5
    assert res["after"]["tokens"] == 3 * len(p[0]) - 1
    assert b.stats.extra["weight_syncs"] == 3


def test_sleep_frees_the_engine_and_waking_reloads_the_weights(tok, policy):
    b, llm = _backend(policy, sleep=True, sleep_level=2)
    p = [tok("Compute 5-2.\n")["input_ids"]]
    b.generate(p, 2, SamplingParams(max_new_tokens=4), seed=0)
    b.release()
    b.release()  # idempotent
    assert [c for c in llm.calls if c[0] == "sleep"] == [("sleep", 2)]
    assert not _same_weights(llm.model, policy)  # level 2 discarded them
    llm.calls.clear()
    b.generate(p, 2, SamplingParams(max_new_tokens=4), seed=0)
    assert llm.calls[:3] == [("wake_up", ("weights",)), ("reset_prefix_cache",), ("wake_up", ("kv_cache",))]
    assert _same_weights(llm.model, policy)

    b1, llm1 = _backend(policy, sleep=True, sleep_level=1)
    b1.generate(p, 1, SamplingParams(max_new_tokens=4), seed=0)
    loads = llm1.engine_model.loads
    llm1.sleep = lambda level: llm1.calls.append(("sleep", level)) or llm1.awake.update(weights=False, kv_cache=False)
    b1.release()
    b1.generate(p, 1, SamplingParams(max_new_tokens=4), seed=0)
    assert llm1.engine_model.loads == loads  # level 1 kept the weights and they did not change

    b2, llm2 = _backend(policy, sleep=False)
    b2.release()
    assert not [c for c in llm2.calls if c[0] == "sleep"]


def test_settings_that_cannot_work_without_a_policy_are_refused():
    with pytest.raises(ValueError, match="rescoring needs the trainer's model"):
        vb.VLLMBackend(SimpleNamespace(), None, vb.VLLMSettings(), sampling_params_cls=FakeSamplingParams)
    with pytest.raises(ValueError, match="sleep_level 2"):
        vb.VLLMBackend(SimpleNamespace(), None, vb.VLLMSettings(logprobs="vllm"),
                       sampling_params_cls=FakeSamplingParams)


def test_engine_model_is_found_or_the_error_says_why():
    m = SimpleNamespace(load_weights=lambda w: None)
    llm = SimpleNamespace(llm_engine=SimpleNamespace(model_executor=SimpleNamespace(
        driver_worker=SimpleNamespace(worker=SimpleNamespace(model_runner=SimpleNamespace(model=m))))))
    assert vb.engine_model(llm) is m
    with pytest.raises(RuntimeError, match="in-process"):
        vb.engine_model(SimpleNamespace(llm_engine=SimpleNamespace(engine_core="another process")))


def test_lm_eval_model_args():
    args = vb.lm_eval_model_args("/ckpt/step_10", 3, {"gpu_memory_utilization": 0.5, "max_model_len": 4096})
    assert args == {"pretrained": "/ckpt/step_10", "seed": 3, "dtype": "auto", "enable_prefix_caching": True,
                    "gpu_memory_utilization": 0.5, "max_model_len": 4096}


# ------------------------------------------------------------------------------------------------
# Where vLLM is missing (this machine), selecting it fails clearly
# ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here: the missing-vLLM messages cannot be checked")
def test_selecting_vllm_without_it_fails_with_a_clear_message(policy, tok):
    with pytest.raises(vb.VLLMUnavailable, match=r"GPU-only optional extra.*pip install '\.\[vllm\]'"):
        vb.require_vllm("rollout.backend: vllm")
    with pytest.raises(vb.VLLMUnavailable, match="^rollout.backend: vllm needs vLLM"):
        vb.build_backend({"device": "cuda", "rollout": {"backend": "vllm"}}, policy, "/ckpt")
    with pytest.raises(vb.VLLMUnavailable, match="rollout.backend: vllm needs vLLM"):
        vb.VLLMBackend(SimpleNamespace(), policy)  # no stand-in SamplingParams: the real one is needed
    from ibtpo.eval.run import model_arguments

    with pytest.raises(vb.VLLMUnavailable, match="^evaluation.model: vllm needs vLLM"):
        model_arguments("vllm", "/ckpt", {"batch_size": 4, "k": 2}, 0)


# ------------------------------------------------------------------------------------------------
# The real engine (GPU machines with the vllm extra; bench/vllm_check.py does more)
# ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not (HAVE_VLLM and torch.cuda.is_available()),
                    reason="needs vLLM and a CUDA GPU (the vllm extra); run bench/vllm_check.py on a GPU machine")
def test_real_engine_generates_and_follows_the_trainer(tmp_path, tok):
    from ibtpo.model.tiny import build_tiny_llama

    model = build_tiny_llama(tok, n_layer=2, d_model=256, n_head=4, d_mlp=512, max_positions=256)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = model.to("cuda")
    b = vb.VLLMBackend.from_pretrained(str(tmp_path), policy=model,
                                       settings=vb.VLLMSettings(gpu_memory_utilization=0.2, dtype="float32",
                                                                max_model_len=256, enforce_eager=True))
    p = tok("Compute 4+2.\n")["input_ids"]
    out = b.generate([p, p], 4, SamplingParams(temperature=0.7, max_new_tokens=16), seed=0)
    assert [len(o) for o in out] == [4, 4]
    for c in out[0]:
        ref_lp, _ = _full_forward(model, p, c.token_ids, 0.7)
        assert torch.allclose(ref_lp.cpu(), torch.tensor(c.logprobs), atol=1e-3)
    with torch.no_grad():
        for q in model.parameters():
            q.add_(0.05 * torch.randn_like(q))
    res = b.check_weight_sync(model, probe=p * 3)
    assert res["before"]["mean"] > res["after"]["mean"]


# ------------------------------------------------------------------------------------------------
# Config: rollout.vllm keys, and vLLM on a CPU preset
# ------------------------------------------------------------------------------------------------

def test_schema_keys_are_the_settings_fields():
    import yaml

    from ibtpo.config import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    keys = set(schema["properties"]["rollout"]["properties"]["vllm"]["properties"])
    assert keys == {f.name for f in vb.fields(vb.VLLMSettings)}


def test_config_refuses_vllm_on_a_cpu_preset_and_plans_it_on_cuda():
    from ibtpo.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"rollout.backend: 'vllm' runs on CUDA GPUs only .*pip install '\.\[vllm\]'"):
        load_config("smoke", overrides={"rollout": {"backend": "vllm"}})
    with pytest.raises(ConfigError, match="evaluation.model: 'vllm' runs on CUDA GPUs only"):
        load_config("smoke", overrides={"evaluation": {"model": "vllm"}})
    cfg = load_config("smoke", overrides={"device": "cuda", "rollout": {"backend": "vllm", "vllm": {"sleep_level": 1}},
                                          "evaluation": {"model": "vllm"}})  # planning needs no vLLM here
    assert cfg["rollout"]["vllm"] == {"sleep_level": 1}
    with pytest.raises(ConfigError, match="rollout.vllm: Additional properties"):
        load_config("smoke", overrides={"device": "cuda", "rollout": {"backend": "vllm", "vllm": {"tp": 2}}})
    with pytest.raises(ConfigError, match="rollout.vllm.max_model_len: 64 leaves no room"):
        load_config("smoke",
                    overrides={"device": "cuda", "rollout": {"backend": "vllm", "vllm": {"max_model_len": 64}}})
