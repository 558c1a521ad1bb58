"""IB-TPO reproduction harness: shared rollout, trees, trainer, evaluation, reports, and IB-TPO."""

__version__ = "0.1.0"
