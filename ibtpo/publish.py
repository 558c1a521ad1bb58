"""The top level of a results folder shows one run's tables and claims report, never a mix.

Every report file is written under its preset's folder (``results/<preset>/table1.csv``, ``claims.md``,
...); ``results/table1.csv`` and its siblings are *published* copies of the preset's (the DAG's
``publish_table`` and ``publish_claims`` rules; a markdown file's relative links rebased). Before a run
executes its first job it removes the top-level files that this run's config would not publish from its own
preset folder (:func:`stale`): another preset's, a changed copy, or a file this config makes no more (an
evaluate-only run, ``methods: []``, publishes Table 1 alone, so an earlier run's claims and Table 3 go). So
``results/table1.csv``, ``results/claims.md`` and ``results/last_run.json`` always name the same preset
and config. A removed file is an unchanged copy of a file that stays in its preset's folder (which a later run
of the same preset may rewrite: the preset folder holds the preset's latest results); any other top-level
file (written by hand, or by an older version of this code) moves to ``<results>/superseded/`` instead
(numbered when the name is taken). ``claims.json`` keeps its paths relative to the preset folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# name -> extensions of the files the DAG publishes at the top level of the results folder
PUBLISHED = {"table1": ("csv", "md", "tex"), "table2": ("csv", "md", "tex"), "table3": ("csv", "md", "tex"),
             "claims": ("md", "json")}
SUPERSEDED = "superseded"  # <results_dir>/superseded/: top-level files no preset folder holds, kept
_LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown link or image target: [text](target)


def rebase_links(text: str, src_dir: Path, dst_dir: Path) -> str:
    """``text`` (markdown written in ``src_dir``) with each relative link target ``t`` rewritten so it names
    the same file from ``dst_dir``: ``relpath(src_dir / t, dst_dir)``. URLs (``scheme:``), anchors (``#``)
    and absolute paths are kept. E.g. ``figures/a.png`` in ``results/tiny/claims.md`` becomes
    ``tiny/figures/a.png`` in ``results/claims.md``."""
    def rebase(m: re.Match) -> str:
        t = m.group(1)
        if t.startswith(("#", "/")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", t):
            return m.group(0)
        path, _, anchor = t.partition("#")
        new = os.path.relpath(os.path.normpath(src_dir / path), os.path.normpath(dst_dir))
        return f"]({Path(new).as_posix()}{'#' + anchor if anchor else ''})"
    return _LINK.sub(rebase, text)


def published_bytes(src: Path, dst: Path) -> bytes:
    """What ``dst`` holds when it is published from ``src``: the same bytes, with a markdown file's relative
    links rebased (:func:`rebase_links`)."""
    src, dst = Path(src), Path(dst)
    if src.suffix == ".md":
        return rebase_links(src.read_text(), src.parent, dst.parent).encode()
    return src.read_bytes()


def publish(src: str | Path, dst: str | Path) -> None:
    """Copy one preset's report file to the top level of its results folder (:func:`published_bytes`)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(published_bytes(Path(src), dst))


def published_names(names) -> list[str]:
    """The top-level file names published for the report names ``names`` (``table1`` -> ``table1.csv``,
    ``table1.md``, ``table1.tex``)."""
    return [f"{n}.{e}" for n in names for e in PUBLISHED[n]]


def stale(results_dir: str | Path, preset_dir: str | Path, names) -> list[Path]:
    """The top-level published files of ``results_dir`` a run would not publish: not among ``names`` (the
    report names its config makes), or not an unchanged published copy of ``preset_dir``'s file."""
    rd, r = Path(results_dir), Path(preset_dir)
    keep = set(published_names(names))

    def current(p: Path) -> bool:
        src = r / p.name
        return p.name in keep and src.is_file() and published_bytes(src, p) == p.read_bytes()
    return [rd / f for f in published_names(PUBLISHED) if (rd / f).exists() and not current(rd / f)]


def source_of(top: Path, results_dir: Path) -> Path | None:
    """The preset file ``top`` is an unchanged published copy of (``results_dir/<preset>/<name>``), else
    ``None``."""
    data = top.read_bytes()
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir() and p.name != SUPERSEDED):
        src = folder / top.name
        if src.is_file() and published_bytes(src, top) == data:
            return src
    return None


def clear_stale(results_dir: str | Path, preset_dir: str | Path, names, log=print) -> list[Path]:
    """Remove the top-level files this run would not publish (:func:`stale`): an unchanged copy of a preset's
    file is deleted (its source stays in that preset's folder); any other file moves to
    ``<results_dir>/superseded/``. Returns the files handled, and logs one line for each."""
    rd = Path(results_dir)
    handled = stale(rd, preset_dir, names)
    for p in handled:
        src = source_of(p, rd)
        if src is not None:
            p.unlink()
            log(f"[publish] removed {p}: an earlier run's copy of {src} (kept there), not this run's")
        else:
            keep = rd / SUPERSEDED / p.name
            n = 1
            while keep.exists():  # an earlier superseded file of that name stays
                keep, n = rd / SUPERSEDED / f"{p.stem}.{n}{p.suffix}", n + 1
            keep.parent.mkdir(exist_ok=True)
            p.replace(keep)
            log(f"[publish] moved {p} to {keep}: an earlier run's, and no preset folder holds it")
    return handled
