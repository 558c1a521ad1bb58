import json
import subprocess
import sys
from pathlib import Path

import pytest

from ibtpo.score_tree import TreeFormatError, score, tree_from_json

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tree.json"


def test_score_tree_cli_matches_hand_computation():
    out = subprocess.run([sys.executable, "-m", "ibtpo", "score-tree", str(EXAMPLE), "--json"],
                         capture_output=True, text=True, check=True).stdout
    rows = {r["id"]: r for r in json.loads(out)}
    # root: p=1/3; s1: p=.5 -> eta1 = 1.5-1.2 = .3; s2: p=0 -> eta1 = -1.2; sibling pi .75/.25
    assert rows["r"]["p_hat"] == pytest.approx(1 / 3)
    assert rows["r"]["ib_score"] == pytest.approx(6 / 2 * (0.3 * 0.75 - 1.2 * 0.25))
    e1, e2 = [0.3, -1.2], [0.75, 0.25]
    cov = (e1[0] * e2[0] + e1[1] * e2[1]) / 2 - (sum(e1) / 2) * (sum(e2) / 2)
    assert rows["r"]["cov_eta"] == pytest.approx(cov)
    std = (((1 - 1 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2) ** 0.5  # sample std of rewards 1,0,0
    assert rows["s1"]["A_GL"] == pytest.approx((0.5 - 1 / 3) / std)
    assert rows["s1"]["A"] == pytest.approx((0.5 - 1 / 3) / std + 0.1 * 0.3 * 0.75)
    assert rows["l3"]["eta1"] == pytest.approx(-0.2)  # zero parent: ratio := 1
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
        tree_from_json({"nodes": nodes})


def test_sampler_dump_round_trips():
    t, ids = tree_from_json(json.loads(EXAMPLE.read_text()))
    t2, ids2 = tree_from_json(t.to_json())
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
