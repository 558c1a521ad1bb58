"""Fork records on trees and their statistics (ibtpo.analysis.forks), in the trainer, Table 3, figures."""

import json

import pytest

from baselines.treerl import EPTreeSampler
from ibtpo.analysis.forks import FORK_KEYS, combine, fork_stats, tree_forks
from ibtpo.rollout.backend import SamplingParams
from ibtpo.rollout.chains import ChainSampler
from ibtpo.rollout.context import RolloutContext
from ibtpo.rollout.ibtree import IBTreeSampler
from ibtpo.rollout.tree import Tree

from test_ib import AlwaysRight, StepBackend
from test_trainer import make_trainer
from test_treerl import CharBackend

PROBLEMS = [{"id": str(i), "problem": f"Q{i}", "answer": "3"} for i in range(3)]


def add(t, parent, n):
    return t.add_node(parent, [5] * n, [-0.1] * n, [0.5] * n)


def test_fork_statistics_by_hand():
    t = Tree({"id": "0"}, [1, 2])
    a = add(t, 0, 3)
    add(t, a, 2)      # response 1: 3 + 2 = 5 tokens
    add(t, 0, 7)      # response 2: 7 tokens
    f1 = t.record_fork(0)  # at the root: prefix 0, responses below (5 + 7) / 2 = 6
    add(t, 0, 4)
    f2 = t.record_fork(a)  # prefix 3; below a only response 1 (5 tokens): position 3/5
    add(t, a, 1)           # response 4 tokens
    f3 = t.record_fork(a)  # prefix 3; below a: 5 and 4 tokens, mean 4.5: position 3/4.5 = 2/3
    add(t, a, 6)
    assert (f1.node, f1.prefix_tokens, f1.response_tokens) == (0, 0, 6.0)
    assert (f2.prefix_tokens, f2.response_tokens) == (3, 5.0)
    assert (f3.prefix_tokens, f3.response_tokens) == (3, 4.5)
    assert t.forks == [f1, f2, f3]
    st = fork_stats([t])
    assert st["n_forks"] == 3
    assert st["fork_root_share"] == pytest.approx(1 / 3)
    assert st["fork_position"] == pytest.approx((0 + 3 / 5 + 2 / 3) / 3)  # 0.4222
    assert st["tokens_per_problem"] == 3 + 2 + 7 + 4 + 1 + 6 == 23

    plain = Tree({"id": "1"}, [1])
    add(plain, 0, 10)  # no forks; 10 tokens
    both = fork_stats([t, plain])  # forks pooled over trees, tokens averaged per tree
    assert both["n_forks"] == 3 and both["fork_position"] == pytest.approx(st["fork_position"])
    assert both["tokens_per_problem"] == (23 + 10) / 2
    assert fork_stats([plain]) == {"fork_root_share": None, "fork_position": None, "tokens_per_problem": 10,
                                   "n_forks": 0}
    # summaries gathered from several processes combine into the statistics of all their trees
    assert combine([tree_forks(plain)] + [tree_forks(t)]) == both


@pytest.mark.parametrize("B0,L,K,B", [(4, 9, 1, 1), (2, 3, 2, 3)])
def test_ibtree_records_one_fork_per_pick_of_rounds_2_to_L(tok, B0, L, K, B):
    ctx = RolloutContext(StepBackend(tok), tok, AlwaysRight(), SamplingParams(max_new_tokens=50))
    for selection in ("ib", "random"):
        for t in IBTreeSampler(B0, L, K, B, selection=selection).sample(PROBLEMS, ctx, seed=1):
            assert len(t.forks) == (L - 1) * K  # once per pick, whatever B; round 1 is no fork
            for f in t.forks:
                # every StepBackend response is 8 tokens "1\n\n" "2\n\n" "3<eos>": forks after 0, 3 or 6
                assert f.response_tokens == 8.0 and f.prefix_tokens in (0, 3, 6)
                assert f.prefix_tokens == len(t.prefix_ids(f.node)) - len(t.prompt_ids)
                assert (f.node == 0) == (f.prefix_tokens == 0)


