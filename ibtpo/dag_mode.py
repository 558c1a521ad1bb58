"""Whether this snakemake invocation executes jobs, read from its own command line.

The Snakefile writes a few files while it is parsed (the resolved config, the job manifests); a plan — a
dry run (``-n``), ``--dag``, ``--summary``, ``--list-*``, ``--lint``, ``--report`` and the like — must
write nothing, and the Snakefile is parsed before snakemake knows which executor it will use
(``workflow.dryrun`` is still False then), so it asks snakemake's own argument parser.
"""

from __future__ import annotations

import contextlib
import io

# flags of `snakemake` after which no job runs (names as snakemake's argument parser stores them)
# (``touch`` too: it marks outputs up to date without running a job, so nothing may be written or removed; ``report``
# unless ``--report-after-run``, which runs the jobs first)
PLAN_FLAGS = ("dryrun", "dag", "d3dag", "rulegraph", "filegraph", "summary", "detailed_summary", "list_rules",
              "list_target_rules", "list_changes", "list_input_changes", "list_params_changes", "list_untracked",
              "list_conda_envs", "lint", "report", "print_compilation", "export_cwl", "containerize", "unlock",
              "cleanup_metadata", "delete_all_output", "delete_temp_output", "archive", "generate_unit_tests", "touch")


def plans_only(argv: list[str]) -> bool:
    """True when ``argv`` (``sys.argv`` of a ``snakemake`` process) runs no job. A command line snakemake's
    parser cannot read (the Snakefile loaded through the Python API) counts as one that runs jobs."""
    try:
        from snakemake.cli import get_argument_parser
        with contextlib.redirect_stderr(io.StringIO()):  # an unreadable command line prints no usage
            args, _ = get_argument_parser().parse_known_args(list(argv[1:]))
    except (ImportError, SystemExit):
        return False
    if getattr(args, "executor", None) == "dryrun":
        return True
    flags = [f for f in PLAN_FLAGS if not (f == "report" and getattr(args, "report_after_run", False))]
    return any(getattr(args, f, None) not in (None, False, [], "") for f in flags)
