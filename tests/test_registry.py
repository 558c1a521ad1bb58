"""The registries of samplers and advantages: a name belongs to one object."""

import importlib
import sys

import pytest

from ibtpo import registry
from ibtpo.registry import ADVANTAGES, SAMPLERS, register_advantage, register_sampler


def test_a_name_registered_twice_is_refused_naming_both(monkeypatch):
    registry.load_plugins()
    monkeypatch.setattr(registry, "ADVANTAGES", dict(ADVANTAGES))  # keep the real registry untouched
    monkeypatch.setattr(registry, "SAMPLERS", dict(SAMPLERS))

    def first(tree):
        return tree

    def second(tree):
        return tree

    register_advantage("twice")(first)
    register_advantage("twice")(first)  # the very same object again is no clash
    assert registry.ADVANTAGES["twice"] is first
    with pytest.raises(ValueError, match=r"advantage 'twice' is registered twice: by .*\.first and by .*\.second"):
        register_advantage("twice")(second)
    assert registry.ADVANTAGES["twice"] is first
    with pytest.raises(ValueError, match=r"sampler 'chains' is registered twice: by ibtpo\.rollout\.chains\."):
        register_sampler("chains")(type("Other", (), {}))


def test_reloading_a_plugin_module_is_no_clash(tmp_path, monkeypatch):
    registry.load_plugins()  # before the registry is swapped for a copy (the real plugins register once)
    monkeypatch.setattr(registry, "SAMPLERS", dict(SAMPLERS))
    (tmp_path / "reg_plugin.py").write_text(
        "from ibtpo.registry import register_sampler\n\n\n@register_sampler('reg_plugin')\nclass S:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "reg_plugin", raising=False)
    first = importlib.import_module("reg_plugin").S
    second = importlib.reload(sys.modules["reg_plugin"]).S  # a new class object of the same definition
    assert first is not second and registry.SAMPLERS["reg_plugin"] is second
    registry.load_plugins()  # importing the real plugins again registers nothing twice
    assert set(registry.SAMPLERS) >= {"chains", "ibtree", "random_tree", "eptree", "reg_plugin"}
    monkeypatch.delitem(sys.modules, "reg_plugin")