def test_chains_record_no_forks(tok):
    ctx = RolloutContext(StepBackend(tok), tok, AlwaysRight(), SamplingParams(max_new_tokens=50))
    trees = ChainSampler(G=4).sample(PROBLEMS, ctx, seed=0)
    assert all(t.forks == [] for t in trees)
    st = fork_stats(trees)
    assert st["n_forks"] == 0 and st["fork_root_share"] is None and st["fork_position"] is None
    assert st["tokens_per_problem"] == 4 * 8


def test_eptree_records_its_forks_by_hand(tok):
    # as in test_treerl: the allowed lowest log-probs sit at response positions 2 and 4 of the
    # 19-token response "xyzw the answer 42"<eos>; forks are recorded on the prefix node before them
    resp = "xyzw the answer 42"
    r_at = resp.index("answer") + 5
    lps = {0: -20.0, 2: -5.0, 4: -4.0, r_at + 2: -30.0, r_at + 3: -25.0}
    ctx = RolloutContext(CharBackend(tok, resp, lambda k: lps.get(k, -0.01)), tok, AlwaysRight(),
                         SamplingParams(max_new_tokens=64))
    t = EPTreeSampler(M=1, N=2, L=1, T=1).sample([{"id": "0", "problem": "Q0", "answer": "4"}], ctx, seed=0)[0]
    assert sorted((f.prefix_tokens, f.response_tokens) for f in t.forks) == [(2, 19.0), (4, 19.0)]
    st = fork_stats([t])
    assert st["fork_root_share"] == 0.0  # EPTree never forks at the root (the M chains are not forks)
    assert st["fork_position"] == pytest.approx((2 / 19 + 4 / 19) / 2)


@pytest.mark.parametrize("M,N,L,T", [(2, 2, 1, 1), (2, 2, 2, 2)])
def test_eptree_records_one_fork_per_position(tok, M, N, L, T):
    ctx = RolloutContext(CharBackend(tok, "abcdefghijkl", lambda k: -0.1 * ((k * 7) % 5 + 1)), tok, AlwaysRight(),
                         SamplingParams(max_new_tokens=50))
    for t in EPTreeSampler(M, N, L, T).sample(PROBLEMS, ctx, seed=0):
        assert len(t.forks) == M * N * L  # once per fork, whatever T
        # every response is 13 tokens; later splits do not change a record
        assert all(f.node != 0 and 1 <= f.prefix_tokens <= 12 and f.response_tokens == 13.0 for f in t.forks)


def test_trainer_logs_fork_statistics_only_for_tree_samplers(tok, tmp_path):
    logged = {}
    for name, sampler in (("chains", None), ("tree", IBTreeSampler(2, 3, 1, 1, selection="random"))):
        tr = make_trainer(tok, tmp_path / name, steps=1)
        if sampler is not None:
            tr.sampler = sampler  # the trainer reports what the trees carry, whatever made them
        lines = []
        tr.log = lines.append
        tr.fit()
        logged[name] = (json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0]), lines[-1])
    chains, line = logged["chains"]
    assert not set(FORK_KEYS) & set(chains) and "fork root=" not in line
    assert chains["tokens_per_problem"] == chains["gen_tokens"] / 4
    tree, line = logged["tree"]
    assert tree["n_forks"] == 4 * 2  # 4 problems, rounds 2..3, K = 1
    assert 0.0 <= tree["fork_root_share"] <= 1.0 and 0.0 <= tree["fork_position"] <= 1.0
    assert tree["tokens_per_problem"] == tree["gen_tokens"] / 4
    assert f"fork root={100 * tree['fork_root_share']:.0f}% pos={tree['fork_position']:.2f}" in line


