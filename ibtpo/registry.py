"""Registries of the pieces a method is composed of (verl ``core_algos`` style).

A method is a named composition in config: ``sampler`` + ``advantage`` + ``loss`` settings.
Samplers and advantage estimators register themselves here by name; the trainer looks them up
and never names a method. ``load_plugins()`` imports the modules that register pieces
(the shared machinery in ``ibtpo`` and the baselines in ``baselines``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

SAMPLERS: dict[str, Callable] = {}
ADVANTAGES: dict[str, Callable] = {}

PLUGIN_MODULES = ["ibtpo.rollout.chains", "ibtpo.rollout.ibtree", "ibtpo.ib_advantage", "baselines.grpo", "baselines.random_tree", "baselines.treerl"]


def register_sampler(name: str):
    def deco(cls):
        SAMPLERS[name] = cls
        return cls
    return deco


def register_advantage(name: str):
    def deco(fn):
        ADVANTAGES[name] = fn
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
