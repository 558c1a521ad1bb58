"""The context budget: a prompt and the tokens generated after it must fit the model's positions.

A prompt is ``prompt_template.format(problem=...)`` tokenised as the evaluation model and the rollout
encode it (the checkpoint's tokenizer, no special tokens added). It fits when its length plus the
generation budget -- ``evaluation.max_new_tokens`` for a benchmark, ``rollout.max_new_tokens`` for the
training set -- is at most the model's positions: ``policy.arch.max_positions`` for the built tiny base,
else ``max_position_embeddings`` of the checkpoint's ``config.json`` (read as a file: no weights are
loaded). A prompt that does not fit would be generated past the model's positions (RoPE models
extrapolate silently, others fail mid-run).

Where it is checked, before any generation:

* ``make_data`` (``ibtpo/jobs/make_data.py``): the evaluated benchmarks against every model known then
  (the built base, or ``policy.base`` and the ``external`` checkpoints that are on this machine), and the
  training set against the base when the preset trains; findings join the gold check's (nothing is written).
* the start of every evaluation job (``ibtpo/jobs/evaluate.py``): each benchmark against the checkpoint
  it evaluates (also a DAG-built one, or one edited in after ``make_data``).

``evaluation.overlong`` decides (our choice; default ``error``): ``error`` refuses with the count, the
first ids and their lengths; ``skip`` leaves those problems out of that checkpoint's evaluation and
records them in its results (``overlong_skipped``: ids, positions, budget), so the count is never
silent. Overlong training prompts are always refused (shorten the file or the template, or lower
``rollout.max_new_tokens``). Prompts are never truncated: a cut problem is a different problem.
"""

from __future__ import annotations

import json
from pathlib import Path

SHOW = 5  # ids named in a message


def config_positions(config: dict) -> int | None:
    """``max_position_embeddings`` of a model's ``config.json`` (or of its ``text_config``), else ``None``."""
    for c in (config, config.get("text_config") or {}):
        n = c.get("max_position_embeddings")
        if isinstance(n, int) and n > 0:
            return n
    return None


