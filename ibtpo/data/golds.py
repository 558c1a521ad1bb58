"""Gold answers that cannot silently grade wrong: one normalisation for every source, a self-check
against the project's grader, and a scan for control characters.

Normalisation (:func:`normalise_answer`, used by the registry and by jsonl / parquet / hf sources)
-------------------------------------------------------------------------------------------------
* Numbers: integer-valued floats lose their ``.0`` (AMC's ``27.0`` -> ``"27"``); other numbers are
  written with ``str``. Booleans, ``None``, NaN and empty strings are errors naming the row.
* Strings are stripped, and one outer pair of math delimiters is removed: ``$...$``, ``$$...$$``,
  ``\\(...\\)`` and ``\\[...\\]`` (``"$\\frac{1}{2}$"`` -> ``"\\frac{1}{2}"``) -- only when the inside
  holds no further ``$``, so ``"$1$ and $2$"`` is kept whole.
* Several ``$...$`` groups separated by commas (``"$221$, $8$"``, and OlympiadBench id 2349's
  ``"$221,$8$"``, where the comma slipped inside) are one answer of several values: the ``$`` signs
  next to the commas go and the values are joined with ``", "`` (``"221, 8"``), as a list of several
  values is (below); math-verify reads it as the set ``{221, 8}``, so ``\boxed{221,8}`` grades correct
  against it, where the string kept whole graded only ``\boxed{221}`` correct. A ``$`` not next to a
  comma (``"$1$ and $2$"``) keeps the gold whole.
* Lists (``final_answer: ["2"]``; parquet/hub sequences arrive as lists): a one-element list is its
  element (normalised as above). A longer list is read as **all of** its elements: they are
  normalised one by one and joined with ``", "`` into one answer, which math-verify (the grader
  behind training rewards and evaluation) reads as the set ``{a, b}`` -- a completion must give
  every element, in any order. Why not "first" or "any of": a multi-element gold usually lists the
  several answers of one problem (all solutions of an equation, the parts of a question); "first"
  would grade a completion that gives only that one right and the complete answer wrong, and
  "any of" (alternative spellings of one value) cannot be expressed in the one-gold-string contract
  the trainer and the evaluation share, and would also grade a partial answer right. Where a set's
  lists are alternative spellings instead, this rule grades the single value wrong: ``make_data``
  logs how many rows of each set had multi-element lists, so that case is visible. An empty list is a
  missing answer.
  A list holding a list (``[["1", "2"]]``) is an error, not flattened.
* ``integer=True`` (AIME, AMC, DAPO-Math-17K in the registry): anything but ``-?\\d+`` is an error.

Answer shape (:func:`shape_problem`)
------------------------------------
Before any gold is graded, golds that do not look like answers are flagged: a gold holding ``####``
or ``\\boxed`` / ``\\fbox``, spanning several lines, or longer than :data:`MAX_GOLD_CHARS` (80)
characters of prose (at least :data:`PROSE_WORDS` words of two or more letters once LaTeX commands are
removed, so a long matrix or polynomial is not prose). Such a gold is a whole solution read through a
wrong mapping (GSM8K's ``answer`` field, MATH's ``solution``): the self-check cannot see it, because
``\\boxed{whole solution}`` grades correct against itself. The message names the first rows and the
``answer_field`` rule that takes the answer out (:mod:`ibtpo.data.answer_rules`); flagged rows are not
graded. On the offline copies no gold of MATH-500, AIME 2024/2025, AMC 2023 or DAPO-Math-17K is
flagged (the longest, 53 characters, is a MATH-500 matrix). The summary counts distinct golds, and
``make_data`` notes a set of 10 rows or more whose golds are all the same (a mapping that reads a
constant).

Self-check (:func:`gold_failures`)
----------------------------------
Each distinct gold is graded as a model would write it, ``\\boxed{gold}``, against itself with
:class:`ibtpo.grading.Grader` (gold first). A gold that fails is one no completion can match as
written (a truncated ``\\frac{1}{``, unbalanced braces). Integer golds take the grader's in-process
fast path; others go through math-verify's worker. Only distinct golds are graded, so every row of a
set is checked, none is sampled. Measured on the 2-core dev box, scan included: DAPO-Math-17K (17,917
rows, 2,251 distinct integer golds) 0.25 s; MATH-500 (301 distinct golds) 1.9 s, most of it the
worker's start. The self-check cannot see a gold that is wrong but well-formed, nor one that parses
as something else (``"\\x0crac{1}{2}"`` grades correct against itself): the scan below covers that.

Control characters (:func:`control_char_findings`)
--------------------------------------------------
A problem or answer holding a control character (Unicode category Cc) is flagged. Where the character
followed by the letters after it spells a LaTeX command (``"\\f" + "rac"`` = ``\\frac``, ``"\\t" +
"imes"``, ``"\\b" + "oxed"``, ``"\\r" + "ight"``, ``"\\v" + "ec"``), the likely cause is named: the
command was written with one backslash in JSON or a Python string, where ``\\f`` is a form feed; write
``\\\\frac``. Tabs, newlines and carriage returns that do not spell a command are ordinary whitespace
and not flagged (MATH-500 has tabs in its Asymptote code). On the offline copies (``../shared/data``)
MATH-500, AIME 2024 and AMC 2023 are clean; AIME 2025 (3 problems: ``\\frac``, ``\\triangle``) and
DAPO-Math-17K (652 problems, mostly ``\\frac``, some ``\\nabla`` / ``\\text`` / ``\\beta`` and PDF
ligature debris) are flagged as published upstream; the paper presets keep them (``gold_check: warn``).

Whether a failing gold or a flagged row stops ``make_data`` or only warns is the preset's
``data.gold_check: fail | warn`` (default ``fail``), overridable per set (``gold_check:`` on the
data set's entry). Sets evaluated by one of lm-eval's own tasks (GPQA-Diamond, IFEval) have no math
gold and are not checked.
"""

