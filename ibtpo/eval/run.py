"""Evaluate one checkpoint on a set of benchmarks through lm-eval's Python API.

:func:`evaluate_checkpoint` resolves the eval spec and benchmarks into lm-eval task directories
(:mod:`ibtpo.eval.tasks`), calls ``lm_eval.simple_evaluate`` once for all benchmarks with a
``TaskManager(include_path=..., include_defaults=False)`` and an explicit ``device``, and writes
``out_dir/<benchmark>.json`` per benchmark::

    {"benchmark", "checkpoint", "model",
     "metrics": {"avg@k": .., "avg@<k>": .. (same value), "pass@1": .., "pass@4": ..},
     "n_problems", "k", "n_correct", "spec", "grader_timeouts",
     "lm_eval": {"version", "task", "metrics"},
     "seconds": {"imports_and_tasks", "model_load", "simple_evaluate"},   # whole run, all benchmarks
     "generation": {"backend_calls", "tokens_generated", ...} | null,   # whole run; model="ibtpo" only
     "samples": [{"id", "answer", "responses": [k strings], "correct": [k ints]}]}   # in data order

``avg@k`` is the headline number (mean over problems of the share of correct samples; the key is
literally ``avg@k``, ``k`` is reported alongside); ``pass@j`` is the unbiased estimator.
The resolved lm-eval tasks are kept under ``out_dir/lm_eval_tasks/`` (rewritten by every call: run
one evaluation per ``out_dir`` at a time).

``metrics`` are recomputed here from the per-sample ``correct`` lists (:func:`ibtpo.eval.metrics.aggregate`)
and checked against the numbers lm-eval aggregated from the task's ``process_results``; a mismatch
is an error. Models: ``ibtpo`` (the project's sampler, :mod:`ibtpo.eval.lm_eval_model`), ``hf``
(lm-eval's own HFLM, the alternate path) and ``vllm`` (lm-eval's vLLM model; GPU machines with the
``vllm`` extra).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from .metrics import aggregate
from .tasks import FILTER_NAME, resolve_spec, write_tasks

MODELS = ("ibtpo", "hf", "vllm")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


class _DropCustomKwargsHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def _quiet_custom_dataset_warning() -> None:
    """lm-eval warns about `--metadata` for every task that has a `custom_dataset` hook; ours
    take no kwargs, so the hint is noise."""
    lg = logging.getLogger("lm_eval.api.task")
    if not any(isinstance(f, _DropCustomKwargsHint) for f in lg.filters):
        lg.addFilter(_DropCustomKwargsHint())


def model_arguments(model: str, checkpoint: str, spec: dict, seed: int,
                    extra: dict | None = None) -> tuple[dict, int | str]:
    """``(model_args, batch_size)`` for ``simple_evaluate``; ``device`` is passed separately."""
    extra = dict(extra or {})
    if model == "ibtpo":
        # batch_size = distinct prompts per backend call, each sampled k times from one prefill
        return {"pretrained": checkpoint, "seed": seed, **extra}, spec["batch_size"]
    if model == "hf":
        # HFLM batches sequences (the k repeats of a prompt are k requests): same sequences in flight
        return {"pretrained": checkpoint, "dtype": "float32", **extra}, spec["batch_size"] * spec["k"]
    if model == "vllm":
        # lm-eval's vLLM model (GPU machines with the vllm extra); its batching is vLLM's own
        from ..rollout.vllm_backend import lm_eval_model_args, require_vllm

        require_vllm("evaluation.model: vllm")
        return lm_eval_model_args(checkpoint, seed, extra), "auto"
    raise ValueError(f"unknown model {model!r}; one of {MODELS}")


def evaluate_checkpoint(checkpoint: str, benchmarks: dict[str, dict], spec: dict, out_dir: str,
                        device: str = "cpu", seed: int = 0, model: str = "ibtpo", threads: int | None = None,
                        model_args: dict | None = None, notes: dict[str, dict] | None = None) -> dict:
    """Evaluate ``checkpoint`` on every benchmark; write and return ``{name: result}``.

    ``benchmarks[name] = {"path": jsonl, "problem_field"?, "answer_field"?, "id_field"?, "limit"?}``;
    ``spec``: see :func:`ibtpo.eval.tasks.resolve_spec`. ``threads`` sets ``torch.set_num_threads``;
    ``model_args`` adds model arguments (e.g. ``{"dtype": "bfloat16"}``); ``notes[name]`` is merged into that
    benchmark's result (``overlong_skipped``: ``ibtpo.data.context_budget.fit_evaluation``).
    """
    t0 = time.perf_counter()
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; one of {MODELS}")
    if not benchmarks:
        raise ValueError("no benchmarks to evaluate")
    spec = resolve_spec(spec)
    checkpoint = str(checkpoint)
    if Path(checkpoint).is_dir():  # local checkpoint: never reach for a hub
        checkpoint = str(Path(checkpoint).resolve())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks_dir = out / "lm_eval_tasks"
    names = write_tasks(benchmarks, spec, tasks_dir)

    margs, batch_size = model_arguments(model, checkpoint, spec, seed, model_args)

    import torch
    import lm_eval
    from lm_eval.tasks import TaskManager

    from ..grading import close_shared, prewarm
    from . import lm_eval_model  # noqa: F401 - registers the `ibtpo` lm-eval model

    if threads:
        torch.set_num_threads(int(threads))
    _quiet_custom_dataset_warning()
    prewarm(spec["grader_timeout_s"], spec["answer"])
    t_setup = time.perf_counter()
    lm = model
    if model == "ibtpo":
        # built here, exactly as simple_evaluate would from (model, model_args), so that its
        # generation statistics can be reported; hf / vllm go through simple_evaluate by name
        from lm_eval.api.registry import get_model

        lm = get_model("ibtpo").create_from_arg_obj(margs, {"batch_size": batch_size, "device": device})
    t_model = time.perf_counter()
    try:
        res = lm_eval.simple_evaluate(
            model=lm, model_args=margs if isinstance(lm, str) else None, tasks=list(names.values()),
            task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
            device=device, batch_size=batch_size, log_samples=True, bootstrap_iters=0,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )
    finally:
        close_shared()
    t_eval = time.perf_counter()
    if res is None:
        raise RuntimeError("lm_eval.simple_evaluate returned no results (not rank 0?)")

    timing = {"imports_and_tasks": round(t_setup - t0, 3), "model_load": round(t_model - t_setup, 3),
              "simple_evaluate": round(t_eval - t_model, 3)}
    gen_stats = None
    if not isinstance(lm, str):
        st = lm.backend.stats
        gen_stats = {"backend_calls": st.calls, "tokens_generated": st.tokens_generated,
                     "prefix_tokens_encoded": st.prefix_tokens_encoded, "seconds": round(st.seconds, 3)}
    results = {}
    for bench, task in names.items():
        records = []
        timeouts = 0
        for ex in sorted(res["samples"][task], key=lambda e: e["doc_id"]):
            responses = ex["filtered_resps"][0]
            if isinstance(responses, str):
                responses = [responses]
            correct = [int(c) for c in ex["correct"]]
            if len(responses) != spec["k"] or len(correct) != spec["k"]:
                raise RuntimeError(f"{bench} doc {ex['doc_id']}: {len(responses)} responses / {len(correct)} grades, "
                                   f"expected k={spec['k']}")
            timeouts += int(ex["grader_timeouts"])
            # rows of lm-eval's own tasks (ibtpo.eval.builtin_tasks) may have no "answer" (IFEval)
            records.append({"id": str(ex["doc"].get("id", ex["doc_id"])), "answer": ex["doc"].get("answer"),
                            "responses": list(responses), "correct": correct})
        n_data = sum(1 for line in (tasks_dir / task / "data.jsonl").read_text().splitlines() if line.strip())
        if len(records) != n_data:
            raise RuntimeError(f"{bench}: lm-eval logged {len(records)} problems, the benchmark has {n_data}")
        metrics = aggregate([r["correct"] for r in records], spec["pass_at"])
        lm_metrics = {m: res["results"][task][f"{m},{FILTER_NAME}"] for m in metrics}
        for m, v in metrics.items():
            if abs(v - float(lm_metrics[m])) > 1e-9:
                raise RuntimeError(f"{bench}: {m} from the sample records ({v}) != lm-eval's aggregate "
                                   f"({lm_metrics[m]})")
        n_correct = sum(sum(r["correct"]) for r in records)
        if n_correct != int(res["results"][task][f"correct,{FILTER_NAME}"]):
            raise RuntimeError(f"{bench}: correct-sample count differs between records and lm-eval")
        ordered = {"avg@k": metrics["avg@k"], f"avg@{spec['k']}": metrics["avg@k"],
                   **{m: v for m, v in metrics.items() if m != "avg@k"}}
        result = {
            "benchmark": bench, "checkpoint": checkpoint, "model": model, "metrics": ordered,
            "n_problems": len(records), "k": spec["k"], "n_correct": n_correct, "spec": spec,
            "grader_timeouts": timeouts,
            "lm_eval": {"version": getattr(lm_eval, "__version__", None), "task": task, "metrics": lm_metrics},
            "seconds": timing,
            "generation": gen_stats,
            "samples": records,
            **(notes or {}).get(bench, {}),
        }
        _write_json(out / f"{bench}.json", result)
        results[bench] = result
    return results


def _load_obj(arg: str) -> dict:
    """A JSON/YAML file path, or an inline JSON object."""
    p = Path(arg)
    if p.is_file():
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    return json.loads(arg)


def main(argv: list[str] | None = None) -> None:
    """``python -m ibtpo.eval.run --checkpoint DIR --benchmarks B --spec S --out DIR [...]``;
    ``B`` and ``S`` are JSON/YAML files or inline JSON objects."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ibtpo.eval.run", description=main.__doc__)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--benchmarks", required=True,
                    help="{name: {path, problem_field?, answer_field?, id_field?, limit?}}")
    ap.add_argument("--spec", required=True, help="the eval spec (see ibtpo.eval.tasks.resolve_spec)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="ibtpo", choices=MODELS)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    res = evaluate_checkpoint(a.checkpoint, _load_obj(a.benchmarks), _load_obj(a.spec), a.out, device=a.device,
                              seed=a.seed, model=a.model, threads=a.threads)
    for name, r in res.items():
        print(name, json.dumps(r["metrics"]), f"n={r['n_problems']} k={r['k']} timeouts={r['grader_timeouts']}")


if __name__ == "__main__":
    main()
