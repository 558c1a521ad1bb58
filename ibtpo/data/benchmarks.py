"""The real problem sets of the paper presets: a small registry of sources and their loaders.

A preset names a source by registry name (``data.benchmarks.math500: {source: registry, name:
math500}``); the registry says where the rows live (a file under ``data_dir``, or a hub dataset id),
which fields hold the problem, the answer and the id, and how answers are normalised. Every
loader returns rows ``{"id", "problem", "answer", ...original fields}`` with string ids and
answers, or, for benchmarks that lm-eval's own task evaluates (``lm_eval_task``: GPQA-Diamond,
IFEval), the original rows unchanged plus an ``id``.

Local files (``../shared/data/README.md``; byte-for-byte upstream, see its ``MANIFEST.json``):
MATH-500, AIME 2024, AIME 2025, AMC 2023 (jsonl) and DAPO-Math-17K (parquet: ``prompt`` is a
one-message chat list whose ``content`` is the bare problem, the answer is
``reward_model.ground_truth``, an integer string). AMC 2023 stores answers as floats (``27.0``):
integer-valued floats become ``"27"``. Answers follow the one normalisation of every source
(:mod:`ibtpo.data.golds`); files are read and rows mapped by :mod:`ibtpo.data.sources`.

Hub-only sources (AMC 2024, GPQA-Diamond, IFEval; not redistributable or not mirrored here) are
loaded with ``datasets.load_dataset`` by ``make_data`` when it runs, never at planning time. The
hub ids are our choice where the paper names none (METHOD.md §6 lists only the benchmark names):
``evalscope/amc_22-24`` (subset ``amc24``, 45 AMC 10/12 2024 problems), ``Idavidrein/gpqa``
(``gpqa_diamond``, gated: needs an accepted licence and a token) and ``google/IFEval`` -- the
last two are the datasets lm-eval's own ``gpqa_diamond_*`` and ``ifeval`` tasks read. A preset
entry may give ``path:`` (relative to ``data_dir``, or absolute) to read any source from a
local jsonl/parquet file instead; that is how a hub-only benchmark is provided offline.

Where the hub cannot be reached (``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1``, or no
connection) a preset that needs a hub-only dataset (a registry one, or a ``source: hf`` entry without
``path:``) fails at planning time
(:func:`check_hub_access`, called from ``pipelines/rules/data.smk``) unless the top-level key
``offline_benchmarks`` says otherwise: ``fail`` (default), ``defer`` (plan anyway; ``make_data``
fetches or fails when it runs) or ``skip`` (drop hub-only benchmarks that have no local path
from the preset; :func:`drop_hub_only`, applied by config validation). This is our choice; see
the README ("Reproduce the paper").
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import sources
from .problems import DataError
from .sources import data_path, hub_missing_message, offline_reason
from .sources import field as _field


def _first_field(*names: str) -> Callable[[dict], object]:
    """The first of ``names`` the row has (hub copies of one set name their fields differently)."""

    def get(row: dict):
        for n in names:
            if n in row:
                return row[n]
        raise KeyError(" or ".join(names))

    return get


def _chat_user_content(row: dict) -> str:
    """DAPO's ``prompt``: a list of ``{content, role}`` messages with exactly one user message."""
    msgs = row.get("prompt")
    if msgs is None:
        raise KeyError("prompt")
    users = [m for m in list(msgs) if isinstance(m, dict) and m.get("role") == "user"]
    if len(users) != 1:
        raise ValueError(f"field 'prompt' must hold exactly one user message (has {len(users)})")
    return users[0]["content"]


@dataclass(frozen=True)
class Source:
    """Where one problem set lives and how its rows map to ``id / problem / answer``."""

    title: str
    path: str | None = None                    # local copy, relative to data_dir
    hub: tuple[str, str | None, str] | None = None  # (dataset id, config name, split)
    problem: Callable[[dict], object] = _field("problem")
    answer: Callable[[dict], object] = _field("answer")
    id: Callable[[dict], object] | None = _field("id")   # None: "<name>-<row>"
    integer_answers: bool = False              # every answer must be an integer (AIME, AMC, DAPO)
    lm_eval_task: str | None = None            # evaluated by lm-eval's own task; rows kept whole
    note: str = ""


