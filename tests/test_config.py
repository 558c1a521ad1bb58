import copy

import pytest

from ibtpo.config import ConfigError, load_config, resolve_extends, validate, PRESET_DIR
import yaml


@pytest.fixture(scope="module")
def tiny():
    return resolve_extends(yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text()), PRESET_DIR / "tiny.yaml")


def bad(cfg, path, value):
    cfg = copy.deepcopy(cfg)
    node = cfg
    for k in path[:-1]:
        node = node[k]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


DELETE = object()


def test_presets_validate():
    for name in ("tiny", "smoke"):
        cfg = load_config(name)
        assert cfg["preset"] == name
    smoke = load_config("smoke")
    assert smoke["method_defs"]["grpo"]["sampler"] == {"name": "chains", "G": 4}  # deep-merged over tiny
    assert smoke["evaluation"]["benchmarks"] == ["arith_ops2", "arith_ops3", "arith_ops4", "arith_wide"]


@pytest.mark.parametrize("path,value,message", [
    (("unknown_key",), 1, r"<top level>: Additional properties are not allowed \('unknown_key'"),
    (("methods",), ["grpo", "nope"], r"methods: unknown method 'nope'; defined in method_defs: \[.*'grpo'.*\]"),
    (("method_defs", "grpo", "sampler", "name"), "beam",
     r"method_defs.grpo.sampler.name: unknown sampler 'beam'; allowed: \["),
    (("method_defs", "grpo", "advantage", "name"), "ppo", r"advantage.name: unknown advantage 'ppo'; allowed: \["),
    (("train", "steps"), "20", r"train.steps: '20' is not of type 'integer'"),
    (("train", "steps"), 0, r"train.steps: 0 is less than the minimum of 1"),
    (("train", "checkpoint_every"), 4, r"train.checkpoint_every: 4 must divide train.steps \(30\)"),
    (("evaluation", "benchmarks"), ["arith_ops3", "gsm8k"],
     r"evaluation.benchmarks: 'gsm8k' is not defined under data.benchmarks"),
    (("evaluation", "pass_at"), [1, 8], r"evaluation.pass_at: 8 exceeds evaluation.k \(4\)"),
    (("method_defs", "grpo", "loss", "aggregation"), "sum", r"aggregation: 'sum' is not one of \['token-mean'"),
    (("rollout", "temperature"), 0, r"rollout.temperature: 0 is less than or equal to the minimum of 0"),
    (("data", "train"), {"source": "jsonl"}, r"data.train.path: required for source 'jsonl'"),
    (("train", "lr"), -1.0, r"train.lr: -1.0 is less than or equal to the minimum of 0"),
    (("method_defs", "ibtpo", "advantage", "lam"), 2.0, r"method_defs.ibtpo.advantage.lam: lam must be in \[0, 1\]"),
    (("method_defs", "ibtpo", "ib", "beta"), 0,
     r"method_defs.ibtpo.ib.beta: 0 is less than or equal to the minimum of 0"),
    (("method_defs", "ibtpo", "ib", "pi_mode"), "softmax",
     r"method_defs.ibtpo.ib.pi_mode: 'softmax' is not one of \['length_norm'"),
    (("method_defs", "ibtpo", "sampler", "pi_mode"), "sibling",
     r"method_defs.ibtpo.sampler.pi_mode: not a parameter .* declared once per method: method_defs.ibtpo.ib.pi_mode"),
    (("method_defs", "ibtpo", "advantage", "beta"), 2.0,
     r"method_defs.ibtpo.advantage.beta: not a parameter .* declared once per method: method_defs.ibtpo.ib.beta"),
    (("method_defs", "ibtpo", "advantage", "ib"), {"pi_mode": "sibling"},
     r"method_defs.ibtpo.advantage.ib \{.*'sibling'.*\} disagrees with method_defs.ibtpo.ib \{.*'length_norm'"),
    (("method_defs", "grpo", "ib"), {"beta": 5.0},
     r"method_defs.grpo.ib: neither sampler 'chains' nor advantage 'grpo' uses IB"),
    (("probe", "sampler", "pi_mode"), "raw",
     r"probe.sampler.pi_mode: not a parameter .*the probe's IB parameters are probe.ib.pi_mode"),
    (("method_defs", "grpo", "sampler", "width"), 3,
     r"method_defs.grpo.sampler.width: not a parameter of sampler 'chains'; allowed: \['G'\]"),
    (("method_defs", "ibtpo", "sampler", "K"), 0, r"method_defs.ibtpo.sampler.K: must be an integer >= 1"),
    (("data", "benchmarks", "math500"), {"source": "jsonl", "path": "nowhere/test.jsonl"},
     r"data.benchmarks.math500.path: data file .*nowhere/test.jsonl not found"),
    (("method_seeds",), {"randtree": [0, 1]}, r"method_seeds.randtree: 'randtree' is not trained by this preset"),
    (("method_seeds",), {"grpo": []}, r"method_seeds.grpo: \[\] should be non-empty"),
    (("report", "pairing"), "matched", r"report.pairing: 'matched' is not one of \['independent', 'seeds'\]"),
])
def test_bad_configs_are_refused_with_the_key(tiny, path, value, message):
    with pytest.raises(ConfigError, match=message):
        validate(bad(tiny, path, value))


