"""One grader per process for evaluation, shared by every benchmark task of a run.

The lm-eval task code (``pipelines/tasks/utils.py``, copied next to each resolved task YAML) grades
through :func:`get_grader`; :func:`ibtpo.eval.run.evaluate_checkpoint` closes it with
:func:`close_all` when the run is over. The grader is the project's one grader
(``ibtpo.grader.Grader``: math-verify, ``grade(gold, pred)``, bounded time per sample, a timeout
counts as wrong and is counted), and the process-wide instances are the ones :mod:`ibtpo.grader`
keeps (:func:`ibtpo.grader.shared_grader`): evaluation keeps none of its own.
"""

from __future__ import annotations

import threading


def get_grader(timeout_s: float = 2.0, answer: str = "boxed"):
    """The process-wide grader for this timeout and answer mode (the eval spec's ``grader_timeout_s`` and
    ``answer``; :func:`ibtpo.grader.shared_grader`, created on first use)."""
    from ibtpo.grader import shared_grader

    return shared_grader(timeout_s, answer)


def close_all() -> None:
    """Close the process-wide graders (:func:`ibtpo.grader.close_shared`) when the run is over."""
    from ibtpo.grader import close_shared

    close_shared()


def prewarm(timeout_s: float = 2.0, answer: str = "boxed") -> threading.Thread:
    """Start the grader's math-verify worker in the background (about 1.5 s of start-up that
    then overlaps model loading and generation instead of delaying the first graded document)."""

    def _warm():
        try:
            get_grader(timeout_s, answer).grade("0", "\\boxed{x}")  # not an integer \boxed: goes to the worker
        except Exception:  # noqa: BLE001 - grading later reports real problems
            pass

    t = threading.Thread(target=_warm, name="ibtpo-grader-prewarm", daemon=True)
    t.start()
    return t