SOURCES: dict[str, Source] = {
    "math500": Source("MATH-500 (PRM800K test split of MATH)", path="math500/test.jsonl",
                      id=_field("unique_id")),
    "aime24": Source("AIME 2024 I+II", path="aime24/test.jsonl", integer_answers=True),
    "aime25": Source("AIME 2025 I+II", path="aime25/test.jsonl", id=None, integer_answers=True),
    "amc23": Source("AMC 2023 (12A/12B)", path="amc23/test.jsonl", integer_answers=True),
    "dapo_math_17k": Source("DAPO-Math-17K training prompts", path="dapo_math_17k/dapo_math_17k.parquet",
                            problem=_chat_user_content, answer=_field("reward_model.ground_truth"),
                            id=lambda r: f"dapo-{r['extra_info']['index']}", integer_answers=True),
    # hub-only (ids our choice, see the module docstring)
    "amc24": Source("AMC 10/12 2024", hub=("evalscope/amc_22-24", "amc24", "test"), id=None,
                    problem=_first_field("problem", "question"),
                    note="our choice of hub id (its field names not verified offline); "
                         "answers are values, not letters"),
    "gpqa_diamond": Source("GPQA-Diamond", hub=("Idavidrein/gpqa", "gpqa_diamond", "train"), id=None,
                           lm_eval_task="gpqa_diamond_cot_zeroshot",
                           note="gated dataset: accept its licence on the hub and set HF_TOKEN"),
    "ifeval": Source("IFEval", hub=("google/IFEval", None, "train"), id=_field("key"),
                     lm_eval_task="ifeval"),
}


def get_source(name: str, where: str = "name") -> Source:
    if name not in SOURCES:
        raise DataError(f"{where}: unknown registry source {name!r}; known: {sorted(SOURCES)}")
    return SOURCES[name]


def local_path(entry: dict, data_dir: str | Path) -> Path | None:
    """The file a registry entry is read from, or ``None`` when it must come from the hub."""
    src = get_source(entry["name"])
    rel = entry.get("path") or src.path
    return data_path(data_dir, rel) if rel else None


def needs_hub(entry: dict) -> bool:
    """Whether a data set entry can only come from the hub: a registry set with no local file, or a
    ``source: hf`` entry without a local copy (``path:``)."""
    if entry.get("source") == "hf":
        return not entry.get("path")
    return entry.get("source") == "registry" and not entry.get("path") and get_source(entry["name"]).path is None


def lm_eval_task(entry: dict) -> str | None:
    """The lm-eval builtin task that evaluates this benchmark (``None``: our own math task)."""
    if entry.get("source") != "registry":
        return None
    return entry.get("lm_eval_task") or get_source(entry["name"]).lm_eval_task


# -------------------------------------------------------------------------------------------
# rows


def _map(records: list[dict], src: Source, name: str, origin: str) -> tuple[list[dict], dict]:
    """``records`` -> rows with string ``id`` (unique) and, for our math tasks, string ``problem`` and
    ``answer`` (:func:`ibtpo.data.golds.normalise_answer`), and counts for the log. Errors name
    ``origin`` (file or hub id) and the 1-based row."""
    return sources.map_rows(records, name, origin, problem=src.problem, answer=src.answer, id=src.id,
                            integer=src.integer_answers, whole=bool(src.lm_eval_task))


def _load_hub(src: Source, name: str) -> tuple[list[dict], str]:
    hub_id, config, split = src.hub
    return sources.load_hub(hub_id, config, split, name, _how_to_provide(name))


def load_registry_rows(entry: dict, data_dir: str | Path, name: str | None = None) -> tuple[list[dict], dict]:
    """Rows of a ``source: registry`` entry and a small provenance record (origin, rows, sha256
    of the file read, the lm-eval task that evaluates it)."""
    src = get_source(entry["name"], where=f"{name or entry['name']}.name")
    name = name or entry["name"]
    path = local_path(entry, data_dir)
    if path is not None:
        records, origin = sources.read_records(path), str(path.resolve())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    else:
        records, origin = _load_hub(src, name)
        digest = None
    rows, counts = _map(records, src, name, origin)
    if entry.get("limit"):
        rows = rows[: entry["limit"]]
    meta = {"source": entry["name"], "title": src.title, "origin": origin, "sha256": digest, "rows": len(rows),
            "lm_eval_task": lm_eval_task(entry), **counts}
    return rows, meta


