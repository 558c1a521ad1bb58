"""Configuration: plain YAML data, ``extends`` resolved, validated by a JSON schema plus the checks
a schema cannot express (cross-references, divisibility), all before any job runs.

Errors name the file and the key path (``train.checkpoint_every``) and, where there is a closed
set, the allowed values.
"""

from __future__ import annotations

import copy
import inspect
import json
import sys
from pathlib import Path

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "pipelines" / "schemas" / "config.schema.yaml"
PRESET_DIR = REPO_ROOT / "pipelines" / "config"


class ConfigError(ValueError):
    pass


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        # The resolved config a DAG run writes is JSON: read it as JSON, because YAML 1.1 reads
        # JSON's exponent floats without a dot (1e-06, the paper's lr) as strings.
        data = json.loads(text) if text.lstrip().startswith("{") else None
    except json.JSONDecodeError:
        data = None
    try:
        data = (yaml.safe_load(text) or {}) if data is None else data
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def _preset_path(name: str | Path) -> Path:
    """A preset name (``tiny``, ``paper-qwen3-1.7b``: dots allowed) -> ``pipelines/config/<name>.yaml``;
    anything ending in .yaml/.yml/.json is a path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml", ".json"):
        return p
    return PRESET_DIR / f"{name}.yaml"


def resolve_extends(data: dict, origin: Path, depth: int = 0) -> dict:
    """``extends: NAME`` deep-merges this file over ``pipelines/config/NAME.yaml`` (or a path)."""
    parent = data.get("extends")
    if not parent:
        return data
    if depth > 5:
        raise ConfigError(f"{origin}: 'extends' chain too deep")
    ppath = _preset_path(parent)
    if not ppath.is_absolute() and not ppath.exists():
        ppath = origin.parent / ppath
    base = resolve_extends(_read_yaml(ppath), ppath, depth + 1)
    merged = deep_merge(base, {k: v for k, v in data.items() if k != "extends"})
    return merged


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _fill_defaults(cfg: dict) -> dict:
    cfg.setdefault("results_dir", "results")
    cfg.setdefault("threads_per_job", 1)
    cfg.setdefault("device", "cpu")
    cfg.setdefault("prompt_template", "{problem}\n")
    cfg.setdefault("data_dir", "../shared/data")
    ev = cfg["evaluation"]
    ev.setdefault("pass_at", [1, ev["k"]])
    for key, default in (("temperature", 1.0), ("top_p", 1.0), ("top_k", 0), ("max_new_tokens", 96),
                         ("batch_size", 64), ("model", "ibtpo"), ("grader_timeout_s", 2.0)):
        ev.setdefault(key, default)
    cfg.setdefault("ablations", [])
    cfg.setdefault("run_ablations", False)
    rep = cfg.setdefault("report", {})
    rep.setdefault("bootstrap", 2000)
    rep.setdefault("confidence", 0.95)
    if "probe" in cfg:
        cfg["probe"].setdefault("seed", 0)
    for key, default in (("backend", "hf"), ("temperature", 1.0), ("top_p", 1.0), ("top_k", 0), ("max_new_tokens", 96)):
        cfg["rollout"].setdefault(key, default)
    return cfg


def validate(cfg: dict, origin: str = "<config>") -> dict:
    """Schema + semantic validation; returns the config with defaults filled in."""
    errors = sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        lines = []
        for e in errors[:10]:
            key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
            msg = e.message
            if e.validator == "additionalProperties":
                allowed = sorted(e.schema.get("properties", {}))
                msg += f" (allowed keys: {allowed})" if allowed else ""
            lines.append(f"  {key}: {msg}")
        raise ConfigError(f"{origin}: invalid configuration:\n" + "\n".join(lines))
    cfg = _fill_defaults(copy.deepcopy(cfg))
    problems = []
    for m in cfg["methods"]:
        if m not in cfg["method_defs"]:
            problems.append(f"methods: unknown method {m!r}; defined in method_defs: {sorted(cfg['method_defs'])}")
    from .registry import ADVANTAGES, SAMPLERS, load_plugins

    load_plugins()
    for name, mdef in cfg["method_defs"].items():
        problems += _resolve_ib(mdef, f"method_defs.{name}", ("sampler", "advantage"))
        for kind, registry in (("sampler", SAMPLERS), ("advantage", ADVANTAGES)):
            comp = mdef[kind]
            if comp["name"] not in registry:
                continue  # reported by _resolve_ib
            allowed = [p for p in inspect.signature(registry[comp["name"]]).parameters if p not in ("tree", "ib")]
            for key, value in comp.items():
                where = f"method_defs.{name}.{kind}.{key}"
                if key in ("name", "ib"):
                    continue
                if key not in allowed:
                    problems.append(f"{where}: not a parameter of {kind} {comp['name']!r}; allowed: {allowed}"
                                    + (f" (IB parameters are declared once per method: method_defs.{name}.ib.{key})"
                                       if key in IB_KEYS else ""))
                elif key == "lam" and not (isinstance(value, (int, float)) and 0 <= value <= 1):
                    problems.append(f"{where}: lam must be in [0, 1] (got {value!r}; the paper uses 0.1, 0.5 collapses)")
                elif key in ("G", "B0", "L", "K", "B") and not (isinstance(value, int) and value >= 1):
                    problems.append(f"{where}: must be an integer >= 1 (got {value!r})")
    for m in cfg["ablations"]:
        if m not in cfg["method_defs"]:
            problems.append(f"ablations: unknown method {m!r}; defined in method_defs: {sorted(cfg['method_defs'])}")
    if "probe" in cfg:
        pr = cfg["probe"]
        if pr["benchmark"] not in cfg["data"]["benchmarks"]:
            problems.append(f"probe.benchmark: {pr['benchmark']!r} is not defined under data.benchmarks "
                            f"(defined: {sorted(cfg['data']['benchmarks'])})")
        problems += _resolve_ib(pr, "probe", ("sampler",), always=True)
        if pr["sampler"]["name"] in SAMPLERS:
            allowed = [p for p in inspect.signature(SAMPLERS[pr["sampler"]["name"]]).parameters if p != "ib"]
            problems += [f"probe.sampler.{k}: not a parameter of sampler {pr['sampler']['name']!r}; allowed: {allowed}"
                         + (f" (the probe's IB parameters are probe.ib.{k})" if k in IB_KEYS else "")
                         for k in pr["sampler"] if k not in ("name", "ib") and k not in allowed]
    for b in cfg["evaluation"]["benchmarks"]:
        if b not in cfg["data"]["benchmarks"]:
            problems.append(f"evaluation.benchmarks: {b!r} is not defined under data.benchmarks "
                            f"(defined: {sorted(cfg['data']['benchmarks'])})")
    t = cfg["train"]
    if t["steps"] % t["checkpoint_every"]:
        problems.append(f"train.checkpoint_every: {t['checkpoint_every']} must divide train.steps ({t['steps']}) "
                        "so every checkpoint step is known in advance")
    if t["batch_problems"] < t.get("num_processes", 1):
        problems.append(f"train.num_processes: {t['num_processes']} exceeds train.batch_problems ({t['batch_problems']}); "
                        "each process samples its share of a step's problems")
    ev = cfg["evaluation"]
    for k in ev["pass_at"]:
        if k > ev["k"]:
            problems.append(f"evaluation.pass_at: {k} exceeds evaluation.k ({ev['k']}) samples per problem")
    # vLLM is a GPU-only extra: a CPU preset that selects it is wrong anywhere; a CUDA preset plans on a
    # machine without vLLM (it fails when its first job starts, ibtpo.rollout.vllm_backend.require_vllm)
    ro, on_cuda = cfg["rollout"], str(cfg["device"]).startswith("cuda")
    for where, chosen in (("rollout.backend", ro["backend"] == "vllm"), ("evaluation.model", ev["model"] == "vllm")):
        if chosen and not on_cuda:
            problems.append(f"{where}: 'vllm' runs on CUDA GPUs only (device is {cfg['device']!r}); vLLM is a GPU-only "
                            "optional extra (pip install '.[vllm]'): use rollout.backend hf / evaluation.model ibtpo on a CPU")
    mml = (ro.get("vllm") or {}).get("max_model_len")
    if mml is not None and mml <= ro["max_new_tokens"]:
        problems.append(f"rollout.vllm.max_model_len: {mml} leaves no room for a prompt with rollout.max_new_tokens "
                        f"({ro['max_new_tokens']})")
    if cfg["policy"]["base"] == "build" and "sft" not in cfg["data"]:
        problems.append("data.sft: required when policy.base is 'build' (the supervised warm-up data)")
    k = cfg["policy"].get("base_models", 1)
    if k > 1 and cfg["policy"]["base"] != "build":
        problems.append(f"policy.base_models: {k} base models need policy.base 'build' (SFT seeds); "
                        f"{cfg['policy']['base']!r} is one given model")
    elif k > len(cfg["seeds"]):
        problems.append(f"policy.base_models: {k} exceeds the number of seeds ({len(cfg['seeds'])}); "
                        "RL seed j starts from base j mod k, so each base needs a seed")
    for where, ds in [("data.train", cfg["data"]["train"])] + [(f"data.benchmarks.{k}", v) for k, v in cfg["data"]["benchmarks"].items()]:
        if ds["source"] == "arithmetic" and "n" not in ds:
            problems.append(f"{where}.n: required for source 'arithmetic'")
        if ds["source"] in ("jsonl", "parquet") and "path" not in ds:
            problems.append(f"{where}.path: required for source {ds['source']!r}")
        elif ds["source"] in ("jsonl", "parquet") and not (data_root(cfg) / ds["path"]).exists():
            problems.append(f"{where}.path: data file {data_root(cfg) / ds['path']} not found "
                            f"(data_dir: {cfg['data_dir']!r})")
        if ds["source"] == "registry":
            problems += _registry_problems(cfg, where, ds)
    if cfg.get("offline_benchmarks") == "skip" and not problems:
        from .data.benchmarks import drop_hub_only

        cfg, dropped = drop_hub_only(cfg)
        if dropped:
            print(f"[config] offline_benchmarks=skip: dropped hub-only benchmarks {dropped}", file=sys.stderr)
        if not cfg["evaluation"]["benchmarks"]:
            problems.append("offline_benchmarks: skip dropped every benchmark of evaluation.benchmarks")
    train_gpus = rule_resources(cfg, "train").get("gpu")
    if on_cuda and train_gpus is not None and train_gpus < t.get("num_processes", 1):
        problems.append(f"resources.train.gpu: {train_gpus} GPU(s) for train.num_processes = {t.get('num_processes', 1)} "
                        "(one process per GPU)")
    if problems:
        raise ConfigError(f"{origin}: invalid configuration:\n" + "\n".join("  " + p for p in problems))
    return cfg


IB_KEYS = ("beta", "pi_mode", "zero_parent")


def _resolve_ib(owner: dict, where: str, kinds: tuple[str, ...], always: bool = False) -> list[str]:
    """Give every component of ``owner`` (a method, or the probe) that takes IB parameters the one
    ``IBParams`` declared at ``<where>.ib`` (defaults from ``ibtpo.ib_score.IBParams``), so a method's
    sampler and advantage cannot disagree; the resolved values are written back at ``<where>.ib``
    and into each such component (the run's config.yaml shows them; validating that resolved config
    again is a no-op). A component's own ``ib`` that differs from ``<where>.ib`` is refused, naming
    both keys. Returns problems."""
    from .ib_score import IBParams
    from .registry import ADVANTAGES, SAMPLERS, uses_ib

    try:
        ib = IBParams.of(owner.get("ib"))
    except ValueError as e:
        return [f"{where}.{e}"]
    problems, users = [], []
    for kind in kinds:
        comp, registry = owner[kind], SAMPLERS if kind == "sampler" else ADVANTAGES
        if comp["name"] not in registry:
            problems.append(f"{where}.{kind}.name: unknown {kind} {comp['name']!r}; allowed: {sorted(registry)}")
            continue
        if not uses_ib(registry[comp["name"]]):
            if "ib" in comp:
                problems.append(f"{where}.{kind}.ib: {kind} {comp['name']!r} takes no IB parameters")
            continue
        try:
            own = IBParams.of(comp.get("ib", ib.to_dict()))
        except ValueError as e:
            problems.append(f"{where}.{kind}.{e}")
            continue
        if own != ib:
            problems.append(f"{where}.{kind}.ib {own.to_dict()} disagrees with {where}.ib {ib.to_dict()}: "
                            f"a method's sampler and advantage share one set of IB parameters, declared at {where}.ib")
        users.append(comp)
    if "ib" in owner and not users and not always and not problems:
        names = " nor ".join(f"{k} {owner[k]['name']!r}" for k in kinds)
        problems.append(f"{where}.ib: neither {names} uses IB parameters; remove it")
    if users or always:
        owner["ib"] = ib.to_dict()
    for comp in users:
        comp["ib"] = ib.to_dict()
    return problems


def rule_resources(cfg: dict, rule: str) -> dict:
    """A rule's job resources from the preset's ``resources:`` (``default`` overridden key by key by
    the rule's entry), for the rule's ``resources:``; what is left comes from the profile's
    default-resources (pipelines/profiles/slurm)."""
    res = cfg.get("resources") or {}
    return {**res.get("default", {}), **res.get(rule, {})}


def check_resource_rules(cfg: dict, rules) -> None:
    """``resources:`` keys must be ``default`` or a rule of the workflow (a typo would be ignored)."""
    unknown = sorted(set(cfg.get("resources") or {}) - set(rules) - {"default"})
    if unknown:
        raise ConfigError(f"resources: unknown rule(s) {unknown}; allowed: {sorted(set(rules) | {'default'})}")


def data_root(cfg: dict) -> Path:
    """``data_dir``: an absolute path as is, a relative one from the repository root (jobs run in
    Snakemake's working directory, which need not be the repository)."""
    p = Path(cfg["data_dir"])
    return p if p.is_absolute() else REPO_ROOT / p


def _registry_problems(cfg: dict, where: str, ds: dict) -> list[str]:
    """``source: registry`` entries: a known name, and its local file present (hub-only sources are
    checked at planning time, ``ibtpo.data.benchmarks.check_hub_access``)."""
    from .data.benchmarks import SOURCES, data_path

    if "name" not in ds:
        return [f"{where}.name: required for source 'registry' (known: {sorted(SOURCES)})"]
    if ds["name"] not in SOURCES:
        return [f"{where}.name: unknown registry source {ds['name']!r}; known: {sorted(SOURCES)}"]
    rel = ds.get("path") or SOURCES[ds["name"]].path
    if rel and not data_path(data_root(cfg), rel).exists():
        key = "path" if ds.get("path") else "name"
        return [f"{where}.{key}: data file {data_path(data_root(cfg), rel)} of {ds['name']!r} not found "
                f"(data_dir: {cfg['data_dir']!r}, relative to the repository root; see ../shared/data/README.md)"]
    return []


def _coerce_booleans(overrides: dict) -> dict:
    """``--config run_ablations=true`` arrives as the string 'true': read top-level boolean keys."""
    props = _schema()["properties"]
    out = dict(overrides)
    for k, v in overrides.items():
        if props.get(k, {}).get("type") == "boolean" and isinstance(v, str) and v.lower() in ("true", "false"):
            out[k] = v.lower() == "true"
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Load a preset (name or path), resolve ``extends``, apply overrides, validate."""
    if path is None:
        path = PRESET_DIR / "tiny.yaml"
    p = _preset_path(path)
    data = resolve_extends(_read_yaml(p), p)
    if overrides:
        data = deep_merge(data, _coerce_booleans(overrides))
    return validate(data, str(p))


def checkpoint_steps(cfg: dict) -> list[int]:
    t = cfg["train"]
    return list(range(t["checkpoint_every"], t["steps"] + 1, t["checkpoint_every"]))


def run_dir(cfg: dict, method: str, seed: int) -> Path:
    return Path(cfg["results_dir"]) / cfg["preset"] / "runs" / method / f"seed{seed}"