def test_missing_preset_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_command_line_booleans_are_read_as_booleans():
    from ibtpo.config import load_config

    # snakemake --config run_ablations=true passes the string 'true'
    assert load_config("tiny", overrides={"run_ablations": "true"})["run_ablations"] is True
    assert load_config("tiny", overrides={"run_ablations": "False"})["run_ablations"] is False


def test_one_set_of_ib_parameters_per_method():
    cfg = load_config("tiny")
    md = cfg["method_defs"]
    default = {"beta": 5.0, "pi_mode": "length_norm", "zero_parent": "ratio"}  # METHOD.md §1-§2
    for m in ("ibtpo", "grpo_ibtree", "grpo_ibadv", "randtree_ibadv", "eptree_ibadv"):
        users = [md[m][k] for k in ("sampler", "advantage") if md[m][k]["name"] in ("ibtree", "ibtpo")]
        assert users and all(u["ib"] == md[m]["ib"] == default for u in users), m
    assert "ib" not in md["randtree_ibadv"]["sampler"]  # uniform node choice takes no IB parameters
    assert "ib" not in md["grpo"] and "ib" not in md["grpo"]["sampler"] and "ib" not in md["grpo"]["advantage"]
    assert cfg["probe"]["ib"] == cfg["probe"]["sampler"]["ib"] == default
    # the resolved config a DAG run writes validates again unchanged
    assert validate(copy.deepcopy(cfg)) == cfg
    # sibling stays reproducible: one key switches the sampler and the advantage together
    sib = load_config("tiny",
                      overrides={"method_defs": {"ibtpo": {"ib": {"pi_mode": "sibling"}}}})["method_defs"]["ibtpo"]
    assert sib["sampler"]["ib"]["pi_mode"] == sib["advantage"]["ib"]["pi_mode"] == "sibling"


def test_trainer_refuses_a_method_whose_sampler_and_advantage_disagree(tok, tmp_path):
    from ibtpo.trainer import Method, Trainer, TrainSettings
    from ibtpo.model.tiny import build_tiny_llama
    from ibtpo.rollout.backend import SamplingParams

    model = build_tiny_llama(tok, n_layer=1, d_model=16, n_head=2, d_mlp=32)
    method = Method("x", {"name": "ibtree", "ib": {"pi_mode": "sibling"}}, {"name": "ibtpo", "ib": {"pi_mode": "raw"}})
    with pytest.raises(ValueError, match=r"sampler.ib .*sibling.* advantage.ib .*raw"):
        Trainer(model, tok, [{"id": "1", "problem": "1+1", "answer": "2"}], method,
                TrainSettings.of(dict(steps=1, batch_problems=1, checkpoint_every=1)), SamplingParams(),
                None, None, tmp_path)


def test_method_seeds_replace_whole_and_name_the_runs_of_each_method(tmp_path):
    from ibtpo.config import all_seeds, probe_seeds, seeds_of

    tiny = load_config("tiny")
    assert seeds_of(tiny, "grpo") == list(range(8)) and seeds_of(tiny, "treerl") == [0, 1, 2]
    assert all_seeds(tiny) == list(range(8)) and probe_seeds(tiny, "grpo") == [0, 1, 2]
    # a preset or an override replaces the mapping whole: naming one method drops the other's extra seeds
    assert load_config("smoke")["method_seeds"] == {}
    over = load_config("tiny", overrides={"method_seeds": {"ibtpo": [0, 1, 2, 3]}})
    assert over["method_seeds"] == {"ibtpo": [0, 1, 2, 3]} and seeds_of(over, "grpo") == [0, 1, 2]
    f = tmp_path / "p.yaml"
    f.write_text("extends: tiny\nseeds: [4, 5]\nmethod_seeds: {grpo: [5, 1, 4]}\n")
    cfg = load_config(f)
    # all seeds: `seeds` first, then the extra ones in increasing order (RL seed j starts from base j mod k)
    assert all_seeds(cfg) == [4, 5, 1] and seeds_of(cfg, "grpo") == [5, 1, 4] and probe_seeds(cfg, "grpo") == [5, 4]
    f.write_text("extends: tiny\nseeds: [0]\nmethod_seeds: {grpo: [7]}\n")
    assert probe_seeds(load_config(f), "grpo") == [7]  # no seed of `seeds`: its first seed is probed


def test_empty_methods_is_evaluate_only_and_refuses_run_ablations():
    assert load_config("smoke", overrides={"methods": []})["methods"] == []
    with pytest.raises(ConfigError, match=r"run_ablations: true trains Table 2's ablations, but methods: \[\] is "
                                          r"evaluate-only \(trains nothing\); set run_ablations: false"):
        load_config("smoke", overrides={"methods": [], "run_ablations": True})
