"""``score-tree``: IB-Score and IB-TPO (or TreeRL) advantages of a tree JSON (:mod:`ibtpo.tree_scores`)."""

from __future__ import annotations

import sys

from ..ib_score import PI_MODES, ZERO_PARENT, IBParams


def add_arguments(p) -> None:
    p.add_argument("tree", help="tree JSON file (see examples/tree.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--beta", type=float, default=IBParams.beta, help="IB beta (default %(default)s)")
    p.add_argument("--lam", type=float, default=0.1, help="weight of A_IB in A (default %(default)s)")
    p.add_argument("--pi-mode", default=IBParams.pi_mode, choices=PI_MODES,
                   help="step probability normalisation, METHOD.md §1 (default %(default)s)")
    p.add_argument("--zero-parent", default=IBParams.zero_parent, choices=ZERO_PARENT,
                   help="rule when the parent has no correct leaf (default %(default)s)")
    p.add_argument("--advantage", default="ibtpo", choices=["ibtpo", "treerl"],
                   help="which advantage to print (default %(default)s)")
    p.add_argument("--treerl-variant", default="paper", choices=["paper", "code"],
                   help="TreeRL's node value as in the paper or its code (default %(default)s)")


def main(args) -> int:
    from ..tree_scores import TreeFormatError, render_file

    try:
        ib = IBParams(args.beta, args.pi_mode, args.zero_parent)
        print(render_file(args.tree, args.json, lam=args.lam, ib=ib, advantage=args.advantage,
                     treerl_variant=args.treerl_variant))
    except TreeFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
