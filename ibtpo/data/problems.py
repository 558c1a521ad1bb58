"""Problem files: JSONL (or parquet) with id / problem / answer, read with clear errors.

Every row must carry a non-empty problem and answer; ids must be unique. A bad row raises an
error naming the file and the 1-based row number, before any compute is spent.
"""

from __future__ import annotations

import json
from pathlib import Path


class DataError(ValueError):
    pass


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """``(line number, object)`` per non-empty line; errors name the file and the 1-based row. A UTF-8
    byte-order mark at the start (as some Windows editors write) is accepted."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: row {line}: not valid UTF-8 ({e.reason})") from None
    out = []
    array = text.lstrip().startswith("[")
    # "\n" only: str.splitlines() would also split inside a string holding U+2028 or U+0085, which JSON allows
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            hint = (" -- a single backslash before a letter (LaTeX such as \\sqrt): JSON needs two, \\\\sqrt"
                    if e.msg.startswith("Invalid \\escape") else "")
            raise DataError(f"{path}: row {lineno}: invalid JSON ({e.msg}){hint or _array_hint(array, out)}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {lineno}: not a JSON object{_array_hint(array, out)}")
        out.append((lineno, row))
    return out


def _array_hint(array: bool, rows_so_far: list) -> str:
    """A hint for a JSON array file read as JSONL (an error at its first row); else nothing."""
    if not array or rows_so_far:
        return ""
    return (" -- expected JSONL: one object per line; this file is a JSON array (convert it: python -c "
            "\"import json,sys; [print(json.dumps(r)) for r in json.load(open(sys.argv[1]))]\" in.json > out.jsonl)")


def load_problems(path: str | Path, problem_field: str = "problem", answer_field: str = "answer",
                  id_field: str = "id") -> list[dict]:
    """Rows normalised to ``{"id", "problem", "answer", ...original fields}``."""
    path = Path(path)
    rows, seen = [], set()
    for lineno, row in read_jsonl(path):
        for field in (problem_field, answer_field):
            if row.get(field) in (None, ""):
                raise DataError(f"{path}: row {lineno}: missing field {field!r}")
        rid = str(row.get(id_field, f"{path.stem}-{lineno}"))
        if rid in seen:
            raise DataError(f"{path}: row {lineno}: duplicated id {rid!r}")
        seen.add(rid)
        ans = row[answer_field]
        if isinstance(ans, float) and ans.is_integer():
            ans = int(ans)
        rows.append({**row, "id": rid, "problem": str(row[problem_field]), "answer": str(ans)})
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows
