"""Configuration: plain YAML data, ``extends`` resolved, validated by a JSON schema plus the checks
a schema cannot express (cross-references, divisibility), all before any job runs.

Errors name the file and the key path (``train.checkpoint_every``) and, where there is a closed
set, the allowed values. The schema and its helpers (defaults, a section's schema) are in
:mod:`ibtpo.schema`, which the components that build from one section use without importing this module.
"""

from __future__ import annotations

import copy
import inspect
import json
import sys
from pathlib import Path

import jsonschema
import yaml

# The schema helpers live in ibtpo.schema (which imports nothing from ibtpo); the ones a caller of the
# config uses are importable from here too.
from .schema import SCHEMA_PATH as SCHEMA_PATH
from .schema import ConfigError as ConfigError
from .schema import apply_defaults, deref, raise_schema_errors, schema
from .schema import fill_section as fill_section
from .schema import section_schema as section_schema

# which data sets a run reads (its own module: ibtpo.data.benchmarks needs it too)
from .data.splits import data_splits as data_splits, evaluate_only as evaluate_only

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET_DIR = REPO_ROOT / "pipelines" / "config"


# top-level mappings that a preset (``extends``) or an override replaces whole instead of merging into:
# ``method_seeds: {}`` returns every method to ``seeds``, and naming one method drops the others' extras
REPLACED_WHOLE = ("method_seeds",)


def deep_merge(base: dict, over: dict, whole: tuple[str, ...] = ()) -> dict:
    """``over`` merged into ``base``, mappings key by key; the keys in ``whole`` are replaced, not merged."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in whole
        out[k] = deep_merge(out[k], v) if merge else copy.deepcopy(v)
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
    ppath = _preset_path(parent)  # a preset name is a path under pipelines/config (absolute)
    if not ppath.is_absolute() and (origin.parent / ppath).exists():
        ppath = origin.parent / ppath  # relative to the file that extends it
    base = resolve_extends(_read_yaml(ppath), ppath, depth + 1)
    merged = deep_merge(base, {k: v for k, v in data.items() if k != "extends"}, REPLACED_WHOLE)
    return merged


def validate(cfg: dict, origin: str = "<config>") -> dict:
    """The schema (types, ranges, closed sets; its defaults filled in), then one checker per section
    for what a schema cannot express (cross-references, divisibility, the components' own checks:
    each sampler and advantage is built here, so a bad parameter fails at planning, named by its
    key). Returns the completed config (a new dict); validating it again is a no-op."""
    raise_schema_errors(jsonschema.Draft202012Validator(schema()).iter_errors(cfg), origin)
    cfg = apply_defaults(copy.deepcopy(cfg), schema())
    problems = [p for check in SECTION_CHECKS for p in check(cfg)]
    if cfg["offline_benchmarks"] == "skip" and not problems:
        from .data.benchmarks import drop_hub_only

        cfg, dropped = drop_hub_only(cfg)
        if dropped:
            print(f"[config] offline_benchmarks=skip: dropped hub-only benchmarks {dropped}", file=sys.stderr)
        if not cfg["evaluation"]["benchmarks"]:
            problems.append("offline_benchmarks: skip dropped every benchmark of evaluation.benchmarks")
    if problems:
        raise ConfigError(f"{origin}: invalid configuration:\n" + "\n".join("  " + p for p in problems))
    return cfg


def _component_problem(where: str, kind: str, err: Exception) -> str:
    """A component's own error (``sampler.K: must be ...``) under its config key."""
    msg = str(err)
    if msg.startswith(f"{kind}."):
        return f"{where}.{msg}"
    return f"{where}.{kind}: {msg}"


def _check_components(owner: dict, where: str, kinds: tuple[str, ...]) -> list[str]:
    """Build each component of ``owner`` (a method, or the probe) from its spec: unknown parameters
    are named with the allowed ones, and the component's own checks run (its errors keep its key)."""
    from .registry import ADVANTAGES, SAMPLERS, build_advantage, build_sampler

    problems = []
    for kind in kinds:
        comp, registry = owner[kind], SAMPLERS if kind == "sampler" else ADVANTAGES
        if comp["name"] not in registry:
            continue  # reported by _resolve_ib
        allowed = [p for p in inspect.signature(registry[comp["name"]]).parameters if p not in ("tree", "ib")]
        unknown = [k for k in comp if k not in ("name", "ib") and k not in allowed]
        for key in unknown:
            hint = ""
            if key in IB_KEYS:
                hint = (f" (the probe's IB parameters are probe.ib.{key})" if where == "probe" else
                        f" (IB parameters are declared once per method: {where}.ib.{key})")
            problems.append(f"{where}.{kind}.{key}: not a parameter of {kind} {comp['name']!r}; allowed: {allowed}"
                            + hint)
        if unknown:
            continue
        try:
            (build_sampler if kind == "sampler" else build_advantage)(comp, owner.get("ib"))
        except (ValueError, TypeError) as e:
            problems.append(_component_problem(where, kind, e))
    return problems