from __future__ import annotations

import math
import re
import unicodedata

from .problems import DataError

_INT_RE = re.compile(r"-?\d+", re.ASCII)
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# The control characters a one-backslash escape produces (JSON: \b \f \n \r \t; Python adds \a \v),
# and the LaTeX command letter each one swallowed.
_ESCAPE_LETTER = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
_WHITESPACE = {"\n", "\t", "\r"}  # fine on their own (not flagged unless they spell a command)
# LaTeX commands starting with one of those letters (what "\<letter><rest>" likely meant)
_COMMANDS = set("""
    alpha approx angle arccos arcsin arctan arg ast asymp aleph amalg atop
    backslash bar beta begin bf big bigcap bigcirc bigcup bigg biggl biggr bigl bigr bigoplus bigotimes
    bigvee bigwedge binom bmod boldsymbol bot bowtie boxed breve bullet
    frac flat forall frown fbox footnotesize
    nabla natural ne neg neq nexists ngeq ngtr ni nleq nless nmid not notin nparallel nsubseteq nu nwarrow
    newline
    rangle rbrace rbrack rceil rfloor rho right rightarrow rightharpoonup rightleftharpoons rm rvert
    tan tanh tau text textbf textit textrm textsf texttt textstyle tfrac theta therefore thinspace tilde
    times tiny to top triangle triangleleft triangleright triangleq
    varepsilon varphi varpi varrho varsigma vartheta varnothing vdash vdots vec vee vert vline vspace
""".split())
# after a newline, two-letter commands (\ne, \ni, \nu) would match ordinary lines ("e = 2.7")
_NEWLINE_MIN = 3


def strip_math_delimiters(s: str) -> str:
    """``s`` without one outer ``$$..$$`` / ``$..$`` / ``\\(..\\)`` / ``\\[..\\]`` pair (when the
    inside holds no other ``$``)."""
    for left, right in _DELIMS:
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            inner = s[len(left): len(s) - len(right)]
            if "$" not in inner:
                return inner.strip()
    return s


_GROUP_SEP_RE = re.compile(r"\s*\$?\s*,\s*\$?\s*")  # a comma with an optional $ on either side


def join_math_groups(s: str) -> str:
    """``"$a$, $b$"`` / ``"$a,$b$"`` -> ``"a, b"``: a gold of several ``$...$`` groups separated by
    commas as one answer of several values; any other string unchanged (``"$1$ and $2$"``)."""
    if not (s.startswith("$") and s.endswith("$")) or s.count("$") < 3 or s.startswith("$$"):
        return s
    inner = _GROUP_SEP_RE.sub(",", s[1:-1])
    if "$" in inner:
        return s
    values = [v.strip() for v in inner.split(",")]
    return ", ".join(values) if all(values) else s


