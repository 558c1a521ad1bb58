"""Reading a data set's rows: local jsonl / parquet files and hub datasets, with the field mapping.

A preset's data set (``pipelines/schemas/config.schema.yaml``, ``$defs/dataset``) names its source:

* ``jsonl`` / ``parquet``: ``path`` (relative to ``data_dir``, or absolute). A JSONL file may start
  with a UTF-8 byte-order mark.
* ``hf``: a hub dataset, ``hf_id`` with an optional ``config`` (the dataset's subset name) and a
  required ``split`` -- no default, because hub datasets name their splits differently (GPQA-Diamond's
  and IFEval's only split, ``train``, is their test set), so a default would silently read the wrong
  one or none. Loaded with ``datasets.load_dataset(hf_id, config, split=split)`` when ``make_data``
  runs; at planning time an unreachable hub fails the plan with the command that saves the dataset
  to a file (``ibtpo.data.benchmarks.check_hub_access``, the same check as the registry's hub-only
  sets, and the same ``offline_benchmarks`` switch). ``path:`` on an ``hf`` entry reads that local
  copy instead (jsonl, or parquet by its suffix), with the same field mapping.
* ``registry`` and ``arithmetic`` are read by :mod:`ibtpo.data.benchmarks` and
  :mod:`ibtpo.data.arithmetic`; the registry shares this module's readers and row mapping.

The field mapping: ``problem_field`` (default ``problem``), ``answer_field`` (default ``answer``) and
``id_field`` (default ``id``) may be dotted paths into nested records (``reward_model.ground_truth``).
A problem field holding a chat message list (``[{role, content}, ...]`` with one user message, as
DAPO-Math-17K's ``prompt``) gives that message's content. ``answer_field`` may instead be a rule that
takes the answer out of a field holding a whole solution (``{field: answer, after: "####"}``,
``{field: solution, boxed: last}``, ``{field: x, regex: "..."}``; :mod:`ibtpo.data.answer_rules`).
Answers are normalised by
:func:`ibtpo.data.golds.normalise_answer` (lists, ``$...$``, integer-valued floats). A row without
an id -- when ``id_field`` is not given and the row has no ``id`` -- gets ``<set name>-<0-based row
number, 4 digits>``, the registry's rule; ``make_data`` logs how many rows got one. An ``id_field``
that is given must be present in every row. Every error names the file (or hub id) and the 1-based
row.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Callable

from .answer_rules import ExtractionError, extract, rule_problem
from .golds import is_multi, normalise_answer
from .problems import DataError, read_jsonl

FILE_SOURCES = ("jsonl", "parquet")


def field(name: str) -> Callable[[dict], object]:
    """A getter for a dotted field path (``reward_model.ground_truth``); ``KeyError(name)`` when absent."""
    parts = name.split(".")

    def get(row: dict):
        x = row
        for p in parts:
            if not isinstance(x, dict) or p not in x:
                raise KeyError(name)
            x = x[p]
        return x

    get.__name__ = name
    return get


def answer_getter(spec: str | dict, where: str = "answer_field") -> Callable[[dict], object]:
    """The getter of a data set's ``answer_field``: a field name (:func:`field`), or an extraction rule
    (:mod:`ibtpo.data.answer_rules`) applied to its ``field``. A bad rule is an error naming ``where``."""
    if isinstance(spec, str):
        return field(spec)
    problem = rule_problem(spec)
    if problem:
        raise DataError(f"{where}: {problem}")
    get = field(spec["field"])

    def answer(row: dict):
        return extract(get(row), spec)

    answer.__name__ = spec["field"]
    return answer


def chat_user_content(x):
    """``x`` itself, or, for a chat message list, the content of its one user message."""
    if not (isinstance(x, list) and x and all(isinstance(m, dict) and "role" in m for m in x)):
        return x
    users = [m for m in x if m.get("role") == "user"]
    if len(users) != 1:
        raise ValueError(f"chat message list must hold exactly one user message (has {len(users)})")
    return users[0].get("content")


# -------------------------------------------------------------------------------------------
# files and the hub


def data_path(data_dir: str | Path, rel: str) -> Path:
    """``rel`` under ``data_dir`` (an absolute ``rel`` is used as is)."""
    p = Path(rel)
    return p if p.is_absolute() else Path(data_dir) / p


def offline_reason() -> str | None:
    """Why the hub counts as unreachable without trying it (an offline switch), else ``None``."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    return None


def hub_missing_message(names: list[str], reason: str, hints: list[str], skippable: bool = True) -> str:
    """Why ``names`` cannot be read and how to provide each (``hints``: one per name, e.g.
    :func:`hf_fetch_hint`, or the registry's). ``skippable``: all are benchmarks, which ``skip`` may drop."""
    lines = [f"the hub is not reachable ({reason}), and these datasets are only on the hub: {', '.join(names)}."]
    lines += hints
    defer = ("offline_benchmarks=defer (plan now; make_data fetches them when it runs and fails then if "
             "the hub is still unreachable).")
    lines += ["Or plan/run without them: --config offline_benchmarks=skip (drops them from the preset), or " + defer
              if skippable else "Or --config " + defer]
    return "\n".join(lines)


def plain(x):
    """numpy arrays / scalars and timestamps from parquet or the hub -> JSON-serialisable values."""
    import numpy as np

    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (datetime.date, datetime.datetime)):
        return x.isoformat()
    return x


