"""Evaluation: one eval spec, lm-eval tasks of our own, avg@k and the unbiased pass@k.

* :mod:`ibtpo.eval.metrics` — ``pass_at_k``, ``avg_at_k``, ``aggregate`` (pure functions).
* :mod:`ibtpo.eval.lm_eval_model` — the ``ibtpo`` lm-eval model (samples with ``HFBackend``).
* :mod:`ibtpo.eval.tasks` — writes resolved lm-eval task dirs from the spec and benchmark files.
* :mod:`ibtpo.eval.run` — ``evaluate_checkpoint(checkpoint, benchmarks, spec, out_dir, ...)``.

Importing this package does not import lm-eval (slow); ``evaluate_checkpoint`` is loaded lazily.
"""

from .metrics import aggregate, avg_at_k, pass_at_k, problem_metrics

__all__ = ["aggregate", "avg_at_k", "pass_at_k", "problem_metrics", "evaluate_checkpoint"]


def __getattr__(name):
    if name == "evaluate_checkpoint":
        from .run import evaluate_checkpoint

        return evaluate_checkpoint
    raise AttributeError(name)
