"""Preflight on the CPU with a tiny model: the sizes it plans (computed here by hand), the phases it
runs at full size, and the failure report on out-of-memory or an exceeded budget."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ibtpo.config import load_config
from ibtpo.jobs import preflight

REPO = Path(__file__).resolve().parents[1]
MAX_NEW = 12
BASE_TRAIN = {"steps": 1, "batch_problems": 1, "checkpoint_every": 1}
PROBLEMS = ["Compute 1+2.", "Compute (14+22)*3-17.", "Compute 4*5.", "Compute ((3+4)*(5+6))-7*8.", "Compute 9-3."]


def _cfg(**train):
    t = {"batch_problems": 3, "minibatches": 2, "update_chunks": 2, "ppo_epochs": 1, **train}
    return load_config("smoke", overrides={
        "methods": ["grpo", "ibtpo"],
        "train": t,
        "rollout": {"max_new_tokens": MAX_NEW},
        "method_defs": {"grpo": {"sampler": {"name": "chains", "G": 5},
                                 "loss": {"kl_coef": 0.001, "entropy_coef": 0.0}},
                        "ibtpo": {"sampler": {"name": "ibtree", "B0": 2, "L": 3, "K": 1, "B": 1}}},  # G = 4
    })


@pytest.fixture
def setup(tmp_path, tok, tiny_model):
    base = tmp_path / "base"
    tiny_model.save_pretrained(base)
    tok.save_pretrained(base)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "problem": p, "answer": "1"}) + "\n"
                            for i, p in enumerate(PROBLEMS)))
    return base, data


def _digest(d: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file())).hexdigest()


def test_plan_sizes_follow_the_trainer_chunking():
    cfg = _cfg()
    p = preflight.make_plan(cfg, prompt_tokens=20)
    # grpo G=5 beats ibtpo G=2+2*1*1=4; 3 problems x 5 = 15 sequences; np.array_split(15, 2 minibatches)
    # -> 8, then (8, 2 chunks) -> 4; the no-grad pass splits all 15 in 2 -> 8
    assert (p.method, p.G, p.trajectories, p.update_chunk, p.frozen_chunk) == ("grpo", 5, 15, 4, 8)
    assert (p.seq_len, p.reference_model, p.entropy_term, p.need_old) == (20 + MAX_NEW, True, False, True)
    cfg = _cfg(minibatches=1, update_chunks=4)
    cfg["train"]["num_processes"] = 2  # the multi-process key (train.num_processes)
    p = preflight.make_plan(cfg, prompt_tokens=20)
    # two processes: ceil(3 / 2) = 2 problems each -> 10 sequences; 10 in 4 chunks -> 3
    assert (p.problems, p.trajectories, p.update_chunk, p.frozen_chunk, p.need_old) == (2, 10, 3, 3, False)
    cfg = _cfg()
    cfg["methods"] = ["grpo", "grpo_entropy"]
    cfg["method_defs"]["grpo"]["loss"]["kl_coef"] = 0.0
    p = preflight.make_plan(cfg, 7)
    assert p.entropy_term and p.reference_model  # worst case over methods: grpo_entropy has both
    cfg["methods"] = []  # evaluate-only: no training run to check
    with pytest.raises(preflight.PreflightFailed, match=r"methods: \[\] is evaluate-only"):
        preflight.make_plan(cfg, 7)


def test_largest_chunks_are_the_largest_the_trainer_cuts():
    """Preflight sizes its worst case with the trainer's own splitting (``largest_chunks``); here the
    sizes are checked against the chunks ``split_minibatches`` / ``split_chunks`` actually make."""
    from ibtpo.trainer import TrainSettings, largest_chunks, split_chunks, split_minibatches

    for n, minibatches, chunks in ((15, 2, 2), (3, 1, 8), (0, 2, 4), (16, 1, 4), (10, 3, 4), (7, 8, 3)):
        t = TrainSettings.of({**BASE_TRAIN, "minibatches": minibatches, "update_chunks": chunks})
        update = [len(c) for mb in split_minibatches(range(n), minibatches) for c in split_chunks(mb, chunks)]
        frozen = [len(c) for c in split_chunks(range(n), chunks)]
        assert largest_chunks(n, t) == (max(update, default=0), max(frozen, default=0)), (n, minibatches, chunks)
    assert [largest_chunks(n, TrainSettings.of({**BASE_TRAIN, "minibatches": 1, "update_chunks": k}))[1]
            for n, k in ((15, 2), (3, 8), (0, 4), (16, 4))] == [8, 1, 0, 4]


def test_preflight_runs_every_phase_at_full_size(setup, tok, tiny_model, tmp_path):
    base, data = setup
    cfg = _cfg()
    before = _digest(base)
    out = tmp_path / "pf" / "preflight.json"
    lines = []
    rep = preflight.run(cfg, base, data, out=out, log=lines.append)
    longest = max(len(tok(cfg["prompt_template"].format(problem=p), add_special_tokens=False)["input_ids"])
                  for p in PROBLEMS)
    plan = rep["plan"]
    assert plan["prompt_tokens"] == longest and plan["seq_len"] == longest + MAX_NEW
    assert rep["longest_prompt_row"] == 3
    assert list(rep["phases"]) == ["load", "update_1", "generation", "update_2"]
    gen = rep["phases"]["generation"]
    assert gen["sequences"] == 15 and gen["tokens_generated"] == 15 * MAX_NEW  # no stop: full length
    for name in ("update_1", "update_2"):
        m = rep["phases"][name]["loss_metrics"]
        assert m["grad_norm"] > 0 and all(v == v for v in m.values())  # finite, not NaN
    assert rep["params_changed"] is True
    assert rep["phases"]["load"]["parameters"] == sum(p.numel() for p in tiny_model.parameters())
    assert all(ph["memory"]["kind"] == "cpu" and ph["memory"]["peak_rss_gib"] > 0 for ph in rep["phases"].values())
    assert rep["peak_gib"] == max(ph["memory"]["peak_rss_gib"] for ph in rep["phases"].values())
    assert json.loads(out.read_text())["plan"] == plan
    assert sorted(p.name for p in out.parent.iterdir()) == ["preflight.json"]
    assert _digest(base) == before  # the base checkpoint is only read
    assert any("OK: peak" in line for line in lines)


def test_a_budget_overrun_fails_with_the_figures(setup):
    base, data = setup
    with pytest.raises(preflight.PreflightFailed) as e:
        preflight.run(_cfg(), base, data, max_memory_gb=1e-6, log=lambda *_: None)
    msg = str(e.value)
    assert "load: peak" in msg and "exceeds the budget of 1e-06 GiB" in msg and "peak RSS" in msg
    assert "policy.base" in msg  # what to change when the models do not fit


@pytest.mark.parametrize("target, phase, keys", [
    ("ibtpo.trainer.Trainer.update", "update_1", ["train.update_chunks (now 2)", "train.minibatches (now 2)",
                                                   "4 sequences of", "rollout.max_new_tokens (now 12)"]),
    ("ibtpo.rollout.hf_backend.HFBackend.generate", "generation", ["train.batch_problems (now 3)", "3 x 5 = 15",
                                                                   "rollout.backend: vllm"]),
])
def test_out_of_memory_is_reported_with_what_to_change(setup, monkeypatch, target, phase, keys):
    base, data = setup

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(target, oom)
    with pytest.raises(preflight.PreflightFailed) as e:
        preflight.run(_cfg(), base, data, log=lambda *_: None)
    msg = str(e.value)
    assert msg.startswith(f"preflight FAILED in {phase}: out of memory (OutOfMemoryError: CUDA out of memory")
    assert "memory: peak RSS" in msg and "15 sequences of" in msg
    for k in keys:
        assert k in msg


def test_other_errors_are_not_disguised_as_memory(setup, monkeypatch):
    base, data = setup
    monkeypatch.setattr("ibtpo.trainer.Trainer.update", lambda *a, **k: (_ for _ in ()).throw(ValueError("bug")))
    with pytest.raises(ValueError, match="bug"):
        preflight.run(_cfg(), base, data, log=lambda *_: None)


def test_cli_writes_the_report_and_fails_on_a_budget(setup, tmp_path):
    base, data = setup
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(json.dumps(_cfg()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ibtpo", "--config", str(cfg_file), "preflight", "--base", str(base),
           "--train-data", str(data), "--out", str(tmp_path / "r.json")]
    ok = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "[preflight] generation: peak RSS" in ok.stdout and (tmp_path / "r.json").exists()
    bad = subprocess.run(cmd + ["--max-memory-gb", "0.000001"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and "preflight FAILED in load: peak" in bad.stderr


def test_sharded_presets_are_refused_before_loading_anything(setup):
    base, data = setup
    cfg = _cfg()
    cfg["train"].update(num_processes=8, parallel="fsdp")
    with pytest.raises(preflight.PreflightFailed, match="cannot check this preset: train.parallel is fsdp"):
        preflight.run(cfg, base, data, log=lambda *_: None)
