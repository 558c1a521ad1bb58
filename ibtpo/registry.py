"""Registries of the pieces a method is composed of (verl ``core_algos`` style).

A method is a named composition in config: ``sampler`` + ``advantage`` + ``loss`` settings.
Samplers and advantage estimators register themselves here by name; the trainer looks them up
and never names a method. ``load_plugins()`` imports the modules that register pieces
(the shared machinery in ``ibtpo`` and the baselines in ``baselines``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Callable

SAMPLERS: dict[str, Callable] = {}
ADVANTAGES: dict[str, Callable] = {}
ADVANTAGE_CHECKS: dict[str, Callable[[dict], None]] = {}  # name -> check(params), raises ValueError

PLUGIN_MODULES = ["ibtpo.rollout.chains", "ibtpo.rollout.ibtree", "ibtpo.ib_advantage",
                  "baselines.grpo", "baselines.random_tree", "baselines.treerl"]


def _qualname(obj) -> str:
    """``module.qualified.name`` of a registered object (what a clash message names)."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _register(registry: dict, kind: str, name: str, obj) -> None:
    """Register ``obj`` as ``kind`` ``name``; a name already taken by another object is refused.

    The same object again, or the same definition re-executed (a module imported again or
    reloaded: same module and qualified name), replaces the entry: that is not a clash."""
    old = registry.get(name)
    if old is not None and old is not obj and _qualname(old) != _qualname(obj):
        raise ValueError(f"{kind} {name!r} is registered twice: by {_qualname(old)} and by {_qualname(obj)}; "
                         "give one of them another name")
    registry[name] = obj


def register_sampler(name: str):
    """Class decorator: register a sampler under ``name`` (refused when another one has it)."""
    def deco(cls):
        _register(SAMPLERS, "sampler", name, cls)
        return cls
    return deco


def register_advantage(name: str, check: Callable[[dict], None] | None = None):
    """Function decorator: register an advantage estimator under ``name`` (refused when another one has it).

    ``check(params)`` validates the estimator's parameters from config (without a tree) and raises
    ``ValueError("advantage.<key>: ...")``; :func:`build_advantage` runs it, so a bad value fails when
    the config is validated, not at the first training step."""
    def deco(fn):
        _register(ADVANTAGES, "advantage", name, fn)
        if check is not None:
            ADVANTAGE_CHECKS[name] = check
        return fn
    return deco


def load_plugins() -> None:
    for mod in PLUGIN_MODULES:
        importlib.import_module(mod)


def get(registry: dict, kind: str, name: str):
    load_plugins()
    if name not in registry:
        raise KeyError(f"unknown {kind} {name!r}; registered: {sorted(registry)}")
    return registry[name]


def uses_ib(component) -> bool:
    """A sampler or advantage takes the IB parameters when its signature has ``ib`` (and it does not
    opt out with ``uses_ib = False``, as the random tree, which inherits IBTree's fields)."""
    return "ib" in inspect.signature(component).parameters and getattr(component, "uses_ib", True)


def build_sampler(spec: dict, ib=None):
    """The sampler of a config ``spec`` (``{"name": ..., **params}``), given the owner's IB parameters
    when it takes them (``ib``: an ``IBParams`` or its mapping; a spec's own ``ib`` wins)."""
    cls = get(SAMPLERS, "sampler", spec["name"])
    args = {k: v for k, v in spec.items() if k != "name"}
    if ib is not None and uses_ib(cls):
        args.setdefault("ib", ib)
    return cls(**args)


def build_advantage(spec: dict, ib=None) -> Callable:
    """The advantage estimator of a config ``spec`` with its parameters bound: ``fn(tree)`` gives the
    per-token advantages of every leaf. Its registered check runs here; the owner's IB parameters are
    passed when it takes them (a spec's own ``ib`` wins)."""
    fn = get(ADVANTAGES, "advantage", spec["name"])
    args = {k: v for k, v in spec.items() if k != "name"}
    if ib is not None and uses_ib(fn):
        args.setdefault("ib", ib)
    inspect.signature(fn).bind(None, **args)  # TypeError naming an unknown parameter
    if spec["name"] in ADVANTAGE_CHECKS:
        ADVANTAGE_CHECKS[spec["name"]](args)
    return functools.partial(fn, **args)