# What a run's results rest on, for its fingerprint (resume) and the DAG's rule params (reruns): the config
# section, less keys that change no result (memory only) and keys added after runs were made whose default is
# what those runs did (at that default they are left out, so an upgrade reruns nothing).
NO_RESULT = {"train": ("gradient_checkpointing",)}
ADDED_DEFAULTS = {"train": {"precision": "fp32"}, "rollout": {"dtype": "float32"}}


def result_view(name: str, section):
    """``section`` (the config's ``name`` section) as far as results depend on it (:data:`NO_RESULT`,
    :data:`ADDED_DEFAULTS`); other sections unchanged."""
    if not isinstance(section, dict) or name not in NO_RESULT and name not in ADDED_DEFAULTS:
        return section
    at_default = {k for k, v in ADDED_DEFAULTS.get(name, {}).items() if section.get(k) == v}
    return {k: v for k, v in section.items() if k not in NO_RESULT.get(name, ()) and k not in at_default}


def _check_methods(cfg: dict) -> list[str]:
    """``methods`` / ``ablations`` name defined methods (``methods: []``: evaluate-only, which trains no
    ablations either); each method's IB parameters are shared by its sampler and advantage, and both build."""
    from .registry import load_plugins

    load_plugins()
    problems = [f"{key}: unknown method {m!r}; defined in method_defs: {sorted(cfg['method_defs'])}"
                for key in ("methods", "ablations") for m in cfg[key] if m not in cfg["method_defs"]]
    trained = cfg["methods"] + cfg["ablations"]
    if not cfg["methods"] and cfg["run_ablations"]:
        problems.append("run_ablations: true trains Table 2's ablations, but methods: [] is evaluate-only (trains "
                        "nothing); set run_ablations: false, or name the methods to train")
    problems += [f"method_seeds.{m}: {m!r} is not trained by this preset; allowed: methods and ablations {trained}"
                 for m in cfg["method_seeds"] if m not in trained]
    for name, mdef in cfg["method_defs"].items():
        own = _resolve_ib(mdef, f"method_defs.{name}", ("sampler", "advantage"))
        problems += own or _check_components(mdef, f"method_defs.{name}", ("sampler", "advantage"))
    return problems


def _check_probe(cfg: dict) -> list[str]:
    """The probe's benchmark is defined; its sampler builds with the probe's IB parameters."""
    if "probe" not in cfg:
        return []
    from .registry import load_plugins

    load_plugins()
    pr, problems = cfg["probe"], []
    if pr["benchmark"] not in cfg["data"]["benchmarks"]:
        problems.append(f"probe.benchmark: {pr['benchmark']!r} is not defined under data.benchmarks "
                        f"(defined: {sorted(cfg['data']['benchmarks'])})")
    own = _resolve_ib(pr, "probe", ("sampler",), always=True)
    return problems + (own or _check_components(pr, "probe", ("sampler",)))


def _check_evaluation(cfg: dict) -> list[str]:
    """Benchmarks defined; the eval spec resolves (``pass_at`` defaults to ``[1, k]``); vLLM on CUDA."""
    from .eval.tasks import evaluation_spec, resolve_spec

    ev = cfg["evaluation"]
    problems = [f"evaluation.benchmarks: {b!r} is not defined under data.benchmarks "
                f"(defined: {sorted(cfg['data']['benchmarks'])})"
                for b in ev["benchmarks"] if b not in cfg["data"]["benchmarks"]]
    try:
        ev["pass_at"] = resolve_spec(evaluation_spec(cfg))["pass_at"]
    except ValueError as e:
        problems.append(str(e))
    return problems + task_name_collisions(ev["benchmarks"]) + _vllm_on_cuda(cfg, "evaluation.model",
                                                                           ev["model"] == "vllm")


