"""Which data sets a run reads: evaluate-only (``methods: []``) and the non-benchmark sets it needs.

Its own module, below both :mod:`ibtpo.config` (which checks only the sets a run reads) and
:mod:`ibtpo.data.benchmarks` (whose planning check asks the hub only for those), so neither imports the other
for it.
"""

from __future__ import annotations


def evaluate_only(cfg: dict) -> bool:
    """``methods: []``: nothing is trained; Table 1 holds the base model and the ``external:`` checkpoints."""
    return not cfg["methods"]


def data_splits(cfg: dict) -> list[str]:
    """The sets of ``data`` besides the benchmarks that make_data reads and writes: ``train`` and ``sft`` where
    the config has them; an evaluate-only run (``methods: []``) reads no ``train`` (nothing is trained: a
    17K-problem set is neither read nor checked) and ``sft`` only to build its base (``policy.base: build``).
    A bare config (a ``data`` section without ``methods``) reads every set it has."""
    present = [s for s in ("train", "sft") if s in cfg["data"]]
    if "methods" not in cfg or not evaluate_only(cfg):
        return present
    return [s for s in present if s == "sft" and cfg["policy"]["base"] == "build"]
