"""The one answer grader, shared by training rewards and evaluation.

Argument order
--------------
Everywhere in this package the **gold answer comes first and the prediction
second**: ``grader.grade(gold, pred)``, ``grader.grade_many([(gold, pred), ...])``.
``gold`` is a bare reference answer such as ``"36"``, ``"27.0"`` or
``"\\frac{1}{2}"``; ``pred`` is the model's *full completion text*.  math-verify is
asked ``verify(parse(gold_wrapped), parse(pred))`` -- gold first, as it documents
(``verify`` is not symmetric).  A pair that math-verify does not settle within the
deadline is graded **wrong** and counted.

Modules
-------
* :mod:`~ibtpo.grading.answers` -- the answer rules: which part of a completion is its
  answer (``evaluation.answer``), ``extract_last_boxed``, the integer fast path (pure functions).
* :mod:`~ibtpo.grading.worker` -- the child interpreter that runs math-verify (why: its
  timeouts use SIGALRM, which only works in the main thread) and the pipe protocol it speaks.
* :mod:`~ibtpo.grading.supervisor` -- starting workers, the hard per-item deadline, restarts, kills.
* :mod:`~ibtpo.grading.policy` -- :class:`Grader`: which pairs are decided in process and which go
  to the worker, and its tally :class:`GradeStats`.
* :mod:`~ibtpo.grading.shared` -- the process-wide graders (:func:`shared_grader`) for callers that
  own none, such as evaluation's task hooks.
"""

from .answers import ANSWER_MODES, answer_text, extract_last_boxed, integer_fast_path
from .policy import Grader, GradeStats
from .shared import close_shared, prewarm, shared_grader

__all__ = [
    "ANSWER_MODES",
    "GradeStats",
    "Grader",
    "answer_text",
    "close_shared",
    "extract_last_boxed",
    "integer_fast_path",
    "prewarm",
    "shared_grader",
]
