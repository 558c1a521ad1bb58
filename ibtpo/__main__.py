"""Command line: ``python -m ibtpo [--config PRESET] [--threads N] <job> ...``.

One job per module of :mod:`ibtpo.jobs`, each with ``add_arguments(parser)`` and ``main(args)``;
this file is only the dispatch table. The Snakefile's rules call these commands (each job's log
shows the command), and they can be run by hand. ``--config`` takes a preset name (``tiny``), a
preset file, or the resolved config a DAG run writes (``results/<preset>/config.yaml``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# job name -> (module under ibtpo.jobs, one line of help)
JOBS = {
    "make-data": ("make_data", "generate / read the preset's problem sets as JSONL (benchmarks, train, sft)"),
    "build-base": ("build_base", "build a base policy: char tokenizer + tiny Llama + supervised warm-up"),
    "train": ("train", "train one method/seed (resumes from its last checkpoint)"),
    "evaluate": ("evaluate", "evaluate one checkpoint on the preset's benchmarks (avg@k, pass@k)"),
    "probe": ("probe", "IB-Score probe of one checkpoint on the preset's fixed probe set"),
    "probe-csv": ("probe_csv", "one run's probe summaries (base = step 0, then every checkpoint) as a CSV"),
    "preflight": ("preflight", "one full-size update step and generation: fail early if it does not fit"),
    "table1": ("table1", "Table 1 (or 2: --table table2) from the final checkpoints' evaluation files"),
    "table3": ("table3", "Table 3: branching statistics of the samplers on the base and a trained policy"),
    "figures": ("figures", "training-dynamics figures and dynamics.csv from every checkpoint's files"),
    "claims": ("claims", "the claims report: each claim with the reproduced evidence, interval, verdict"),
    "power": ("power", "power planner: from a finished run, the MDE and wall time of other designs (seeds, P, k)"),
    "publish": ("publish", "copy a preset's tables or claims report to the top of its results folder"),
    "score-tree": ("score_tree", "IB-Score and IB-TPO advantages of a tree JSON (ibtpo/tree_scores.py)"),
}
GLOBAL_OPTIONS = ("--config", "--threads")


def parser(job: str | None = None) -> argparse.ArgumentParser:
    """The command line; only ``job``'s module is imported (all of them when ``job`` is None), so a
    job does not pay for the others' imports."""
    ap = argparse.ArgumentParser(prog="python -m ibtpo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny", help="preset name or config YAML/JSON (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for this job (default: the preset's threads_per_job)")
    sub = ap.add_subparsers(dest="job", required=True, metavar="JOB")
    for name, (module, help_text) in JOBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if job in (None, name):
            mod = importlib.import_module(f"ibtpo.jobs.{module}")
            mod.add_arguments(p)
            p.set_defaults(_main=mod.main)
    return ap


def job_of(argv: list[str]) -> str | None:
    """The job named on the command line (after the global options), if any."""
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in GLOBAL_OPTIONS:
            i += 2
        elif tok.split("=")[0] in GLOBAL_OPTIONS:
            i += 1
        else:
            return tok if tok in JOBS else None
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one job. A bad config or bad data (``ConfigError``, ``DataError``: messages that name the file,
    key or row) ends it with that message on stderr and exit status 1, without a traceback; any other
    exception is a bug and keeps its traceback."""
    from .data.problems import DataError
    from .schema import ConfigError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser(job_of(argv)).parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except (ConfigError, DataError) as e:
        print(f"python -m ibtpo {args.job}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
