"""Copy a preset's tables or claims report to the top of its results folder (:mod:`ibtpo.publish`; the DAG's
``publish_table`` and ``publish_claims`` rules)."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--src", nargs="+", required=True, help="the preset's files (results/<preset>/table1.csv ...)")
    p.add_argument("--dst", nargs="+", required=True, help="their top-level copies, in the same order")


def main(args) -> int:
    from ..publish import publish

    if len(args.src) != len(args.dst):
        raise SystemExit(f"publish: {len(args.src)} --src files but {len(args.dst)} --dst files")
    for src, dst in zip(args.src, args.dst):
        publish(src, dst)
        print(f"[publish] {src} -> {dst}")
    return 0