def task_name_collisions(benchmarks: list[str]) -> list[str]:
    """Benchmark names that become one lm-eval task name (``ibtpo.eval.tasks.task_name``: every character but
    letters, digits and ``_`` turns into ``_``), named in pairs: ``my bench`` and ``my_bench`` would overwrite
    each other's task at evaluation."""
    from .eval.tasks import task_name

    seen, problems = {}, []
    for b in benchmarks:
        task = task_name(b)
        if task in seen:
            problems.append(f"evaluation.benchmarks: {seen[task]!r} and {b!r} collide after sanitising (both become "
                            f"lm-eval task {task!r}); rename one under data.benchmarks")
        seen.setdefault(task, b)
    return problems


def _vllm_on_cuda(cfg: dict, where: str, chosen: bool) -> list[str]:
    # vLLM is a GPU-only extra: a CPU preset that selects it is wrong anywhere; a CUDA preset plans on a
    # machine without vLLM (it fails when its first job starts, ibtpo.rollout.vllm_backend.require_vllm)
    if chosen and not str(cfg["device"]).startswith("cuda"):
        return [f"{where}: 'vllm' runs on CUDA GPUs only (device is {cfg['device']!r}); vLLM is a GPU-only "
                "optional extra (pip install '.[vllm]'): use rollout.backend hf / evaluation.model ibtpo on a CPU"]
    return []


def _check_rollout(cfg: dict) -> list[str]:
    ro = cfg["rollout"]
    problems = _vllm_on_cuda(cfg, "rollout.backend", ro["backend"] == "vllm")
    mml = (ro.get("vllm") or {}).get("max_model_len")
    if mml is not None and mml <= ro["max_new_tokens"]:
        problems.append(f"rollout.vllm.max_model_len: {mml} leaves no room for a prompt with rollout.max_new_tokens "
                        f"({ro['max_new_tokens']})")
    return problems


def _check_train(cfg: dict) -> list[str]:
    """Checkpoint steps known in advance; enough problems and GPUs for the processes."""
    t, problems = cfg["train"], []
    if t["steps"] % t["checkpoint_every"]:
        problems.append(f"train.checkpoint_every: {t['checkpoint_every']} must divide train.steps ({t['steps']}) "
                        "so every checkpoint step is known in advance")
    if t["batch_problems"] < t["num_processes"]:
        problems.append(f"train.num_processes: {t['num_processes']} exceeds "
                        f"train.batch_problems ({t['batch_problems']}); "
                        "each process samples its share of a step's problems")
    train_gpus = rule_resources(cfg, "train").get("gpu")
    if str(cfg["device"]).startswith("cuda") and train_gpus is not None and train_gpus < t["num_processes"]:
        problems.append(f"resources.train.gpu: {train_gpus} GPU(s) for train.num_processes = {t['num_processes']} "
                        "(one process per GPU)")
    return problems


def _check_policy(cfg: dict) -> list[str]:
    """SFT data for a built base; ``base_models`` needs SFT seeds and an RL seed per base."""
    pol, problems = cfg["policy"], []
    if pol["base"] == "build" and "sft" not in cfg["data"]:
        problems.append("data.sft: required when policy.base is 'build' (the supervised warm-up data)")
    if pol["base"] != "build" and Path(pol["base"]).exists():  # else a hub id (checked when its job loads it)
        problem = checkpoint_problem(pol["base"])
        problems += [f"policy.base: {problem}"] if problem else []
    k = pol["base_models"]
    if k > 1 and pol["base"] != "build":
        problems.append(f"policy.base_models: {k} base models need policy.base 'build' (SFT seeds); "
                        f"{pol['base']!r} is one given model")
    elif k > len(all_seeds(cfg)):
        problems.append(f"policy.base_models: {k} exceeds the number of seeds ({len(all_seeds(cfg))}); "
                        "RL seed j starts from base j mod k, so each base needs a seed")
    return problems


