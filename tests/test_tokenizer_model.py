import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


TEXT = "Compute (4+2)*3.\n4+2=6\n\n6*3=18\n\n  The answer is \\boxed{18}"


def test_char_tokenizer_round_trip_keeps_spaces_and_newlines(tok, tmp_path):
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(TEXT)  # one token per character
    assert tok.decode(ids) == TEXT
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert tok2(TEXT, add_special_tokens=False)["input_ids"] == ids
    assert tok2.decode(ids) == TEXT
    assert (tok2.eos_token_id, tok2.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)


def test_tiny_llama_reloads_offline(tok, tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m2 = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True)
    assert m2.config.model_type == "llama"
    x = torch.tensor([tok(TEXT)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(tiny_model(x).logits, m2(x).logits, atol=1e-6)


def test_load_policy_gives_fp32_on_the_device_in_eval_mode(tok, tiny_model, tmp_path):
    """Every job's policy load: float32 whatever the checkpoint's dtype, the saved weights, eval mode,
    transformers' default attention implementation (what a plain ``from_pretrained`` picks)."""
    import copy

    from ibtpo.model.load import load_policy

    copy.deepcopy(tiny_model).to(torch.bfloat16).save_pretrained(tmp_path)
    m = load_policy(tmp_path, "cpu")
    assert {p.dtype for p in m.parameters()} == {torch.float32}
    assert {p.device.type for p in m.parameters()} == {"cpu"}
    assert not any(mod.training for mod in m.modules())
    saved = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert m.config._attn_implementation == saved.config._attn_implementation
    for (n, p), (_, q) in zip(m.named_parameters(), saved.named_parameters()):
        assert torch.equal(p, q.float()), n


def test_every_job_loads_the_policy_through_load_policy():
    """One policy load: no job calls ``AutoModelForCausalLM`` itself."""
    from pathlib import Path

    import ibtpo.jobs

    jobs = Path(ibtpo.jobs.__file__).parent
    assert [p.name for p in sorted(jobs.glob("*.py")) if "AutoModelForCausalLM" in p.read_text()] == []
    assert all("load_policy(" in (jobs / f"{job}.py").read_text() for job in ("train", "probe", "table3", "preflight"))


def test_sft_lowers_loss(tok):
    from ibtpo.data.arithmetic import ArithmeticSpec, generate
    from ibtpo.model.sft import sft
    from ibtpo.model.tiny import build_tiny_llama

    model = build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, max_positions=128)
    hist = sft(model, tok, generate(ArithmeticSpec(n_ops=(2,)), 200, 0), "{problem}\n", steps=60, batch_size=16,
               lr=3e-3, warmup=5, log=lambda *_: None, log_every=10)
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"]


def test_sft_lr_schedule_by_hand():
    import math

    from ibtpo.model.sft import lr_factor

    # warm-up 10 of 110 steps: (s+1)/10, then constant 1 or a cosine from 1 (step 10) to min (step 109)
    assert lr_factor(0, 110, 10) == 0.1 and lr_factor(9, 110, 10) == 1.0 and lr_factor(60, 110, 10) == 1.0
    assert lr_factor(10, 110, 10, "cosine", 0.1) == 1.0
    assert lr_factor(109, 110, 10, "cosine", 0.1) == pytest.approx(0.1)
    t = (59.5 - 10) / 99  # halfway through the decay
    assert lr_factor(59.5, 110, 10, "cosine", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * t)))
