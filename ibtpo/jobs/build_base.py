"""Build the base policy: char tokenizer + tiny Llama, supervised warm-up, saved in HF format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..data.problems import load_problems
from ..model.sft import sft
from ..model.tiny import build_tiny_llama
from ..model.tokenizer import build_char_tokenizer
from ..provenance import provenance


def run(cfg: dict, sft_data: str | Path, out_dir: str | Path, index: int = 0) -> Path:
    """Base model ``index`` (of ``policy.base_models``): initialisation and SFT batch order seeded with
    ``policy.sft.seed + index``, so the k base models differ only by their SFT seed."""
    out_dir = Path(out_dir)
    pol = cfg["policy"]
    sft_cfg = {k: v for k, v in pol.get("sft", {}).items() if k != "threads"}
    sft_cfg["seed"] = sft_cfg.get("seed", 0) + index
    tok = build_char_tokenizer()
    model = build_tiny_llama(tok, **pol.get("arch", {}), seed=sft_cfg["seed"])
    history = sft(model, tok, load_problems(sft_data), cfg["prompt_template"], **sft_cfg)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "sft_log.json").write_text(json.dumps(history, indent=1))
    (tmp / "provenance.json").write_text(json.dumps(provenance(job="build_base", sft=sft_cfg,
                                                               arch=pol.get("arch", {})), indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.replace(out_dir)
    return out_dir



def add_arguments(p) -> None:
    p.add_argument("--sft-data", required=True, help="the supervised warm-up problems (make-data's sft.jsonl)")
    p.add_argument("--out", required=True, help="output directory (HF format; replaced atomically)")
    p.add_argument("--index", type=int, default=0,
                   help="base model i of policy.base_models: SFT seed policy.sft.seed + i (default %(default)s)")


def main(args) -> int:
    from . import job_config

    print(f"[build-base] wrote {run(job_config(args), args.sft_data, args.out, args.index)}")
    return 0