def _check_data(cfg: dict) -> list[str]:
    """Each data set has what its source needs, and its local file exists (hub datasets:
    ``ibtpo.data.benchmarks.check_hub_access`` at planning time). Keys another source reads are not
    refused: a preset that ``extends`` another and changes a set's source inherits the old keys. Only the sets
    the run reads (:func:`data_splits`: an evaluate-only run reads no ``data.train``)."""
    problems = []
    entries = [(f"data.{k}", cfg["data"][k]) for k in data_splits(cfg)]
    entries += [(f"data.benchmarks.{k}", v) for k, v in cfg["data"]["benchmarks"].items()]
    for where, ds in entries:
        src = ds["source"]
        if src == "arithmetic" and "n" not in ds:
            problems.append(f"{where}.n: required for source 'arithmetic'")
        for key in ("hf_id", "split"):
            if src == "hf" and key not in ds:
                why = " (no default: hub datasets name their splits differently)" if key == "split" else ""
                problems.append(f"{where}.{key}: required for source 'hf'{why}")
        if src in ("jsonl", "parquet") and "path" not in ds:
            problems.append(f"{where}.path: required for source {src!r}")
        elif src in ("jsonl", "parquet", "hf") and "path" in ds:
            path = Path(ds["path"]) if Path(ds["path"]).is_absolute() else data_root(cfg) / ds["path"]
            other = {"jsonl": "parquet", "parquet": "jsonl"}.get(src)
            if not path.exists():
                problems.append(f"{where}.path: data file {path} not found (data_dir: {cfg['data_dir']!r})")
            elif other and path.suffix == f".{other}":
                problems.append(f"{where}.path: {path.name} looks like a {other} file; use source: {other}")
        if src == "registry":
            problems += _registry_problems(cfg, where, ds)
        if isinstance(ds.get("answer_field"), dict):
            from .data.answer_rules import rule_problem

            problem = rule_problem(ds["answer_field"])
            problems += [f"{where}.answer_field: {problem}"] if problem else []
    return problems


def _check_external(cfg: dict) -> list[str]:
    """External checkpoints: names that are not a method's (nor ``base``), and a hub id only when it is
    in the local Hugging Face cache (nothing is downloaded at planning or by the evaluation)."""
    problems = []
    for name, ext in cfg.get("external", {}).items():
        if name in cfg["method_defs"] or name == "base":
            problems.append(f"external.{name}: the name is taken by "
                            + ("a method of method_defs" if name in cfg["method_defs"] else "the base model row")
                            + "; choose another")
        if "path" in ext:
            problems += _external_path_problems(cfg, f"external.{name}.path", ext["path"])
        if "hub" in ext and not hub_cached(ext["hub"]):
            problems.append(f"external.{name}.hub: {ext['hub']!r} is not in the local Hugging Face cache (the "
                            f"evaluation runs offline); fetch it first: huggingface-cli download {ext['hub']}, "
                            f"or give a local path: external.{name}.path")
    return problems


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")  # what from_pretrained loads
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the existing ``path`` is not a Hugging Face checkpoint directory (what ``save_pretrained`` of a
    model and its tokenizer writes: ``config.json``, weights, tokenizer files), or ``None``. Reads only
    file names, so a wrong path fails at planning in one line instead of in transformers (which, finding
    no tokenizer files, ends in a traceback about sentencepiece)."""
    p = Path(path)
    if not p.is_dir():
        return f"{p} is a file, not a checkpoint directory"
    missing = [what for what, ok in (
        ("config.json", (p / "config.json").is_file()),
        ("weights (" + " / ".join(WEIGHT_FILES) + ")", any(any(p.glob(g)) for g in WEIGHT_FILES)),
        ("tokenizer files (" + " / ".join(TOKENIZER_FILES) + ")", any((p / f).is_file() for f in TOKENIZER_FILES)),
    ) if not ok]
    if not missing:
        return None
    return f"{p} is not a checkpoint directory: no {'; no '.join(missing)} (expected what save_pretrained writes)"


def _external_path_problems(cfg: dict, where: str, path: str) -> list[str]:
    """An external checkpoint's ``path``: a checkpoint directory, or (not there yet) a DAG output under
    ``results_dir`` that a rule builds (``results/<preset>/base``)."""
    p = Path(path)
    if p.exists():
        problem = checkpoint_problem(p)
        return [f"{where}: {problem}"] if problem else []
    if p.resolve().is_relative_to(Path(cfg["results_dir"]).resolve()):
        return []
    rel = "" if p.is_absolute() else f"relative to the working directory {Path.cwd()}; "
    return [f"{where}: {path} not found ({rel}a path under results_dir {cfg['results_dir']!r} may be one the "
            "DAG builds)"]


def hub_cached(repo_id: str) -> bool:
    """Whether a hub model's ``config.json`` is in the local Hugging Face cache (no network)."""
    from .data.context_budget import cached_hub_config

    return cached_hub_config(repo_id) is not None