def cached_hub_config(repo_id: str) -> Path | None:
    """The ``config.json`` of a hub model in the local Hugging Face cache (no network), else ``None``;
    a string that is no hub id raises ``ValueError``."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def checkpoint_config_file(checkpoint: str | Path) -> Path | None:
    """The ``config.json`` of a checkpoint directory, or of a hub id in the local Hugging Face cache."""
    p = Path(checkpoint)
    if p.is_dir():
        return p / "config.json" if (p / "config.json").is_file() else None
    try:
        return cached_hub_config(str(checkpoint))
    except ValueError:  # not a hub id either (a path that is not there)
        return None


def checkpoint_positions(checkpoint: str | Path) -> int | None:
    """The positions of a checkpoint (local directory or cached hub id) without loading its weights."""
    f = checkpoint_config_file(checkpoint)
    return config_positions(json.loads(f.read_text())) if f is not None else None


def built_base_positions(cfg: dict) -> int:
    """``policy.arch.max_positions`` of the tiny base the DAG builds (``build_tiny_llama``'s default if unset)."""
    import inspect

    from ..model.tiny import build_tiny_llama

    default = inspect.signature(build_tiny_llama).parameters["max_positions"].default
    return int(cfg["policy"].get("arch", {}).get("max_positions", default))


def prompt_lengths(problems: list[str], tokenizer, template: str) -> list[int]:
    """Tokens of each prompt ``template.format(problem=p)``, encoded without special tokens."""
    if not problems:
        return []
    enc = tokenizer([template.format(problem=p) for p in problems], add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in enc]


def overlong(ids: list[str], lengths: list[int], positions: int, max_new_tokens: int) -> list[tuple[str, int]]:
    """``(id, prompt tokens)`` of the prompts with ``tokens + max_new_tokens > positions``."""
    return [(i, n) for i, n in zip(ids, lengths, strict=True) if n + max_new_tokens > positions]


def budget_message(where: str, model: str, over: list[tuple[str, int]], n_rows: int, positions: int,
                   gen_key: str, max_new_tokens: int, fix: str) -> str:
    """One line: which set, how many prompts, the model and its positions, the budget, the first ids."""
    first = ", ".join(f"{i!r} ({n} tokens)" for i, n in over[:SHOW]) + (", ..." if len(over) > SHOW else "")
    return (f"{where}: {len(over)} of {n_rows} prompts do not fit {model}: prompt tokens + {gen_key} "
            f"({max_new_tokens}) > its {positions} positions, i.e. prompts over {positions - max_new_tokens} tokens "
            f"(first: {first}); {fix}")


EVAL_FIX = ("shorten prompt_template or the problems, lower evaluation.max_new_tokens, or set "
            "evaluation.overlong: skip (they are left out of the evaluation and counted in its results)")
TRAIN_FIX = "shorten prompt_template or the problems (filter the file), or lower rollout.max_new_tokens"


def skip_overlong(rows: list[dict], over: list[tuple[str, int]]) -> list[dict]:
    """``rows`` without the overlong ones (``evaluation.overlong: skip``)."""
    drop = {i for i, _ in over}
    return [r for r in rows if str(r["id"]) not in drop]


def load_tokenizer(checkpoint: str | Path):
    """A checkpoint's tokenizer from local files only (a directory, or a hub id in the local cache)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)


def known_models(cfg: dict, log=print) -> list[tuple[str, object, int, bool]]:
    """``(label, tokenizer, positions, is_base)`` of the models whose tokenizer and positions are known
    without weights before anything is built: the built base (the char tokenizer and
    ``policy.arch.max_positions``), else ``policy.base``, and the ``external`` checkpoints, where they are
    on this machine. Others are checked when their evaluation starts (logged)."""
    out = []
    if cfg["policy"]["base"] == "build":
        from ..model.tokenizer import build_char_tokenizer

        out.append(("the built base (policy.arch.max_positions)", build_char_tokenizer(), built_base_positions(cfg),
                    True))
        candidates = []
    else:
        candidates = [(f"policy.base {cfg['policy']['base']!r}", cfg["policy"]["base"], True)]
    candidates += [(f"external.{name} ({e.get('path') or e['hub']})", e.get("path") or e["hub"], False)
                   for name, e in cfg.get("external", {}).items()]
    for label, ckpt, is_base in candidates:
        positions = checkpoint_positions(ckpt)
        if positions is None:
            log(f"[make-data] context budget: {label}: no config.json with max_position_embeddings here yet; "
                "checked when its evaluation starts")
            continue
        try:
            out.append((label, load_tokenizer(ckpt), positions, is_base))
        except (OSError, ValueError) as e:
            log(f"[make-data] context budget: {label}: tokenizer not loaded ({type(e).__name__}); "
                "checked when its evaluation starts")
    return out


def rollout_positions(cfg: dict, positions: int, label: str) -> tuple[int, str]:
    """The positions training generates within: the base's, or ``rollout.vllm.max_model_len`` where the vLLM
    rollout is capped below them."""
    mml = (cfg["rollout"].get("vllm") or {}).get("max_model_len")
    if cfg["rollout"].get("backend") == "vllm" and mml and mml < positions:
        return mml, f"{label} under rollout.vllm.max_model_len"
    return positions, label


def make_data_findings(cfg: dict, sets: list[tuple[str, str, list[dict]]], log=print) -> list[str]:
    """The context budget of ``make_data``'s sets (``(name, config key, rows)``): each evaluated benchmark
    against every known model (:func:`known_models`) with ``evaluation.max_new_tokens``, the training set
    against the base with ``rollout.max_new_tokens`` when the preset trains. Returns the findings that
    stop the job; with ``evaluation.overlong: skip`` the benchmarks' are logged instead."""
    ev, template = cfg["evaluation"], cfg["prompt_template"]
    skip = ev.get("overlong", "error") == "skip"
    errors = []
    for label, tok, positions, is_base in known_models(cfg, log):
        for name, where, rows in sets:
            room, model = positions, label
            if where == "data.train" and is_base and cfg.get("methods"):
                key, budget, fix = "rollout.max_new_tokens", cfg["rollout"]["max_new_tokens"], TRAIN_FIX
                room, model = rollout_positions(cfg, positions, label)
            elif where.startswith("data.benchmarks.") and name in ev["benchmarks"]:
                key, budget, fix = "evaluation.max_new_tokens", ev["max_new_tokens"], EVAL_FIX
            else:
                continue
            lengths = prompt_lengths([r["problem"] for r in rows], tok, template)
            over = overlong([str(r["id"]) for r in rows], lengths, room, budget)
            if not over:
                continue
            msg = budget_message(where, model, over, len(rows), room, key, budget, fix)
            if skip and key.startswith("evaluation."):
                log(f"[make-data] note (evaluation.overlong: skip): {msg}")
            else:
                errors.append(msg)
    return errors


def fit_evaluation(cfg: dict, checkpoint: str, benchmarks: dict[str, dict], out_dir: str | Path,
                   log=print) -> tuple[dict[str, dict], dict[str, dict]]:
    """The evaluation job's check, before any generation: each benchmark file of our math task (not those of
    lm-eval's own tasks, which build their prompts) against ``checkpoint``'s tokenizer and positions.
    ``error`` raises a :class:`DataError` (one line per benchmark); ``skip`` writes the fitting rows to
    ``out_dir/overlong_skipped/<name>.jsonl`` and points the benchmark there. Returns the benchmarks and,
    per skipping benchmark, what its results record (``{"overlong_skipped": {...}}``)."""
    from .problems import DataError, load_problems, write_jsonl

    ev = cfg["evaluation"]
    positions = checkpoint_positions(checkpoint)
    if positions is None:
        log(f"[evaluate] context budget: {checkpoint}: no max_position_embeddings in its config.json; not checked")
        return benchmarks, {}
    try:
        tok = load_tokenizer(checkpoint)
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"evaluate: checkpoint {checkpoint}: its tokenizer does not load ({type(e).__name__}: "
                        f"{first})") from None
    out, notes, errors = dict(benchmarks), {}, []
    for name, entry in benchmarks.items():
        path = Path(entry["path"])
        if entry.get("lm_eval_task") or path.with_suffix(".meta.json").is_file():
            continue
        rows = load_problems(path)
        lengths = prompt_lengths([r["problem"] for r in rows], tok, cfg["prompt_template"])
        over = overlong([r["id"] for r in rows], lengths, positions, ev["max_new_tokens"])
        if not over:
            continue
        msg = budget_message(f"evaluation.benchmarks: {name} ({path})", f"checkpoint {checkpoint}", over, len(rows),
                             positions, "evaluation.max_new_tokens", ev["max_new_tokens"], EVAL_FIX)
        if ev.get("overlong", "error") == "error" or len(over) == len(rows):
            errors.append(msg)
            continue
        log(f"[evaluate] evaluation.overlong: skip: {msg}")
        kept = Path(out_dir) / "overlong_skipped" / f"{name}.jsonl"
        write_jsonl(kept, skip_overlong(rows, over))
        out[name] = {**entry, "path": str(kept)}
        notes[name] = {"overlong_skipped": {"count": len(over), "of": len(rows), "positions": positions,
                                            "max_new_tokens": ev["max_new_tokens"], "ids": [i for i, _ in over]}}
    if errors:
        raise DataError("evaluate: prompts do not fit the model (nothing was generated):\n"
                        + "\n".join("  " + e for e in errors))
    return out, notes
