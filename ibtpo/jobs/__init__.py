"""The DAG's jobs, one file each; ``python -m ibtpo <job>`` runs one (``ibtpo/__main__.py``).

Every job module has the same interface: ``add_arguments(parser)`` (its options, each with help
text) and ``main(args) -> int`` (exit status); its one-line help sits in the dispatch table. The
common options ``--config`` and ``--threads`` belong to the top-level parser; a job
that reads the preset calls :func:`job_config`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def job_config(args: argparse.Namespace, quiet_transformers: bool = True) -> dict:
    """The validated config named by ``--config``; sets the torch threads (``--threads``, else the
    preset's ``threads_per_job``) and, for jobs that load models, silences transformers' per-file
    progress bars (our own per-step lines remain)."""
    from ..config import load_config

    cfg = load_config(args.config)
    n = args.threads or cfg["threads_per_job"]
    if n:
        import torch

        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
    if quiet_transformers:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return cfg


def read_json(path: str | Path):
    """A manifest or marker file the DAG wrote (the error names the file)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: cannot read JSON: {e}") from None


def checkpoint_of(marker: str | Path) -> str:
    """Train jobs declare small marker files; each names its checkpoint directory."""
    return read_json(marker)["checkpoint"]


def add_checkpoint(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--checkpoint DIR`` or ``--marker FILE`` (a train job's checkpoint marker)."""
    g = parser.add_mutually_exclusive_group(required=required)
    g.add_argument("--checkpoint", help="checkpoint directory (HF format)")
    g.add_argument("--marker", help="a train job's checkpoint marker file (JSON naming the checkpoint)")


def checkpoint_arg(args: argparse.Namespace) -> str:
    return args.checkpoint or checkpoint_of(args.marker)
