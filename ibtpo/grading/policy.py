"""The :class:`Grader`: which (gold, pred) pairs the answer rules decide in process and which go to
math-verify in the supervised worker, and the tally of what it did (:class:`GradeStats`)."""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from dataclasses import asdict, dataclass

from .answers import ANSWER_MODES, boxed_answer, integer_fast_path
from .supervisor import Supervisor

__all__ = ["GradeStats", "Grader"]


@dataclass
class GradeStats:
    """What one Grader has done so far (:meth:`Grader.stats` reports these keys, in this order).

    Thread-safe increments through :meth:`add`; a forked child starts from zero.
    """

    calls: int = 0  # (gold, pred) items graded (fast path included)
    timeouts: int = 0  # items that ran past timeout_s (each graded False)
    fast_path_hits: int = 0  # items decided by the integer fast path
    no_box: int = 0  # completions graded wrong for having no \boxed{...} (answer="boxed" only)
    worker_errors: int = 0  # items during which the worker died on its own (graded False)
    worker_starts: int = 0  # worker processes launched (1 + restarts)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        """Add ``counts`` (field name -> increment) under one lock."""
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


def _stat(name: str, doc: str) -> property:
    return property(lambda self: getattr(self._stats, name), doc=doc)


class Grader:
    """Math answer grader: math-verify in a child process, with a hard per-item deadline.

    ``grade(gold, pred)`` -- gold answer first, full completion second -- returns
    ``True`` iff math-verify finds the completion's answer equal to the gold
    (``verify(parse(gold_wrapped), parse(pred))``), decided in-process by the
    integer fast path when it applies.  ``answer`` says what the completion's
    answer is: ``"boxed"`` (default) its last ``\\boxed{...}`` (none: wrong),
    ``"any"`` whatever math-verify extracts from the full text.  An item that runs
    past ``timeout_s`` seconds is graded ``False`` and counted in :attr:`timeouts`.
    See :mod:`ibtpo.grading.answers` for the answer modes and the fast path,
    :mod:`ibtpo.grading.worker` for the child process and
    :mod:`ibtpo.grading.supervisor` for the process model and the timeout policy.
    :meth:`from_spec` builds one from a config's ``evaluation`` section.

    Thread-safe; use as a context manager or call :meth:`close` to stop the worker.
    """

    def __init__(self, timeout_s: float = 2.0, fast_integer_path: bool = True,
                 startup_timeout_s: float = 120.0, answer: str = "boxed") -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if answer not in ANSWER_MODES:
            raise ValueError(f"answer must be one of {ANSWER_MODES}, got {answer!r}")
        self.timeout_s = float(timeout_s)
        self.answer = answer
        self.fast_integer_path = bool(fast_integer_path)
        self.startup_timeout_s = float(startup_timeout_s)
        self._init_state()
        _LIVE.add(self)

    @classmethod
    def from_spec(cls, evaluation: dict, **kwargs) -> "Grader":
        """The grader a validated config's ``evaluation`` section (or a resolved eval spec) asks for:
        its ``grader_timeout_s`` and ``answer``; ``kwargs`` go to the constructor."""
        return cls(timeout_s=evaluation["grader_timeout_s"], answer=evaluation["answer"], **kwargs)

    def _init_state(self, closed: bool = False) -> None:
        self._stats = GradeStats()
        self._supervisor = Supervisor(self._stats)
        self._supervisor.closed = closed

    def _after_fork_in_child(self) -> None:
        self._supervisor.forget()
        self._init_state(closed=self._supervisor.closed)

    # -- counters -------------------------------------------------------------------
    calls = _stat("calls", "Number of (gold, pred) items graded so far (fast path included).")
    timeouts = _stat("timeouts", "Number of items that ran past ``timeout_s`` (each was graded ``False``).")
    fast_path_hits = _stat("fast_path_hits", "Number of items decided by the integer fast path.")
    no_box = _stat("no_box", "Number of completions graded wrong for having no ``\\boxed{...}`` "
                             "(``answer=\"boxed\"`` only).")
    worker_errors = _stat("worker_errors", "Number of items during which the worker died on its own "
                                           "(graded ``False``).")
    worker_starts = _stat("worker_starts", "Number of worker processes launched (1 + restarts).")

    @property
    def last_startup_s(self) -> float | None:
        """Seconds the latest ready worker took to start (``None`` before the first)."""
        return self._supervisor.last_startup_s

    def stats(self) -> dict:
        """The counters as a dict: ``calls``, ``timeouts``, ``fast_path_hits``, ``no_box``, ``worker_errors``,
        ``worker_starts``."""
        return asdict(self._stats)

    # -- grading --------------------------------------------------------------------
    def grade(self, gold: str, pred: str) -> bool:
        """Grade one completion: ``gold`` (bare answer) first, ``pred`` (full text) second."""
        return self.grade_many([(gold, pred)])[0]

    def grade_many(self, pairs) -> list[bool]:
        """Grade ``[(gold, pred), ...]`` (gold first) and return one bool per pair, in order.

        Under ``answer="boxed"`` a completion without a ``\\boxed{...}`` is wrong at once and
        the others are reduced to ``\\boxed{<content of the last one>}``. Fast-path items are
        decided in-process; the rest go to the worker in one message and stream back, each
        under the ``timeout_s`` deadline.
        """
        if self._supervisor.closed:
            raise RuntimeError("Grader is closed")
        pairs = list(pairs)
        results, slow, counts = self._decide_in_process(pairs)
        self._stats.add(calls=len(pairs), **counts)
        if slow:
            for i, ok in self._supervisor.grade(slow, self.timeout_s, self.startup_timeout_s):
                results[i] = ok
        return results

    def _decide_in_process(self, pairs: list) -> tuple[list[bool], list[tuple[int, str, str]], dict]:
        """The grades the answer rules settle without math-verify (missing input, no box, fast path),
        the ``(idx, gold, pred)`` left for the worker, and the counts of each rule's decisions."""
        results: list[bool] = [False] * len(pairs)
        slow: list[tuple[int, str, str]] = []
        fast = no_box = 0
        boxed = self.answer == "boxed"
        for i, pair in enumerate(pairs):
            gold, pred = pair
            if gold is None or pred is None:
                continue  # nothing to compare: wrong
            if not isinstance(gold, str):
                gold = str(gold)  # e.g. an int or float read from a dataset
            if not isinstance(pred, str):
                pred = str(pred)
            if boxed:
                pred = boxed_answer(pred)
                if pred is None:
                    no_box += 1
                    continue  # no answer: wrong, math-verify is not asked
            if self.fast_integer_path:
                r = integer_fast_path(gold, pred)
                if r is not None:
                    results[i] = r
                    fast += 1
                    continue
            slow.append((i, gold, pred))
        return results, slow, {"fast_path_hits": fast, "no_box": no_box}

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker.  Further grading raises."""
        self._supervisor.close()

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._supervisor.kill()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"Grader(timeout_s={self.timeout_s}, answer={self.answer!r}, "
                f"fast_integer_path={self.fast_integer_path}, "
                f"calls={self.calls}, timeouts={self.timeouts})")


_LIVE: "weakref.WeakSet[Grader]" = weakref.WeakSet()


def _reset_after_fork() -> None:
    for g in list(_LIVE):
        g._after_fork_in_child()


def _close_all() -> None:
    # At interpreter exit a (daemon) thread may still be inside grade_many: do not
    # wait for it, just kill that worker.
    for g in list(_LIVE):
        try:
            g._supervisor.close_at_exit()
        except Exception:
            pass


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_close_all)