# -------------------------------------------------------------------------------------------
# the hub at planning time


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """``None`` if the hub (or the HTTPS proxy, when one is set) accepts a TCP connection (no
    request is sent, nothing is downloaded), else why not. Honours the offline switches and
    ``HF_ENDPOINT``."""
    reason = offline_reason()
    if reason:
        return reason
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    if url.scheme == "http":
        proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
    else:
        proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:  # the hub is reached through the proxy: the proxy is what must answer
        url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        return f"no connection to {host}:{port} ({e.__class__.__name__}: {e})"
    return None


def hub_only_entries(cfg: dict) -> dict[str, dict]:
    """``{config key path: entry}`` of the datasets the run reads that can only come from the hub (not
    ``data.train`` in an evaluate-only run: :func:`ibtpo.config.data_splits`)."""
    from .splits import data_splits

    d = cfg["data"]
    entries = [(f"data.{s}", d[s]) for s in data_splits(cfg)]
    entries += [(f"data.benchmarks.{b}", e) for b, e in d["benchmarks"].items()]
    return {where: e for where, e in entries if needs_hub(e)}


def _how_to_provide(name: str) -> str:
    """How to give a hub-only dataset to an offline machine: a local file and a ``path:`` key."""
    lines = []
    src = SOURCES.get(name)
    if src is not None and src.hub:
        hub_id, config, split = src.hub
        lines.append(f"  {name} (hub {hub_id}, config {config}, split {split}): save it where the hub is reachable:\n"
                     f"    python -c \"import datasets; datasets.load_dataset({hub_id!r}, {config!r}, "
                     f"split={split!r}).to_json('{name}.jsonl')\"")
    lines.append(f"    then give the preset a local path: data.benchmarks.<key>: {{source: registry, name: {name}, "
                 f"path: <file, absolute or relative to data_dir>}}")
    return "\n".join(lines)


def _entry_hint(where: str, entry: dict) -> tuple[str, str]:
    """A hub-only entry's name for messages and how to provide it."""
    if entry["source"] == "hf":
        return entry["hf_id"], sources.hf_fetch_hint(where, entry)
    return entry["name"], _how_to_provide(entry["name"])


def check_hub_access(cfg: dict, probe: Callable[[], str | None] = hub_unreachable) -> None:
    """Planning-time check: with ``offline_benchmarks: fail`` (default), a preset that needs a
    hub-only dataset (a registry set without a local file, or a ``source: hf`` entry without
    ``path:``) fails here when the hub is unreachable, naming each dataset, the command that saves
    it and the key that reads the copy. ``skip`` drops hub-only benchmarks (config validation), but
    not ``data.train`` / ``data.sft``: those still fail here; ``defer`` plans anyway. Never downloads
    anything."""
    mode = cfg.get("offline_benchmarks", "fail")
    needed = {w: e for w, e in hub_only_entries(cfg).items()
              if mode == "fail" or (mode == "skip" and not w.startswith("data.benchmarks."))}
    if not needed:
        return
    reason = probe()
    if reason:
        names, hints = zip(*(_entry_hint(w, e) for w, e in needed.items()))
        skippable = all(w.startswith("data.benchmarks.") for w in needed)
        raise DataError("data: " + hub_missing_message(list(names), reason, list(hints), skippable)
                        + "\n  (keys: " + ", ".join(needed) + ")")


def drop_hub_only(cfg: dict) -> tuple[dict, list[str]]:
    """``offline_benchmarks: skip``: remove hub-only benchmarks without a local ``path`` from
    ``data.benchmarks`` and ``evaluation.benchmarks`` (in place); returns ``(cfg, dropped)``.
    Deterministic (no network probe), so the plan does not depend on the network."""
    dropped = [b for b, e in cfg["data"]["benchmarks"].items() if needs_hub(e)]
    for b in dropped:
        del cfg["data"]["benchmarks"][b]
    cfg["evaluation"]["benchmarks"] = [b for b in cfg["evaluation"]["benchmarks"] if b not in dropped]
    return cfg, dropped
