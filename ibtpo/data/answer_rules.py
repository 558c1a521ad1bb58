"""Answer extraction in the field mapping: take the gold answer out of a longer field.

A data set's ``answer_field`` (``pipelines/schemas/config.schema.yaml``, ``$defs/dataset``) is either a
field name (a dotted path; the field holds the answer, as before) or a rule that takes the answer out
of a field holding a whole solution:

* ``{field: answer, after: "####"}`` -- the text after the **last** ``####``, stripped (GSM8K:
  ``"...so she sold 48+24 = 72 clips.\\n#### 72"`` -> ``"72"``);
* ``{field: solution, boxed: last}`` -- the content of the **last** ``\\boxed{...}``, braces matched
  (MATH: ``"... = \\boxed{\\frac{1}{2}}."`` -> ``"\\frac{1}{2}"``); the same extraction the grader uses
  for a completion (:func:`ibtpo.grading.answers.extract_last_boxed`);
* ``{field: x, regex: "The answer is (\\S+)"}`` -- the first capture group of the **last** match
  (the whole match when the pattern has no group).

Exactly one of ``after`` / ``boxed`` / ``regex`` is given. Thousands separators: an extracted answer
that is a number written with them (``1,234``, ``-12,000.5``) loses its commas. math-verify already reads
``1,234`` and ``1234`` as equal either way (measured), so this changes no grade; it makes the gold a
plain integer, which the grader decides in-process (its integer fast path) and reports print plainly.
A field given as a plain name is not touched (existing presets read their golds as before).

The extracted answer then goes through the one normalisation of every gold
(:func:`ibtpo.data.golds.normalise_answer`). A row where the rule finds nothing (no ``####``, no
balanced ``\\boxed{}``, no match, an empty result) is an error naming the file, the row, its id and
the rule (:class:`ExtractionError`, turned into a one-line :class:`~ibtpo.data.problems.DataError` by
:func:`ibtpo.data.sources.map_rows`): a set is never read with silently empty golds.
"""

from __future__ import annotations

import re

from ..grading.answers import extract_last_boxed

RULES = ("after", "boxed", "regex")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", re.ASCII)
_PREVIEW_CHARS = 60


class ExtractionError(ValueError):
    """A row whose answer field does not yield an answer under its rule."""


def rule_problem(spec: dict) -> str | None:
    """What is wrong with an extraction rule the schema cannot see (``None``: nothing): exactly one of
    ``after`` / ``boxed`` / ``regex``, and a regex that compiles."""
    given = [k for k in RULES if k in spec]
    if len(given) != 1:
        return (f"give exactly one of {', '.join(RULES)} (has {', '.join(given) or 'none'}), e.g. "
                "{field: answer, after: '####'} or {field: solution, boxed: last}")
    if "regex" in spec:
        try:
            re.compile(spec["regex"])
        except re.error as e:
            return f"regex {spec['regex']!r} does not compile ({e})"
    return None


def describe(spec: dict) -> str:
    """The rule as a preset writes it, for messages: ``{field: answer, after: '####'}``."""
    rule = next(k for k in RULES if k in spec)
    return f"{{field: {spec['field']}, {rule}: {spec[rule]!r}}}"


def after_marker(text: str, marker: str) -> str | None:
    """The text after the last ``marker`` in ``text``, stripped; ``None`` without one."""
    i = text.rfind(marker)
    return None if i < 0 else text[i + len(marker):].strip()


def last_regex(text: str, pattern: str) -> str | None:
    """The first capture group of the last match of ``pattern`` (the whole match without groups);
    ``None`` when nothing matches or that group took no part in the match."""
    rx = re.compile(pattern)
    last = None
    for last in rx.finditer(text):
        pass
    if last is None:
        return None
    return last.group(1) if rx.groups else last.group(0)


def strip_thousands(s: str) -> str:
    """``s`` without thousands separators when it is one number written with them (``1,234`` ->
    ``1234``); anything else unchanged (``1,2`` and ``(1,234)`` are kept)."""
    return s.replace(",", "") if _THOUSANDS_RE.fullmatch(s) else s


def _missing(spec: dict) -> str:
    """What a rule did not find, for the error message."""
    if "after" in spec:
        return f"no {spec['after']!r}"
    if "boxed" in spec:
        return "no balanced \\boxed{...}"
    return "no match of the regex"


def extract(text, spec: dict) -> str:
    """The answer ``spec`` takes out of ``text`` (the value of ``spec['field']``); raises
    :class:`ExtractionError` naming the rule when the value is not a string or nothing is found."""
    if not isinstance(text, str):
        raise ExtractionError(f"answer_field {describe(spec)}: field {spec['field']!r} is a "
                              f"{type(text).__name__}, not a string")
    if "after" in spec:
        out = after_marker(text, spec["after"])
    elif "boxed" in spec:
        out = extract_last_boxed(text)
    else:
        out = last_regex(text, spec["regex"])
    if out is None or not out.strip():
        what = _missing(spec) if out is None else "an empty answer"
        preview = text if len(text) <= _PREVIEW_CHARS else "..." + text[-_PREVIEW_CHARS:]
        raise ExtractionError(f"answer_field {describe(spec)} found {what} in field {spec['field']!r} "
                              f"({preview!r})")
    return strip_thousands(out.strip())