def normalise_answer(x, integer: bool, where: str) -> str:
    """A gold answer as one string (rules in the module docstring); errors name ``where``."""
    if isinstance(x, tuple):
        x = list(x)
    if isinstance(x, list):
        if not x:
            raise DataError(f"{where}: missing answer (empty list)")
        if any(isinstance(v, (list, tuple)) for v in x):
            raise DataError(f"{where}: answer {x!r} is a list holding a list; give one value or a flat list "
                            "(nested lists are not flattened)")
        if len(x) == 1:
            return normalise_answer(x[0], integer, where)
        if integer:
            raise DataError(f"{where}: answer {x!r} is a list of {len(x)} values (this source's answers "
                            "are single integers)")
        return ", ".join(normalise_answer(v, False, f"{where} (answer element {i + 1})") for i, v in enumerate(x))
    if isinstance(x, dict):
        raise DataError(f"{where}: answer is an object ({x!r}); name the field holding it (answer_field: a.b)")
    if x is None or (isinstance(x, float) and math.isnan(x)):
        raise DataError(f"{where}: missing answer")
    if isinstance(x, bool):
        raise DataError(f"{where}: answer is a boolean ({x!r})")
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        s = str(int(x))
    else:
        s = join_math_groups(strip_math_delimiters(str(x).strip()))
    if not s:
        raise DataError(f"{where}: empty answer")
    if integer and not _INT_RE.fullmatch(s):
        raise DataError(f"{where}: answer {x!r} is not an integer (this source's answers are integers)")
    return s


def is_multi(x) -> bool:
    """A list answer of more than one element (joined as a set by :func:`normalise_answer`)."""
    return isinstance(x, (list, tuple)) and len(x) > 1


# -------------------------------------------------------------------------------------------
# control characters


def control_char_findings(text: str) -> list[str]:
    """What is wrong with ``text``'s control characters, one finding per character flagged (empty:
    nothing to flag)."""
    out = []
    for i, c in enumerate(text):
        if unicodedata.category(c) != "Cc":
            continue
        letter = _ESCAPE_LETTER.get(c)
        if letter is not None:
            j = i + 1
            while j < len(text) and text[j].isascii() and text[j].isalpha():
                j += 1
            cmd = letter + text[i + 1: j]
            if cmd in _COMMANDS and (c != "\n" or len(cmd) >= _NEWLINE_MIN):
                out.append(f"{_name(c)} before {text[i + 1: j]!r}: likely \\{cmd} written with one backslash in "
                           f"JSON or a Python string (\"\\{letter}\" is {_name(c, long=True)}); write \\\\{cmd}")
                continue
        if c in _WHITESPACE:
            continue
        context = text[max(0, i - 12): i + 12]
        out.append(f"control character {_name(c)} in {context!r}")
    return out


def _name(c: str, long: bool = False) -> str:
    code = f"U+{ord(c):04X}"
    if not long:
        return code
    return {"\a": "a bell", "\b": "a backspace", "\f": "a form feed", "\n": "a newline", "\r": "a carriage return",
            "\t": "a tab", "\v": "a vertical tab"}.get(c, code)


def row_findings(row: dict) -> list[str]:
    """Control-character findings of a row's problem and answer, each prefixed by the field."""
    out = []
    for key in ("problem", "answer"):
        if isinstance(row.get(key), str):
            out += [f"{key}: {f}" for f in control_char_findings(row[key])]
    return out


# -------------------------------------------------------------------------------------------
# answer shape

MAX_GOLD_CHARS = 80   # a longer gold of prose is a solution, not an answer
PROSE_WORDS = 6       # ... when it holds at least this many words (LaTeX commands removed)
SAME_GOLD_MIN_ROWS = 10  # a set of at least this many rows whose golds are all one value is noted
_LATEX_NAME_RE = re.compile(r"\\(?:begin|end)\{[^}]*\}|\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_SHAPE_FIX = {
    "holds '####'": "answer_field: {{field: {f}, after: '####'}}",
    "holds \\boxed": "answer_field: {{field: {f}, boxed: last}}",
}
_SOLUTION_FIX = ("answer_field: {{field: {f}, after: '<marker>'}}, {{field: {f}, boxed: last}} or "
                 "{{field: {f}, regex: '<pattern>'}}")


def prose_words(text: str) -> int:
    """How many words of two or more letters ``text`` holds outside LaTeX command names."""
    return len(_WORD_RE.findall(_LATEX_NAME_RE.sub(" ", text)))


def shape_problem(gold: str) -> str | None:
    """Why ``gold`` does not look like an answer (``None``: it does); rules in the module docstring."""
    if "####" in gold:
        return "holds '####'"
    if "\\boxed" in gold or "\\fbox" in gold:
        return "holds \\boxed"
    if "\n" in gold.strip():
        return "spans several lines"
    if len(gold) > MAX_GOLD_CHARS and prose_words(gold) >= PROSE_WORDS:
        return f"is {len(gold)} characters of prose"
    return None