SECTION_CHECKS = (_check_methods, _check_probe, _check_evaluation, _check_rollout, _check_train, _check_policy,
                  _check_data, _check_external)


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
    from .data.benchmarks import SOURCES
    from .data.sources import data_path

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


def _wants_non_string(node: dict) -> bool:
    """The schema node takes no string (a number, boolean, array, ...), or says nothing (component
    parameters such as ``sampler.G``)."""
    types = node.get("type")
    if types is not None:
        return "string" not in (types if isinstance(types, list) else [types])
    if "enum" in node:
        return not any(isinstance(v, str) for v in node["enum"])
    return "oneOf" not in node and "anyOf" not in node and "pattern" not in node


def _read_scalar(text: str):
    """``--config`` text as a YAML scalar (JSON first: YAML 1.1 reads ``1e-4`` as a string)."""
    for parse in (json.loads, yaml.safe_load):
        try:
            value = parse(text)
        except (ValueError, yaml.YAMLError):
            continue
        if isinstance(value, (bool, int, float)) or value is None:
            return value
    return text


def coerce_overrides(value, node: dict | None = None, root: dict | None = None):
    """Values from ``snakemake --config key=value`` typed by the schema: Snakemake reads a nested value
    (``evaluation={temperature: 0.5}``) with YAML's BaseLoader, so every leaf arrives as a string
    (and a top-level ``run_ablations=true`` too). A string where the schema takes no string (or where
    it says nothing, as for a sampler's parameters) is read as a number / boolean / null when it
    is one; other strings stay as they are (``prompt_template``, ``preset``)."""
    root = schema() if root is None else root
    node = deref(node if node is not None else root, root)
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {k: coerce_overrides(v, props.get(k, extra if isinstance(extra, dict) else {}), root)
                for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_overrides(v, node.get("items", {}), root) for v in value]
    if isinstance(value, str) and _wants_non_string(node):
        return _read_scalar(value)
    return value


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Load a preset (name or path), resolve ``extends``, apply overrides, validate."""
    if path is None:
        path = PRESET_DIR / "tiny.yaml"
    p = _preset_path(path)
    data = resolve_extends(_read_yaml(p), p)
    if overrides:
        data = deep_merge(data, coerce_overrides(overrides), REPLACED_WHOLE)
    return validate(data, str(p))


def dag_config(config: dict, configfiles: list | tuple = ()) -> dict:
    """The Snakefile's config. ``--configfile FILE`` (a preset of one's own: ``extends`` relative to
    FILE's folder, errors naming FILE) or ``--config preset=NAME key=value ...`` (overrides over the
    preset, typed by the schema), validated like ``python -m ibtpo --config``."""
    raw = coerce_overrides(dict(config))
    if "method_defs" in raw or "extends" in raw:
        files = [Path(f) for f in configfiles]
        with_extends = [f for f in files if f.exists() and "extends" in _read_yaml(f)]
        origin = (with_extends or files or [Path("<--configfile>")])[-1]
        return validate(resolve_extends(raw, origin), str(origin))
    return load_config(raw.pop("preset", "tiny"), overrides=raw or None)


def checkpoint_steps(cfg: dict) -> list[int]:
    t = cfg["train"]
    return list(range(t["checkpoint_every"], t["steps"] + 1, t["checkpoint_every"]))


def seeds_of(cfg: dict, method: str) -> list[int]:
    """The RL seeds a method is trained with: ``method_seeds[method]``, else ``seeds``."""
    return list(cfg["method_seeds"].get(method, cfg["seeds"]))


def all_seeds(cfg: dict) -> list[int]:
    """Every RL seed of the preset: ``seeds``, then the other seeds of ``method_seeds`` in increasing
    order. RL seed ``all_seeds[j]`` starts from base model ``j mod policy.base_models``, whichever method
    runs it, so the runs of one seed share their base."""
    extra = sorted({s for ss in cfg["method_seeds"].values() for s in ss} - set(cfg["seeds"]))
    return list(cfg["seeds"]) + extra


def probe_seeds(cfg: dict, method: str) -> list[int]:
    """The seeds whose checkpoints are probed: the method's seeds that are in ``seeds`` (the extra seeds
    of ``method_seeds`` buy power for the accuracy comparisons; the probe claims keep ``seeds``)."""
    return [s for s in seeds_of(cfg, method) if s in cfg["seeds"]] or seeds_of(cfg, method)[:1]
