import json
import subprocess
import sys
from pathlib import Path

import pytest

from ibtpo.rollout.tree import Tree
from ibtpo.rollout.tree_json import TreeFormatError
from ibtpo.tree_scores import score

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tree.json"


def test_score_tree_cli_matches_hand_computation():
    out = subprocess.run([sys.executable, "-m", "ibtpo", "score-tree", str(EXAMPLE), "--json"],
                         capture_output=True, text=True, check=True).stdout
    rows = {r["id"]: r for r in json.loads(out)}
    # root: p=1/3; s1: p=.5 -> eta1 = 1.5-1.2 = .3; s2: p=0 -> eta1 = -1.2; length_norm pi = prob: .6/.2
    assert rows["r"]["p_hat"] == pytest.approx(1 / 3)
    assert rows["r"]["ib_score"] == pytest.approx(6 / 2 * (0.3 * 0.6 - 1.2 * 0.2))  # -0.18
    e1, e2 = [0.3, -1.2], [0.6, 0.2]
    cov = (e1[0] * e2[0] + e1[1] * e2[1]) / 2 - (sum(e1) / 2) * (sum(e2) / 2)
    assert rows["r"]["cov_eta"] == pytest.approx(cov)
    std = (((1 - 1 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2) ** 0.5  # sample std of rewards 1,0,0
    assert rows["s1"]["A_GL"] == pytest.approx((0.5 - 1 / 3) / std)
    assert rows["s1"]["A"] == pytest.approx((0.5 - 1 / 3) / std + 0.1 * 0.3 * 0.6)
    assert rows["l3"]["eta1"] == pytest.approx(-0.2)  # zero parent: ratio := 1
    # --pi-mode sibling renormalises the root's children: .6/.8 = .75, .2/.8 = .25
    out = subprocess.run([sys.executable, "-m", "ibtpo", "score-tree", str(EXAMPLE), "--json", "--pi-mode", "sibling"],
                         capture_output=True, text=True, check=True).stdout
    sib = {r["id"]: r for r in json.loads(out)}
    assert sib["r"]["ib_score"] == pytest.approx(6 / 2 * (0.3 * 0.75 - 1.2 * 0.25))
    assert sib["s1"]["A"] == pytest.approx((0.5 - 1 / 3) / std + 0.1 * 0.3 * 0.75)
    table = subprocess.run([sys.executable, "-m", "ibtpo", "score-tree", str(EXAMPLE)],
                           capture_output=True, text=True, check=True).stdout
    assert table.splitlines()[0].split()[:3] == ["id", "parent", "p_hat"]


@pytest.mark.parametrize("nodes,msg", [
    ([{"id": 1, "parent": None}, {"id": 2, "parent": 1}], "leaf 2: needs a 0/1 'reward'"),
    ([{"id": 1, "parent": None}, {"id": 2, "parent": 9, "reward": 1}], "unknown parent 9"),
    ([{"id": 1, "parent": None}, {"id": 1, "parent": 1, "reward": 1}], "duplicated id 1"),
    ([{"id": 1, "parent": 2}, {"id": 2, "parent": 1, "reward": 1}], "exactly one root"),
    ([{"id": 1, "parent": None}, {"id": 2, "parent": 1, "reward": 1, "prob": 1.5}], "prob must be in"),
])
def test_bad_trees_are_refused(nodes, msg):
    with pytest.raises(TreeFormatError, match=msg):
        Tree.from_json({"nodes": nodes})


def test_sampler_dump_round_trips():
    t, ids = Tree.from_json(json.loads(EXAMPLE.read_text()))
    t2, ids2 = Tree.from_json(t.to_json())
    assert [r["ib_score"] for r in score(t, ids) if "ib_score" in r] == \
        pytest.approx([r["ib_score"] for r in score(t2, ids2) if "ib_score" in r])


def test_score_tree_treerl_values_by_hand():
    out = subprocess.run([sys.executable, "-m", "ibtpo", "score-tree", str(EXAMPLE), "--json", "--advantage", "treerl"],
                         capture_output=True, text=True, check=True).stdout
    rows = {r["id"]: r for r in json.loads(out)}
    # paper variant: V = mean leaf reward; R = (V(s)-V(root) + V(s)-V(parent)) / sqrt(leaves(s))
    assert rows["s1"]["R"] == pytest.approx(((0.5 - 1 / 3) * 2) / 2 ** 0.5)
    assert rows["l1"]["R"] == pytest.approx((1 - 1 / 3) + (1 - 0.5))
    assert rows["l3"]["R"] == pytest.approx((0 - 1 / 3) + 0)
    code = subprocess.run([sys.executable, "-m", "ibtpo", "score-tree", str(EXAMPLE), "--json", "--advantage", "treerl",
                           "--treerl-variant", "code"], capture_output=True, text=True, check=True).stdout
    rows = {r["id"]: r for r in json.loads(code)}
    # leave-one-out centred rewards: l1 = 1 - 0 = 1, l2 = 0 - .5, l3 = 0 - .5; W = V / sqrt(n)
    v_s1 = (1 - 0.5) / 2
    assert rows["s1"]["R"] == pytest.approx(2 * (v_s1 / 2 ** 0.5 - 0.0))


def _tree(*extra, root=None, **leaf):
    """A valid tree r -> s -> l, with ``leaf`` merged into l's fields and ``extra`` nodes appended."""
    return {"nodes": [{"id": "r", "parent": None, **(root or {})}, {"id": "s", "parent": "r", "prob": 0.5},
                      {"id": "l", "parent": "s", "reward": 1, **leaf}, *extra]}


BAD = {  # name: (file text, strings stderr must contain)
    "nan_logprob": (json.dumps(_tree(logprob_mean=float("nan"))), ["nodes[2]", "'l'", "logprob_mean", "NaN"]),
    "inf_logprob": ('{"nodes": [{"id": "r", "parent": null}, {"id": 2, "parent": "r", "logprob_mean": -Infinity,'
                    ' "reward": 0}]}', ["nodes[1]", "node 2", "logprob_mean", "-Infinity"]),
    "positive_logprob": (json.dumps(_tree(logprob_mean=0.3)), ["'l'", "logprob_mean", "<= 0"]),
    "huge_int_logprob": (json.dumps(_tree(logprob_mean=-10 ** 400)), ["'l'", "logprob_mean"]),
    "prob_zero": (json.dumps(_tree(prob=0)), ["'l'", "prob must be in (0, 1]"]),
    "prob_above_one": (json.dumps(_tree(prob=1.5)), ["'l'", "prob"]),
    "prob_nan": (json.dumps(_tree(prob=float("nan"))), ["'l'", "prob", "NaN"]),
    "prob_and_logprob": (json.dumps(_tree(prob=0.5, logprob_mean=-1.0)), ["'l'", "prob", "logprob_mean"]),
    "string_logprob": (json.dumps(_tree(logprob_mean="-1.0")), ["'l'", "logprob_mean", "a string"]),
    "bool_prob": (json.dumps(_tree(prob=True)), ["'l'", "prob", "a boolean"]),
    "list_reward": (json.dumps(_tree(reward=[1])), ["'l'", "reward", "a list"]),
    "string_n_tokens": (json.dumps(_tree(n_tokens="3")), ["'l'", "n_tokens"]),
    "negative_n_tokens": (json.dumps(_tree(n_tokens=-1)), ["'l'", "n_tokens"]),
    "null_logprob_non_root": (json.dumps(_tree(logprob_mean=None)), ["'l'", "logprob_mean", "null"]),
    "reward_two": (json.dumps(_tree(reward=2)), ["'l'", "reward", "[0, 1]"]),
    "reward_negative": (json.dumps(_tree(reward=-1)), ["'l'", "reward"]),
    "reward_bool": (json.dumps(_tree(reward=True)), ["'l'", "reward", "a boolean"]),
    "reward_missing": ('[{"id": "r", "parent": null}, {"id": "l", "parent": "r"}]', ["nodes[1]", "leaf 'l'", "reward"]),
    "reward_null": (json.dumps(_tree(reward=None)), ["nodes[2]", "'l'", "reward", "null"]),
    "reward_on_internal": (json.dumps({"nodes": [{"id": "r", "parent": None}, {"id": "s", "parent": "r", "reward": 0},
                                                 {"id": "l", "parent": "s", "reward": 1}]}),
                           ["nodes[1]", "'s'", "reward", "leaf"]),
    "reward_on_root": (json.dumps(_tree(root={"reward": 1})), ["nodes[0]", "'r'", "reward"]),
    "list_id": (json.dumps(_tree({"id": [1], "parent": "r", "reward": 0})), ["nodes[3]", "id", "[1]"]),
    "dict_id": (json.dumps(_tree({"id": {}, "parent": "r", "reward": 0})), ["nodes[3]", "id"]),
    "float_id": (json.dumps(_tree({"id": 1.5, "parent": "r", "reward": 0})), ["nodes[3]", "id", "1.5"]),
    "bool_id": (json.dumps(_tree({"id": True, "parent": "r", "reward": 0})), ["nodes[3]", "id", "true"]),
    "list_parent": (json.dumps(_tree({"id": "x", "parent": ["r"], "reward": 0})), ["nodes[3]", "'x'", "parent"]),
    "missing_parent_key": (json.dumps(_tree({"id": "x", "reward": 0})), ["nodes[3]", "parent"]),
    "unknown_parent": (json.dumps(_tree({"id": "x", "parent": "nope", "reward": 0})),
                       ["nodes[3]", "'x'", "parent", "'nope'"]),
    "duplicate_id": (json.dumps(_tree({"id": "s", "parent": "r", "reward": 0})), ["nodes[3]", "'s'", "id"]),
    "cycle": (json.dumps(_tree({"id": "a", "parent": "b", "reward": 0}, {"id": "b", "parent": "a"})),
              ["nodes[3]", "'a'", "parent", "reachable"]),
    "self_parent": (json.dumps(_tree({"id": "a", "parent": "a", "reward": 0})), ["nodes[3]", "'a'", "reachable"]),
    "two_roots": (json.dumps(_tree({"id": "r2", "parent": None})), ["one root", "nodes[0]", "nodes[3]", "parent"]),
    "no_root": ('[{"id": 1, "parent": 2}, {"id": 2, "parent": 1, "reward": 1}]', ["one root", "parent"]),
    "no_nodes_key": ("{}", ["'nodes'"]),
    "nodes_not_list": ('{"nodes": {"id": "r"}}', ["'nodes'", "an object"]),
    "nodes_empty": ('{"nodes": []}', ["'nodes'", "non-empty"]),
    "top_level_number": ("3", ["'nodes'"]),
    "node_not_object": (json.dumps(_tree("l2")), ["nodes[3]", "object", '"l2"']),
    "problem_not_object": (json.dumps({**_tree(), "problem": "2+2"}), ["'problem'"]),
    "text_not_string": (json.dumps(_tree(text=5)), ["'l'", "text"]),
    "root_only": ('{"nodes": [{"id": "r", "parent": null, "text": "q"}]}', ["root 'r'", "nothing to score"]),
    "not_json": ('{"nodes": [', ["cannot read tree JSON"]),
    "not_utf8": (b"\xff\xfe{", ["cannot read tree JSON"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_cli_refuses_bad_tree(name, tmp_path, capsys):
    from ibtpo.__main__ import main

    text, needles = BAD[name]
    path = tmp_path / "tree.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["score-tree", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and str(path) in err
    for needle in needles:
        assert needle in err, (needle, err)


def test_cli_missing_file_and_subprocess_nan(tmp_path):
    missing = tmp_path / "nope.json"
    res = subprocess.run([sys.executable, "-m", "ibtpo", "score-tree", str(missing)], capture_output=True, text=True)
    assert res.returncode == 2 and str(missing) in res.stderr and "Traceback" not in res.stderr
    path = tmp_path / "tree.json"
    path.write_text('{"nodes": [{"id": "r", "parent": null}, {"id": "a", "parent": "r", "logprob_mean": NaN, '
                    '"reward": 1}, {"id": "b", "parent": "r", "logprob_mean": -1, "reward": 0}]}')
    res = subprocess.run([sys.executable, "-m", "ibtpo", "score-tree", str(path)], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    assert "nodes[1], node 'a': logprob_mean must be a finite number <= 0 (got NaN)" in res.stderr


def test_valid_edge_cases_still_score():
    # fractional reward, integer ids, root with logprob_mean null (as Tree.to_json writes), n_tokens
    t, ids = Tree.from_json([{"id": 0, "parent": None, "logprob_mean": None, "n_tokens": 0},
                             {"id": 1, "parent": 0, "logprob_mean": 0, "n_tokens": 3, "reward": 0.5},
                             {"id": 2, "parent": 0, "prob": 1, "reward": 1}])
    rows = score(t, ids)
    assert ids == [0, 1, 2] and rows[0]["p_hat"] == pytest.approx(0.75)
