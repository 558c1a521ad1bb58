"""Answer rules: which part of a completion is its answer, and the in-process integer fast path.

Pure functions over strings; no math-verify, no processes, thread-safe.

What the answer is
------------------
``answer`` (the config's ``evaluation.answer``) says which part of the completion
is its answer:

* ``"boxed"`` (the default): the content of the **last** ``\\boxed{...}`` (see
  :func:`extract_last_boxed`).  A completion with no braced ``\\boxed{...}`` (or whose
  last one is unbalanced, e.g. cut off by the token limit) is graded **wrong**
  without asking math-verify; otherwise ``\\boxed{<content>}`` alone is what
  math-verify parses (and what the fast path sees), so ``7+3=10 ... 10-5=5`` earns
  nothing for gold 5, and ``\\boxed{3} ... \\boxed{5}`` is read as 5.
* ``"any"``: the full completion goes to math-verify, whose default extraction
  takes the last expression it finds (``3*4=12`` is correct for gold 12 without a
  box); the integer fast path then applies under the conditions below.

Fast path
---------
With ``fast_integer_path=True`` (the default) a pair is decided in-process,
without touching the worker, when all of these hold (under ``answer="boxed"`` they
are checked on ``\\boxed{<content of the last box>}``, so there the rule is simply
"the last box holds a plain integer"):

* the gold is a plain integer after stripping (``-?\\d+``, ASCII digits), or an
  integer written as a float with a zero fraction (``27.0``, as AMC stores it);
* the prediction contains exactly one ``\\boxed`` (and no ``\\fbox``) and its
  content (see :func:`extract_last_boxed`) is a plain integer ``-?\\d+`` after
  stripping, of at most 1000 digits;
* the prediction does not mention "final answer" (any case).

It then returns ``int(gold) == int(boxed)`` (compared as digit strings, so no
``int()`` digit limit applies).  The conditions are what keep
this in agreement with math-verify for integer-vs-integer: math-verify merges
several ``\\boxed`` on one line into a set (``\\boxed{3} then \\boxed{5}`` is
``{3, 5}``, which equals neither 3 nor 5), its "final answer is X. I hope"
pattern outranks ``\\boxed`` and its "final answer ... is X" pattern ties with
it (the later one wins); such predictions go to the worker.  Integers are
compared exactly, as math-verify compares SymPy Integers (``036 == 36``,
``-0 == 0``, 20-digit numbers differing in the last digit are unequal).  The
test-suite checks the agreement against math-verify itself (and a 3,800-case
fuzz over answer contexts found no disagreement).  Measured cost: 2-10 us per
item on this path (short to ~700-character completions); 2-5 ms per item through
the worker, of which the IPC is about 0.06 ms.
"""

from __future__ import annotations

import re

__all__ = ["ANSWER_MODES", "BOXED", "answer_text", "boxed_answer", "extract_last_boxed", "integer_fast_path"]

BOXED = "\\boxed"
_GOLD_INT_RE = re.compile(r"-?\d+(?:\.0+)?", re.ASCII)
_PRED_INT_RE = re.compile(r"-?\d+", re.ASCII)
_FINAL_ANSWER_RE = re.compile(r"final answer", re.IGNORECASE)
_FAST_MAX_DIGITS = 1000

# evaluation.answer (pipelines/schemas/config.schema.yaml): what part of a completion is its answer
ANSWER_MODES = ("boxed", "any")
_ANSWER_TEXT = {
    "boxed": "the last `\\boxed{}` of a response (a response without one is wrong)",
    "any": "math-verify's default extraction (the last expression in a response, boxed or not)",
}


def answer_text(mode: str) -> str:
    """One sentence for reports: which part of a response was graded (``evaluation.answer``)."""
    return f"Answers: {_ANSWER_TEXT[mode]} (`evaluation.answer: {mode}`)."


def extract_last_boxed(text: str | None) -> str | None:
    """Return the content of the last ``\\boxed{...}`` in ``text``, or ``None``.

    "Last" is the ``\\boxed`` that starts last (for ``\\boxed{\\boxed{5}}`` that is
    the inner one, content ``"5"``).  The content is found by brace matching, so
    nesting works (``\\boxed{\\frac{a}{b}}`` -> ``"\\frac{a}{b}"``); a backslash
    escapes the next character, so ``\\{``/``\\}`` do not count as braces.  Space
    between ``\\boxed`` and ``{`` is allowed.  The content is returned verbatim
    (not stripped).

    ``None`` when there is no ``\\boxed``, when the last one is unbalanced
    (``\\boxed{12`` -- no content), or when the last one has no brace at all
    (``\\boxed 5``: TeX would box the single token ``5``, but this helper only
    extracts the braced form; :class:`~ibtpo.grading.Grader` still grades ``\\boxed 5``
    through math-verify, which understands it).
    """
    if not text:
        return None
    start = text.rfind(BOXED)
    if start < 0:
        return None
    i = start + len(BOXED)
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    if i >= n or text[i] != "{":
        return None
    i += 1
    content_start = i
    depth = 1
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[content_start:i]
        i += 1
    return None


def boxed_answer(pred: str) -> str | None:
    """The answer of ``pred`` under ``answer="boxed"``: ``\\boxed{<content of its last box>}``,
    or ``None`` when it has no braced, balanced ``\\boxed{...}`` (graded wrong)."""
    content = extract_last_boxed(pred)
    if content is None:
        return None
    return BOXED + "{" + content + "}"


def _int_key(s: str) -> tuple[bool, str]:
    """Exact integer identity of a ``-?\\d+`` string without int() (no digit limit)."""
    neg = s.startswith("-")
    digits = s.lstrip("-").lstrip("0") or "0"
    return (neg and digits != "0", digits)


def integer_fast_path(gold: str, pred: str) -> bool | None:
    """Grade an integer gold against a single boxed integer, or return ``None``.

    Returns ``True``/``False`` when the fast path applies (see the module
    docstring for the exact conditions and why they agree with math-verify) and
    ``None`` when the pair must go to math-verify.  Pure, thread-safe, a few
    microseconds for a typical completion.
    """
    if not isinstance(gold, str) or not isinstance(pred, str):
        return None
    g = gold.strip()
    if not _GOLD_INT_RE.fullmatch(g):
        return None
    if pred.count(BOXED) != 1 or "\\fbox" in pred:
        return None
    if _FINAL_ANSWER_RE.search(pred):
        return None
    content = extract_last_boxed(pred)
    if content is None:
        return None
    content = content.strip()
    if len(content) > _FAST_MAX_DIGITS or not _PRED_INT_RE.fullmatch(content):
        return None
    g_int = g.split(".", 1)[0]
    if len(g_int) > _FAST_MAX_DIGITS:
        return None
    return _int_key(g_int) == _int_key(content)
