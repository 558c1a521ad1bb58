"""Train one (method, seed) run from the base policy; resumes from its latest checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..data.problems import load_problems
from ..grader import Grader
from ..provenance import provenance
from ..rollout.backend import SamplingParams
from ..trainer import Method, Trainer, TrainSettings


def make_backend(cfg: dict, model, tokenizer):
    name = cfg["rollout"]["backend"]
    if name == "hf":
        from ..rollout.hf_backend import HFBackend

        return HFBackend(model, tokenizer.pad_token_id, cfg["device"])
    if name == "vllm":
        raise NotImplementedError("rollout.backend 'vllm' is not part of this build yet (paper-scale issue); "
                                  "use rollout.backend: hf")
    raise ValueError(f"rollout.backend: unknown backend {name!r}; allowed: ['hf', 'vllm']")


def rollout_sampling(cfg: dict, tokenizer) -> SamplingParams:
    """The preset's rollout sampling settings, stopping at the tokenizer's EOS."""
    ro = cfg["rollout"]
    return SamplingParams(temperature=ro["temperature"], top_p=ro["top_p"], top_k=ro["top_k"],
                          max_new_tokens=ro["max_new_tokens"], stop_token_ids=(tokenizer.eos_token_id,))


def run(cfg: dict, method: str, seed: int, base: str, train_data: str | Path, run_dir: str | Path, log=print) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mdef = cfg["method_defs"][method]
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(cfg["device"])
    sampling = rollout_sampling(cfg, tokenizer)
    settings = TrainSettings(**{**cfg["train"], "seed": seed})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (run_dir / "provenance.json").write_text(json.dumps(provenance(job="train", method=method, seed=seed, base=str(base)), indent=1))
    with Grader(timeout_s=cfg["evaluation"]["grader_timeout_s"]) as grader:
        trainer = Trainer(model, tokenizer, load_problems(train_data),
                          Method(method, mdef["sampler"], mdef["advantage"], mdef.get("loss", {})),
                          settings, sampling, make_backend(cfg, model, tokenizer), grader, run_dir,
                          cfg["prompt_template"], cfg["device"], log=log)
        trainer.fit()
        (run_dir / "grader.json").write_text(json.dumps({"calls": grader.calls, "timeouts": grader.timeouts}))