def shape_message(flagged: list[tuple[dict, str]], n_rows: int, label: str, answer_field: str, fix: str,
                  show: int = 5) -> str:
    """One message for the golds that do not look like answers: the count, the first ``show`` ids with
    why and a preview, the ``answer_field`` rule(s) that would take the answer out, then ``fix`` (how to
    keep them anyway)."""
    first = "; ".join(f"id {r['id']!r} ({why}: {_preview(r['answer'])})" for r, why in flagged[:show])
    more = f"; and {len(flagged) - show} more" if len(flagged) > show else ""
    kinds = dict.fromkeys(why for _, why in flagged)
    fixes = dict.fromkeys(_SHAPE_FIX.get(k, _SOLUTION_FIX).format(f=answer_field) for k in kinds)
    return (f"{label}: {len(flagged)} of {n_rows} golds do not look like answers: {first}{more}. The gold holds a "
            f"solution, not its answer (answer_field: {answer_field}): use " + " or ".join(fixes) + f", {fix}.")


def _preview(text: str, n: int = 40) -> str:
    """``text`` shortened to its first and last characters, quoted (newlines escaped)."""
    return repr(text if len(text) <= 2 * n else text[:n] + " ... " + text[-n:])


def same_gold_note(rows: list[dict]) -> str | None:
    """A note when a set of :data:`SAME_GOLD_MIN_ROWS` rows or more has one gold for every row."""
    golds = {r["answer"] for r in rows}
    if len(rows) >= SAME_GOLD_MIN_ROWS and len(golds) == 1:
        return (f"all {len(rows)} golds are the same ({next(iter(golds))!r}): check the answer_field mapping")
    return None


# -------------------------------------------------------------------------------------------
# the self-check


def gold_failures(rows: list[dict], grader) -> tuple[list[dict], int]:
    """Rows whose gold, written as ``\\boxed{gold}``, is not graded correct against itself by
    ``grader`` (an :class:`ibtpo.grading.Grader`), and how many distinct golds hit its time limit."""
    if not rows:
        return [], 0
    golds = sorted({r["answer"] for r in rows})
    before = grader.timeouts
    ok = dict(zip(golds, grader.grade_many([(g, f"\\boxed{{{g}}}") for g in golds])))
    return [r for r in rows if not ok[r["answer"]]], grader.timeouts - before


def check_rows(rows: list[dict], label: str, grader, key: str, show: int = 5,
               answer_field: str = "answer") -> tuple[list[str], dict]:
    """Every problem of a math set: the answer-shape scan, then the self-check of the golds that look
    like answers, and the control-character scan. Returns the problems found (one message per kind,
    naming ``label`` -- the config key and file -- the count and the first ``show`` ids; empty when all
    is well) and a small summary (counts). ``answer_field``: the field the golds were read from, for
    the fix a shape finding suggests."""
    shaped = [(r, why) for r in rows if (why := shape_problem(r["answer"]))]
    shaped_ids = {id(r) for r, _ in shaped}
    bad, timeouts = gold_failures([r for r in rows if id(r) not in shaped_ids], grader)
    flagged = [(r, f) for r in rows if (f := row_findings(r))]
    fix = f"or set {key}.gold_check: warn (or data.gold_check: warn) to keep them as they are"
    messages = [shape_message(shaped, len(rows), label, answer_field, fix, show)] if shaped else []
    if bad:
        first = "; ".join(f"id {r['id']!r} (gold {r['answer']!r})" for r in bad[:show])
        more = f"; and {len(bad) - show} more" if len(bad) > show else ""
        tmo = f" ({timeouts} distinct gold(s) ran past the grader's time limit)" if timeouts else ""
        messages.append(f"{label}: {len(bad)} of {len(rows)} gold answers are graded wrong against themselves "
                        f"written as \\boxed{{gold}} (ibtpo/grading/){tmo}, so no completion can match them: "
                        f"{first}{more}. Fix those answers, {fix}.")
    if flagged:
        first = "; ".join(f"id {r['id']!r}: {f[0]}" + (f" (+{len(f) - 1} more in this row)" if len(f) > 1 else "")
                          for r, f in flagged[:show])
        more = f"; and {len(flagged) - show} more rows" if len(flagged) > show else ""
        messages.append(f"{label}: {len(flagged)} of {len(rows)} rows hold control characters: {first}{more}. "
                        f"Fix the file, {fix}.")
    summary = {"rows": len(rows), "distinct_golds": len({r["answer"] for r in rows}), "gold_failures": len(bad),
               "timeouts": timeouts, "control_char_rows": len(flagged), "not_answers": len(shaped)}
    return messages, summary
