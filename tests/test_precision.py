"""Training precision and activation memory on the CPU (ibtpo/precision.py): a bf16-mixed update is the
fp32 one up to bfloat16 rounding with float32 master weights and optimizer state; gradient checkpointing
recomputes each layer and gives the same gradients on both log-prob paths; checkpoints stay float32 and
resume across precisions; the rollout-vs-trainer log-prob mismatch is reported (ibtpo/logprob_mismatch.py)."""

import json

import numpy as np
import pytest
import torch

import ibtpo.logprobs as L
from ibtpo.config import ConfigError, load_config
from ibtpo.logprob_mismatch import mismatch_metrics, mismatch_sums
from ibtpo.model.tiny import build_tiny_llama
from ibtpo.precision import check_device
from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.hf_backend import HFBackend
from ibtpo.trainer import Method, Trainer, TrainSettings, _pad
from ibtpo.trajectories import Trajectory


class StartsWithSeven:
    def grade_many(self, pairs):
        return [pred.startswith("7") for _, pred in pairs]


PROBLEMS = [{"id": str(i), "problem": f"Q{i}", "answer": "7"} for i in range(8)]


def trainer(tok, run_dir, precision="fp32", gc=False, steps=2, every=2, kl=0.01):
    model = build_tiny_llama(tok, n_layer=2, d_model=32, n_head=2, d_mlp=64, max_positions=64, seed=0)
    sampling = SamplingParams(max_new_tokens=4, stop_token_ids=(tok.eos_token_id,))
    train = TrainSettings.of(dict(steps=steps, batch_problems=4, checkpoint_every=every, lr=1e-2, minibatches=2,
                                  precision=precision, gradient_checkpointing=gc))
    return Trainer(model, tok, PROBLEMS, Method("toy", {"name": "chains", "G": 4}, {"name": "grpo"}, {"kl_coef": kl}),
                   train, sampling, HFBackend(model, tok.pad_token_id), StartsWithSeven(), run_dir,
                   log=lambda *_: None)


def some_trajectories(seed=0, n=10):
    rng = np.random.default_rng(seed)
    trajs = [Trajectory([5, 6, 7][: 1 + i % 3], list(rng.integers(4, 90, 2 + (3 * i) % 7)), [], None, 0.0, False, i)
             for i in range(n)]
    for t in trajs:
        t.advantages = rng.normal(size=len(t.response_ids))
    return trajs


def gradient(tr, trajs, packed=True):
    """The loss and flat gradient of one minibatch of ``trajs`` (KL to a reference moved away from the policy)."""
    R = max(len(t.response_ids) for t in trajs)
    adv = _pad([t.advantages for t in trajs], R, "cpu")
    orig = L.packs
    L.packs = orig if packed else (lambda m: False)
    try:
        ref = tr.frozen_logprobs(tr.ref_model, trajs, R)
        tr.model.train()
        tr.opt.zero_grad(set_to_none=True)
        parts = tr._accumulate_gradients(np.arange(len(trajs)), trajs, adv, None, ref)
    finally:
        L.packs = orig
    return parts["loss"], torch.cat([p.grad.flatten() for p in tr.model.parameters()])


def _perturb(tr):
    with torch.no_grad():  # the policy away from the reference, so the KL term has a gradient
        for p in tr.model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))


def test_bf16_mixed_update_is_the_fp32_update_up_to_bfloat16_rounding(tok, tmp_path):
    """Same weights, same trajectories: the bf16-mixed loss within 2% of fp32's and the gradient's cosine to
    fp32's > 0.99 (bfloat16 keeps 8 bits of mantissa: ~0.4% per product, measured here ~1e-3 on the loss);
    the master weights, their gradients and AdamW's state stay float32; the KL reference is held in bf16."""
    trajs = some_trajectories()
    runs = {}
    for prec in ("fp32", "bf16-mixed"):
        tr = trainer(tok, tmp_path / prec, precision=prec)
        _perturb(tr)
        runs[prec] = (tr, *gradient(tr, trajs))
    (_, l32, g32), (tr16, l16, g16) = runs["fp32"], runs["bf16-mixed"]
    assert not torch.equal(g32, g16)  # autocast did act
    assert l16 == pytest.approx(l32, rel=2e-2, abs=1e-4)
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.99
    assert {p.dtype for p in tr16.model.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in tr16.model.parameters()} == {torch.float32}
    assert {p.dtype for p in tr16.ref_model.parameters()} == {torch.bfloat16}
    assert {b.dtype for b in tr16.ref_model.buffers() if b.is_floating_point()} == {torch.float32}  # RoPE exact
    tr16.opt.step()
    states = [v for s in tr16.opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    assert states and {v.dtype for v in states} == {torch.float32}


def counting(forward, calls):
    def wrapped(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("packed", [True, False])
def test_gradient_checkpointing_recomputes_each_layer_and_keeps_the_gradient(tok, tmp_path, packed):
    """With train.gradient_checkpointing every decoder layer's MLP runs twice per forward + backward (the
    recompute), and the gradient equals the one without (float32, both log-prob paths)."""
    trajs = some_trajectories(seed=2)
    out = []
    for gc in (False, True):
        tr = trainer(tok, tmp_path / f"{gc}", gc=gc)
        _perturb(tr)
        assert L.packs(tr.model)  # no hook left on the model: the packed path stays available
        calls = []
        for layer in tr.model.model.layers:  # counted on entry (a recompute stops early, before a forward hook)
            layer.mlp.forward = counting(layer.mlp.forward, calls)
        loss, g = gradient(tr, trajs, packed=packed)
        out.append((loss, g, len(calls)))
    (l0, g0, n0), (l1, g1, n1) = out
    n_layers = len(tr.model.model.layers)
    chunks = n0 // n_layers  # forwards of the policy in the update (one per chunk)
    assert chunks >= 1 and n0 == chunks * n_layers and n1 == 2 * n0
    assert l1 == pytest.approx(l0, rel=1e-6) and torch.allclose(g0, g1, atol=1e-6)


def test_checkpoints_stay_float32_and_resume_across_precisions(tok, tmp_path):
    """A bf16-mixed run writes float32 checkpoints, and an fp32 trainer resumes from them (and back)."""
    from safetensors.torch import load_file

    first = trainer(tok, tmp_path, precision="bf16-mixed", steps=2, every=2)
    first.fit()
    weights = load_file(str(tmp_path / "ckpt" / "step_2" / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}
    resumed = trainer(tok, tmp_path, precision="fp32", steps=4, every=2)
    resumed.fit()
    assert resumed.step == 4
    again = trainer(tok, tmp_path, precision="bf16-mixed", steps=6, every=2)
    again.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_the_step_reports_the_rollout_vs_trainer_logprob_mismatch(tok, tmp_path):
    """fp32 training reads the fp32 rollout's log-probs back to float rounding; bf16-mixed does not (its
    forwards round in bfloat16): the metric shows the difference."""
    got = {}
    for prec in ("fp32", "bf16-mixed"):
        tr = trainer(tok, tmp_path / prec, precision=prec, steps=1, every=1)
        tr.fit()
        got[prec] = json.loads((tmp_path / prec / "metrics.jsonl").read_text().splitlines()[0])
    f, b = got["fp32"], got["bf16-mixed"]
    assert f["rollout_logprob_absdiff_mean"] < 1e-5 and f["rollout_logprob_absdiff_max"] < 1e-4
    assert b["rollout_logprob_absdiff_mean"] > 10 * max(f["rollout_logprob_absdiff_mean"], 1e-7)
    assert b["rollout_logprob_absdiff_max"] >= b["rollout_logprob_absdiff_mean"] > 0
    assert 0 < b["rollout_prob_absdiff_mean"] < 0.1


def test_mismatch_sums_and_metrics_by_hand():
    a = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.1, 0.2, 0.3]]))
    b = torch.log(torch.tensor([[0.5, 0.5, 0.8], [0.2, 0.2, 0.3]]))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    s = mismatch_sums(a, b, mask)
    ln2 = float(np.log(2.0))
    assert s["mm_tokens"] == 3 and s["mm_abs_logp"] == pytest.approx(2 * ln2) and s["mm_max"] == pytest.approx(ln2)
    assert s["mm_abs_p"] == pytest.approx(0.25 + 0.1)
    m = mismatch_metrics(s)
    assert m == pytest.approx({"rollout_logprob_absdiff_mean": 2 * ln2 / 3, "rollout_logprob_absdiff_max": ln2,
                               "rollout_prob_absdiff_mean": 0.35 / 3})
    assert mismatch_metrics({}) == {}


def test_precision_keys_are_checked_at_planning_and_on_the_device(monkeypatch):
    """fp16 (which would need a loss scaler) and typos are refused by the schema with the key named; bf16-mixed
    on a GPU without bfloat16 is refused before any compute (tested up to the device query)."""
    with pytest.raises(ConfigError, match="train.precision"):
        load_config("smoke", overrides={"train": {"precision": "fp16-mixed"}})
    with pytest.raises(ConfigError, match="train.gradient_checkpointing"):
        load_config("smoke", overrides={"train": {"gradient_checkpointing": "sometimes"}})
    assert load_config("smoke")["train"]["precision"] == "fp32"
    paper = load_config("paper-qwen3-1.7b")["train"]
    assert paper["precision"] == "bf16-mixed" and paper["gradient_checkpointing"] is True
    # a V100: bf16 only by emulation (what is_bf16_supported() answers by default)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100-SXM2-32GB")
    with pytest.raises(RuntimeError, match="bf16-mixed needs a GPU with bfloat16 .*V100.*train.precision: fp32"):
        check_device("bf16-mixed", "cuda")
    check_device("fp32", "cuda")
    check_device("bf16-mixed", "cpu")


def test_fingerprint_and_rule_params_rest_on_results_only():
    """Gradient checkpointing changes no result: a run can switch it on and resume, and no rule reruns for it.
    bf16-mixed and a bf16 rollout do change results; at their defaults (what runs made before these keys
    existed did) they are left out, so those runs' fingerprints are unchanged."""
    import hashlib

    from ibtpo.config import result_view
    from ibtpo.jobs.train import run_fingerprint

    cfg = load_config("smoke")
    fp = run_fingerprint(cfg, "grpo", 0, "base")
    gc = load_config("smoke", overrides={"train": {"gradient_checkpointing": True}})
    assert run_fingerprint(gc, "grpo", 0, "base") == fp
    assert result_view("train", gc["train"]) == result_view("train", cfg["train"])
    for override in ({"train": {"precision": "bf16-mixed"}}, {"rollout": {"dtype": "bfloat16"}}):
        assert run_fingerprint(load_config("smoke", overrides=override), "grpo", 0, "base") != fp, override
    # what the fingerprint was before these keys existed (the section without them)
    old = {"method": cfg["method_defs"]["grpo"], "prompt_template": cfg["prompt_template"], "seed": 0,
           "base": "base", "answer": cfg["evaluation"]["answer"],
           "train": {k: v for k, v in cfg["train"].items() if k not in ("precision", "gradient_checkpointing")},
           "rollout": {k: v for k, v in cfg["rollout"].items() if k != "dtype"}}
    assert hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16] == fp
