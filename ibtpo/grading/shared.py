"""The process-wide graders, one per (timeout, answer mode), for callers that own none.

Evaluation's lm-eval task hooks (``pipelines/tasks/utils.py``, copied next to each resolved task YAML)
grade through :func:`shared_grader`, every benchmark task of a run with the same one;
:func:`ibtpo.eval.run.evaluate_checkpoint` starts its worker early with :func:`prewarm` and closes it
with :func:`close_shared` when the run is over.
"""

from __future__ import annotations

import os
import threading

from .policy import Grader

__all__ = ["close_shared", "prewarm", "shared_grader"]

_SHARED: dict[tuple[float, str], Grader] = {}  # the process-wide graders, one per (timeout, answer mode)
_SHARED_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def shared_grader(timeout_s: float = 2.0, answer: str = "boxed") -> Grader:
    """The process-wide Grader for ``timeout_s`` and ``answer`` (otherwise default settings), created on
    first use (the eval spec's ``grader_timeout_s`` and ``answer``)."""
    key = (float(timeout_s), str(answer))
    g = _SHARED.get(key)
    if g is None:
        with _SHARED_LOCK:
            g = _SHARED.get(key)
            if g is None:
                g = _SHARED[key] = Grader(timeout_s=key[0], answer=key[1])
    return g


def close_shared() -> None:
    """Close the process-wide graders (best effort); the next :func:`shared_grader` starts afresh."""
    with _SHARED_LOCK:
        graders = list(_SHARED.values())
        _SHARED.clear()
    for g in graders:
        try:
            g.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def prewarm(timeout_s: float = 2.0, answer: str = "boxed") -> threading.Thread:
    """Start the shared grader's math-verify worker in the background (about 1.5 s of start-up that
    then overlaps model loading and generation instead of delaying the first graded document)."""

    def _warm():
        try:
            shared_grader(timeout_s, answer).grade("0", "\\boxed{x}")  # not an integer \boxed: goes to the worker
        except Exception:  # noqa: BLE001 - grading later reports real problems
            pass

    t = threading.Thread(target=_warm, name="ibtpo-grader-prewarm", daemon=True)
    t.start()
    return t