def test_step_fork_statistics_pool_every_process(tok, tmp_path, monkeypatch):
    """``_rollout_stats`` carries each tree's fork summary through the gather over processes."""
    tr = make_trainer(tok, tmp_path, steps=1)
    ctx = RolloutContext(StepBackend(tok), tok, AlwaysRight(), SamplingParams(max_new_tokens=50))
    mine = IBTreeSampler(2, 3, 1, 1, selection="random").sample(PROBLEMS[:2], ctx, seed=1)
    other = IBTreeSampler(2, 5, 1, 1, selection="random").sample(PROBLEMS[2:], ctx, seed=2)
    other_rows = [{"pos": 1 + 2 * i, "forks": tree_forks(t)} for i, t in enumerate(other)]
    monkeypatch.setattr("ibtpo.trainer.gather_object", lambda local: local + other_rows)  # a second process
    roll = tr._rollout_stats([0, 2], mine, [])
    assert combine([r["forks"] for r in roll]) == fork_stats(mine + other)
    assert fork_stats(mine + other)["n_forks"] == 2 * 2 + 1 * 4


def test_fork_figure_from_run_logs(tmp_path):
    from ibtpo.jobs import figures

    logs = {}
    for m, forks in (("grpo", False), ("ibtpo", True), ("eptree", True)):
        logs[m] = {}
        for s in (0, 1):
            path = tmp_path / f"{m}{s}.jsonl"
            rows = [{"step": i, **({"fork_position": 0.1 * i + 0.05 * s, "fork_root_share": 0.5, "n_forks": 8}
                                   if forks else {})} for i in range(1, 5)]
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            logs[m][s] = str(path)
    written = figures.plot_forks(logs, {"ibtpo": "IB-TPO"}, tmp_path, "fixture")
    assert [p.name for p in written] == ["fork_position.png", "fork_position.svg"]
    svg = (tmp_path / "fork_position.svg").read_text()
    assert "IB-TPO (n=2)" in svg and "eptree (n=2)" in svg and "grpo" not in svg  # chains are left out
    # a run without any tree method still gets the declared figure
    (tmp_path / "e").mkdir()
    assert all(p.stat().st_size > 1000
               for p in figures.plot_forks({"grpo": logs["grpo"]}, {}, tmp_path / "e", "fixture"))


def test_table3_has_fork_columns_for_tree_samplings(tok, tmp_path):
    from ibtpo.config import load_config
    from ibtpo.data.problems import write_jsonl
    from ibtpo.jobs import table3
    from ibtpo.model.tiny import build_tiny_llama

    cfg = load_config("smoke")
    ck = tmp_path / "ck"
    build_tiny_llama(tok, n_layer=1, d_model=32, n_head=2, d_mlp=64, seed=0).save_pretrained(ck)
    tok.save_pretrained(ck)
    write_jsonl(tmp_path / "p.jsonl",
                [{"id": f"q{i}", "problem": f"Compute {i}+1.", "answer": str(i + 1)} for i in range(3)])
    samplings = [("independent", {"name": "chains", "G": 2}),
                 ("random branching", {"name": "random_tree", "B0": 2, "L": 2, "K": 1, "B": 1}),
                 ("entropy-guided", {"name": "eptree", "M": 1, "N": 1, "L": 1, "T": 1})]
    df = table3.run(cfg, {"base": str(ck), "trained": str(ck)}, str(tmp_path / "p.jsonl"), tmp_path / "t3.csv",
                    n_problems=3, samplings=samplings, details_json=tmp_path / "d.json")
    assert len(df) == 2 * 3
    chains = df[df["sampling"] == "independent"]
    assert chains["fork_root_share"].isna().all() and chains["fork_position"].isna().all()
    rand = df[df["sampling"] == "random branching"]  # one pick per problem, the root always a candidate
    assert rand["fork_root_share"].between(0, 100).all() and rand["fork_position"].between(0, 100).all()
    ept = df[df["sampling"] == "entropy-guided"]["fork_root_share"]  # EPTree never forks at the root
    assert ((ept == 0) | ept.isna()).all()
    csv = (tmp_path / "t3.csv").read_text().splitlines()[0].split(",")
    assert "fork_root_share" in csv and "fork_position" in csv and "fork_position" in (tmp_path / "t3.md").read_text()
    det = json.loads((tmp_path / "d.json").read_text())
    assert [d["n_forks"] for d in det][:2] == [0, 3] and det[0]["fork_position"] is None and det[2]["n_forks"] <= 3
    assert 0 <= det[1]["fork_position"] <= 1