def read_records(path: Path, fmt: str | None = None) -> list[dict]:
    """Rows of a jsonl or parquet file (``fmt``; ``None``: by the suffix, ``.parquet`` or else jsonl);
    errors name the file and the 1-based row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if (fmt or ("parquet" if path.suffix == ".parquet" else "jsonl")) == "parquet":
        import pandas as pd

        try:
            df = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds
            raise DataError(f"{path}: not a readable parquet file ({e})") from None
        return [plain(r) for r in df.to_dict(orient="records")]
    return [row for _, row in read_jsonl(path)]


def hub_origin(hf_id: str, config: str | None, split: str) -> str:
    return f"hub:{hf_id}" + (f"/{config}" if config else "") + f"[{split}]"


def load_hub(hf_id: str, config: str | None, split: str, name: str, how: str) -> tuple[list[dict], str]:
    """The rows of a hub dataset split and their origin string; offline (``HF_HUB_OFFLINE`` /
    ``HF_DATASETS_OFFLINE``) nothing is tried and the error says how to provide the data (``how``)."""
    reason = offline_reason()
    if reason:
        raise DataError(hub_missing_message([name], reason, hints=[how]))
    try:
        import datasets
    except ImportError:
        raise DataError(f"{name}: reading hub dataset {hf_id!r} needs the 'datasets' package "
                        "(pip install datasets)") from None
    try:
        ds = datasets.load_dataset(hf_id, config, split=split)
    except Exception as e:  # noqa: BLE001 - network, auth (gated), missing dataset / config / split
        raise DataError(f"{name}: could not load hub dataset {hf_id!r} (config {config!r}, split {split!r}): "
                        f"{type(e).__name__}: {e}\n" + how) from None
    return [plain(dict(r)) for r in ds], hub_origin(hf_id, config, split)


def hf_fetch_hint(where: str, ds: dict) -> str:
    """How to give an ``hf`` data set to a machine without the hub: the command that saves it, and
    the ``path:`` key that reads the saved copy."""
    hf_id, config, split = ds["hf_id"], ds.get("config"), ds["split"]
    out = where.rsplit(".", 1)[-1] + ".jsonl"
    return (f"  {where} (hub {hf_id}, config {config}, split {split}): save it where the hub is reachable:\n"
            f"    python -c \"import datasets; datasets.load_dataset({hf_id!r}, {config!r}, split={split!r})"
            f".to_json({out!r})\"\n"
            f"    then give {where} the copy: path: <that file, absolute or relative to data_dir> "
            "(keep source: hf and its field names)")


# -------------------------------------------------------------------------------------------
# rows


def map_rows(records: list[dict], name: str, origin: str, *, problem: Callable, answer: Callable,
             id: Callable | None, id_optional: bool = False, integer: bool = False,
             whole: bool = False) -> tuple[list[dict], dict]:
    """``records`` -> rows ``{**record, "id", "problem", "answer"}`` with string, unique ids and (unless
    ``whole``: rows of lm-eval's own tasks, kept as they are plus an ``id``) a non-empty string problem
    and a normalised answer. ``id=None`` makes every id from the row number, ``id_optional`` those
    of rows without the id field. Returns the rows and counts for the log (``made_ids``,
    ``multi_answers``: list answers of more than one element, read as a set)."""
    out, seen, made, multi = [], set(), 0, 0
    for i, rec in enumerate(records, 1):
        where = f"{origin}: row {i}"
        try:
            rid = id(rec) if id else None
        except (KeyError, TypeError):
            if not id_optional:
                raise DataError(f"{where}: missing id field {getattr(id, '__name__', 'id')!r} "
                                f"(has {sorted(rec)})") from None
            rid = None
        if rid is None or (isinstance(rid, str) and not rid.strip()):
            rid, made = f"{name}-{i - 1:04d}", made + 1
        rid = str(rid)
        if rid in seen:
            raise DataError(f"{where}: duplicated id {rid!r}")
        seen.add(rid)
        if whole:
            out.append({**rec, "id": rid})
            continue
        try:
            p, a = chat_user_content(problem(rec)), answer(rec)
        except KeyError as e:
            raise DataError(f"{where}: missing field {e.args[0]!r} (has {sorted(rec)})") from None
        except ExtractionError as e:
            raise DataError(f"{where} (id {rid!r}): {e}") from None
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if not isinstance(p, str):
            raise DataError(f"{where}: problem is a {type(p).__name__}, not a string")
        if not p.strip():
            raise DataError(f"{where}: empty problem")
        multi += is_multi(a)
        out.append({**rec, "id": rid, "problem": p, "answer": normalise_answer(a, integer, where)})
    if not out:
        raise DataError(f"{origin}: no rows")
    return out, {"made_ids": made, "multi_answers": multi}


def entry_rows(ds: dict, data_dir: str | Path, name: str, where: str) -> tuple[list[dict], dict]:
    """Rows of a ``jsonl`` / ``parquet`` / ``hf`` data set entry (``where``: its config key, for
    messages) and a record for the log: ``origin`` (file or hub id), ``rows``, ``made_ids``,
    ``multi_answers``."""
    source = ds["source"]
    if source not in FILE_SOURCES + ("hf",):
        raise DataError(f"{where}.source: {source!r} is not read by ibtpo.data.sources")
    answer = answer_getter(ds.get("answer_field", "answer"), f"{where}.answer_field")
    if ds.get("path"):
        path = data_path(data_dir, ds["path"])
        records = read_records(path, source if source in FILE_SOURCES else None)
        origin = str(path.resolve())
    else:
        records, origin = load_hub(ds["hf_id"], ds.get("config"), ds["split"], name, hf_fetch_hint(where, ds))
    rows, counts = map_rows(records, name, origin, problem=field(ds.get("problem_field", "problem")),
                            answer=answer, id=field(ds.get("id_field", "id")), id_optional="id_field" not in ds)
    if ds.get("limit"):
        rows = rows[: ds["limit"]]
    return rows, {"origin": origin, "rows": len(rows), **counts}
