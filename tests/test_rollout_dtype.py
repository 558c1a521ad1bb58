"""rollout.dtype (HFBackend(dtype=...)): a float32 policy sampled through a low-precision copy of its
parameters, refreshed after every update; the trainer keeps float32 and reports the log-prob gap."""

import copy
import json

import pytest
import torch

from ibtpo.config import ConfigError, load_config
from ibtpo.model.tiny import build_tiny_llama
from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.hf_backend import HFBackend
from ibtpo.trainer import Method, Trainer, TrainSettings

PARAMS = SamplingParams(temperature=0.8, max_new_tokens=12)


def model_of(tok, seed=0):
    return build_tiny_llama(tok, n_layer=2, d_model=32, n_head=2, d_mlp=64, max_positions=64, seed=seed)


def prefixes(tok):
    return [tok(f"Compute {a}+{b}.\n")["input_ids"] for a, b in ((1, 2), (14, 7))]


def samples(backend, tok):
    return [[(c.token_ids, c.logprobs) for c in cs] for cs in backend.generate(prefixes(tok), 3, PARAMS, seed=5)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_low_precision_rollout_samples_the_cast_parameters_and_leaves_the_policy(tok, dtype):
    """The backend samples what a model whose parameters are cast to ``dtype`` (buffers kept) samples, token for
    token; the policy it was given stays float32 and trainable."""
    policy = model_of(tok)
    name = {torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    backend = HFBackend(policy, tok.pad_token_id, decode="torch", dtype=name)
    assert backend.model is not policy and {p.dtype for p in backend.model.parameters()} == {dtype}
    assert {b.dtype for b in backend.model.buffers() if b.is_floating_point()} == {torch.float32}
    assert {p.dtype for p in policy.parameters()} == {torch.float32} and all(p.requires_grad
                                                                             for p in policy.parameters())
    cast = copy.deepcopy(policy)
    for p in cast.parameters():
        p.data = p.data.to(dtype)
    assert samples(backend, tok) == samples(HFBackend(cast, tok.pad_token_id, decode="torch"), tok)
    same = HFBackend(policy, tok.pad_token_id, decode="torch", dtype="float32")
    assert same.model is policy  # float32: the policy itself, no copy


def test_sync_weights_refreshes_the_copy_in_place(tok):
    """After an update of the policy (in place, as the optimizer does) sync_weights brings the copy to the new
    weights: the samples are those of a backend built afresh from the updated policy."""
    policy = model_of(tok)
    backend = HFBackend(policy, tok.pad_token_id, decode="torch", dtype="bfloat16")
    copy_before = backend.model
    before = samples(backend, tok)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    backend.sync_weights(policy)
    assert backend.model is copy_before  # overwritten in place, not copied again
    for own, p in zip(backend.model.parameters(), policy.parameters()):
        assert torch.equal(own, p.to(torch.bfloat16))
    after = samples(backend, tok)
    assert after != before
    assert after == samples(HFBackend(policy, tok.pad_token_id, decode="torch", dtype="bfloat16"), tok)
    other = model_of(tok, seed=1)
    backend.sync_weights(other)  # another model object: a new copy of it
    assert backend.model is not copy_before
    assert torch.equal(next(backend.model.parameters()), next(other.parameters()).to(torch.bfloat16))


class StartsWithSeven:
    def grade_many(self, pairs):
        return [pred.startswith("7") for _, pred in pairs]


PROBLEMS = [{"id": str(i), "problem": f"Q{i}", "answer": "7"} for i in range(8)]


def toy_trainer(tok, run_dir, dtype: str, steps: int):
    """A GRPO trainer on the toy reward sampling through ``HFBackend(dtype=dtype)``; returns it and its backend."""
    model = model_of(tok)
    backend = HFBackend(model, tok.pad_token_id, decode="torch", dtype=dtype)
    return Trainer(model, tok, PROBLEMS, Method("toy", {"name": "chains", "G": 4}, {"name": "grpo"}, {}),
                   TrainSettings.of(dict(steps=steps, batch_problems=4, checkpoint_every=2, lr=1e-2)),
                   SamplingParams(max_new_tokens=4, stop_token_ids=(tok.eos_token_id,)), backend,
                   StartsWithSeven(), run_dir, log=lambda *_: None), backend


def test_training_from_a_bf16_rollout_reports_its_logprob_gap(tok, tmp_path):
    """fp32 training on a bf16 rollout: master weights float32, the rollout copy follows every update, and
    the step's rollout-vs-trainer gap is bf16 rounding (not 0, as for a float32 rollout)."""
    gaps = {}
    for dtype in ("float32", "bfloat16"):
        tr, backend = toy_trainer(tok, tmp_path / dtype, dtype, steps=2)
        tr.fit()
        rows = [json.loads(line) for line in (tmp_path / dtype / "metrics.jsonl").read_text().splitlines()]
        gaps[dtype] = min(r["rollout_logprob_absdiff_mean"] for r in rows)
        assert {p.dtype for p in tr.model.parameters()} == {torch.float32}
        if dtype == "bfloat16":
            for own, p in zip(backend.model.parameters(), tr.model.parameters()):
                assert torch.equal(own, p.detach().to(torch.bfloat16))  # synced after the last update
    assert gaps["float32"] < 1e-5 and 1e-4 < gaps["bfloat16"] < 0.5, gaps  # measured 4e-8 and 4e-4


def test_a_resumed_run_samples_its_resumed_weights(tok, tmp_path):
    """Resuming loads the checkpoint into the policy in place; the bf16 rollout copy follows it at once (not
    the base weights it was made from)."""
    first, _ = toy_trainer(tok, tmp_path, "bfloat16", steps=2)
    first.fit()
    again, backend = toy_trainer(tok, tmp_path, "bfloat16", steps=4)
    assert again.try_resume() and again.step == 2
    for own, p in zip(backend.model.parameters(), again.model.parameters()):
        assert torch.equal(own, p.detach().to(torch.bfloat16))


def test_rollout_dtype_is_a_schema_key():
    assert load_config("smoke")["rollout"]["dtype"] == "float32"
    assert load_config("smoke", overrides={"rollout": {"dtype": "bfloat16"}})["rollout"]["dtype"] == "bfloat16"
    with pytest.raises(ConfigError, match="rollout.dtype"):
        load_config("smoke", overrides={"rollout": {"dtype": "bf16"}})
