"""Splitting a generated response into reasoning steps.

A step ends right after a blank line, ``"\\n\\n"`` (the paper's separator); the separator belongs to
the step it closes. Splitting happens on token boundaries: a step ends after the first token at
which the decoded text so far ends with ``"\\n\\n"`` (or contains one that started within this
token). Rules, all deterministic:

- no separator: the whole response is one step;
- a trailing separator does not create an empty final step;
- a separator inside the final answer line still splits (the rule does not look at content);
- runs of more than two newlines stay in the step they close.
"""

from __future__ import annotations

SEPARATOR = "\n\n"


def split_points(token_texts: list[str]) -> list[int]:
    """Exclusive end indices of each step over a response's tokens (last index == len)."""
    ends, text, step_start_char = [], "", 0
    for i, piece in enumerate(token_texts):
        text += piece
        nxt = token_texts[i + 1] if i + 1 < len(token_texts) else ""
        # a separator completed in this token (searching only this step's text), not continued by more newlines
        if SEPARATOR in text[step_start_char:] and not nxt.startswith("\n") and i + 1 < len(token_texts):
            ends.append(i + 1)
            step_start_char = len(text)
    if token_texts:
        ends.append(len(token_texts))
    return ends


def split_steps(token_ids: list[int], token_texts: list[str]) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` token spans of the steps of one response."""
    if len(token_ids) != len(token_texts):
        raise ValueError("one text piece per token is required")
    spans, start = [], 0
    for end in split_points(token_texts):
        spans.append((start, end))
        start = end
    return spans
