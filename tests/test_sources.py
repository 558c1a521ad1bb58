"""Bring your own data set: every source the schema names (jsonl, parquet, hf) with the field
mapping, answers that cannot silently grade wrong (lists, ``$...$``, the gold self-check, control
characters from one-backslash LaTeX), the hub at planning time, and a UTF-8 BOM. Never touches the
network: hub loads are monkeypatched, planning runs with ``HF_HUB_OFFLINE=1``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ibtpo.config import ConfigError, load_config
from ibtpo.data import benchmarks as bm
from ibtpo.data import golds, sources
from ibtpo.data.problems import DataError, load_problems
from ibtpo.jobs import make_data

REPO = Path(__file__).resolve().parents[1]

# The same content for a JSONL and a parquet file: list answers (one- and two-element), LaTeX written
# correctly escaped, $...$ / $$...$$ wrappers, no id column. Expected golds written out by hand.
ROWS = [
    {"question": "Half of one?", "final_answer": ["\\frac{1}{2}"]},
    {"question": "One plus one?", "final_answer": ["2"]},
    {"question": "The side of a square of area 2?", "final_answer": ["$\\sqrt{2}$"]},
    {"question": "The circumference of a circle of diameter 3?", "final_answer": ["$$3\\pi$$"]},
    {"question": "Solve (x-2)(x-3)=0.", "final_answer": ["2", "3"]},
    {"question": "Twenty-seven?", "final_answer": ["27"]},
]
GOLDS = ["\\frac{1}{2}", "2", "\\sqrt{2}", "3\\pi", "2, 3", "27"]


def _cfg(tmp_path, bench: dict, **data) -> dict:
    """A bare config as make_data.run takes it (the data section gets the schema's defaults there)."""
    return {"data_dir": str(tmp_path), "data": {"train": {"source": "arithmetic", "n": 3, "seed": 1,
                                                          "spec": {"n_ops": [2]}},
                                                "benchmarks": bench, **data}}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read_out(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_file_sources_map_fields_normalise_answers_and_make_ids(tmp_path, capsys, fmt):
    f = tmp_path / f"mine.{fmt}"
    if fmt == "jsonl":
        _write_jsonl(f, ROWS)
    else:
        pd.DataFrame(ROWS).to_parquet(f)
    bench = {"mine": {"source": fmt, "path": f.name, "problem_field": "question", "answer_field": "final_answer"}}
    written = make_data.run(_cfg(tmp_path, bench), tmp_path / "out")
    rows = _read_out(written["mine"])
    assert [r["id"] for r in rows] == [f"mine-{i:04d}" for i in range(6)]
    assert [r["problem"] for r in rows] == [r["question"] for r in ROWS]
    assert [r["answer"] for r in rows] == GOLDS
    log = capsys.readouterr().out
    assert "mine: 6 row(s) without an id got one made from the row number" in log
    assert "mine: 1 answer(s) are lists of several values" in log
    assert "mine: gold check: 6/6 golds (6 distinct) grade correct" in log and "0 row(s) with control" in log
    assert load_problems(written["mine"])[0]["answer"] == "\\frac{1}{2}"  # what train/evaluate read back


def test_dotted_fields_chat_prompts_and_ids_in_parquet(tmp_path):
    """DAPO's layout through ``source: parquet``: a chat message list, a nested answer and a nested id."""
    df = pd.DataFrame([{"prompt": [{"role": "user", "content": "What is 6*7?"}],
                        "reward_model": {"ground_truth": "42", "style": "rule"}, "extra_info": {"index": 7}},
                       {"prompt": [{"role": "user", "content": "What is 2^5?"}],
                        "reward_model": {"ground_truth": "32", "style": "rule"}, "extra_info": {"index": 9}}])
    df.to_parquet(tmp_path / "d.parquet")
    ds = {"source": "parquet", "path": "d.parquet", "problem_field": "prompt",
          "answer_field": "reward_model.ground_truth", "id_field": "extra_info.index"}
    rows, info = sources.entry_rows(ds, tmp_path, "d", "data.train")
    assert [(r["id"], r["problem"], r["answer"]) for r in rows] == [("7", "What is 6*7?", "42"),
                                                                   ("9", "What is 2^5?", "32")]
    assert info["made_ids"] == 0 and info["origin"] == str((tmp_path / "d.parquet").resolve())
    # an id_field that is given must be there: the error names the file and the row
    with pytest.raises(DataError, match=r"d.parquet: row 1: missing id field 'extra_info.idx'"):
        sources.entry_rows({**ds, "id_field": "extra_info.idx"}, tmp_path, "d", "data.train")


def test_answer_normalisation_rules():
    n = golds.normalise_answer
    assert n(["2"], False, "w") == "2" and n(("2",), True, "w") == "2"
    assert n(["$x=1$", "$x=2$"], False, "w") == "x=1, x=2"
    assert n("$\\frac{1}{2}$", False, "w") == "\\frac{1}{2}" and n(" $$ 5 $$ ", True, "w") == "5"
    assert n("\\(3\\)", False, "w") == "3" and n("\\[ 4 \\]", False, "w") == "4"
    assert n("$1$ and $2$", False, "w") == "$1$ and $2$"  # not one wrapped expression: kept
    assert n(27.0, True, "w") == "27" and n([27.0], True, "w") == "27" and n(0.5, False, "w") == "0.5"
    with pytest.raises(DataError, match=r"f: row 2: missing answer \(empty list\)"):
        n([], False, "f: row 2")
    with pytest.raises(DataError, match=r"f: row 3: answer \['1', '2'\] is a list of 2 values"):
        n(["1", "2"], True, "f: row 3")
    with pytest.raises(DataError, match=r"f: row 4: empty answer"):
        n("$ $", False, "f: row 4")



def test_several_dollar_groups_separated_by_commas_are_one_answer_of_several_values():
    """OlympiadBench id 2349's ``$221,$8$`` (the comma slipped inside): kept whole it failed the gold
    self-check; read as ``221, 8`` it grades ``\\boxed{221,8}`` correct and ``\\boxed{221}`` wrong."""
    from ibtpo.grading import Grader

    n = golds.normalise_answer
    assert n("$221,$8$", False, "w") == "221, 8" and n(["$221$, $8$"], False, "w") == "221, 8"
    assert n("$(1,2)$, $(3,4)$", False, "w") == "(1, 2), (3, 4)"
    for kept in ("$1$ and $2$", "$1,$$2$", "$1$,$$,$2$"):
        assert n(kept, False, "w") == kept
    with Grader(timeout_s=10.0) as grader:
        gold = n("$221,$8$", False, "w")
        assert [grader.grade(gold, p) for p in ("\\boxed{221,8}", "\\boxed{8, 221}", "\\boxed{221}")] == \
            [True, True, False]
        assert golds.gold_failures([{"id": "2349", "answer": gold}], grader) == ([], 0)

def test_control_characters_and_their_likely_cause():
    f = golds.control_char_findings
    assert f("\x0crac{1}{2}") == ['U+000C before \'rac\': likely \\frac written with one backslash in JSON or a '
                                  'Python string ("\\f" is a form feed); write \\\\frac']
    for text, cmd in (("2 \times 3", "times"), ("\boxed{5}", "boxed"), ("\\left( x \right)", "right"),
                      ("$\nabla f$", "nabla"), ("\vec{v}", "vec"), ("$\triangle ABC$", "triangle")):
        (finding,) = f(text)
        assert f"likely \\{cmd} written with one backslash" in finding and f"write \\\\{cmd}" in finding, text
    # ordinary whitespace is not flagged: tabs in Asymptote code and between words, lines starting with a letter
    for fine in ("real f(real x)\n{\n\treturn 2*sin(x);\n}", "have\tequal\tperimeters", "Let\ne = 2.7", "a\r\nb"):
        assert f(fine) == [], fine
    assert f("x \x14 2y") == ["control character U+0014 in 'x \\x14 2y'"]


def test_a_single_backslash_frac_is_flagged_with_its_row_and_cause(tmp_path):
    f = tmp_path / "bad.jsonl"
    # written by hand, as a person types LaTeX into JSON with one backslash: "\f" is a form feed
    f.write_text('{"id": "q1", "problem": "What is 1+1?", "answer": "2"}\n'
                 '{"id": "q7", "problem": "What is \\frac{1}{2} + \\frac{1}{2}?", "answer": "1"}\n')
    assert "\x0crac" in load_problems(f)[1]["problem"]  # what JSON made of it
    cfg = _cfg(tmp_path, {"b": {"source": "jsonl", "path": "bad.jsonl"}})
    with pytest.raises(DataError) as e:
        make_data.run(cfg, tmp_path / "out")
    msg = str(e.value)
    assert "data.benchmarks.b (" + str(f.resolve()) + "): 1 of 2 rows hold control characters" in msg
    assert "id 'q7': problem: U+000C before 'rac': likely \\frac written with one backslash" in msg
    assert "write \\\\frac (+1 more in this row)" in msg and "data.benchmarks.b.gold_check: warn" in msg
    assert not (tmp_path / "out").exists()  # nothing written


def test_gold_self_check_counts_names_and_obeys_the_switch(tmp_path, capsys):
    rows = [{"id": "a", "problem": "p1", "answer": "\\frac{1}{2}"},
            {"id": "b", "problem": "p2", "answer": "\\frac{1}{"},   # truncated: no completion can match it
            {"id": "c", "problem": "p3", "answer": "}{"}]
    f = _write_jsonl(tmp_path / "g.jsonl", rows)
    bench = {"g": {"source": "jsonl", "path": "g.jsonl"}}
    with pytest.raises(DataError) as e:
        make_data.run(_cfg(tmp_path, bench), tmp_path / "out")  # data.gold_check defaults to fail
    msg = str(e.value)
    assert f"data.benchmarks.g ({f.resolve()}): 2 of 3 gold answers are graded wrong against themselves" in msg
    assert "id 'b' (gold '\\\\frac{1}{')" in msg and "id 'c' (gold '}{')" in msg and "id 'a'" not in msg
    assert not (tmp_path / "out").exists()
    capsys.readouterr()
    # warn: the same findings are logged and the rows written as they are
    for cfg in (_cfg(tmp_path, bench, gold_check="warn"),
                _cfg(tmp_path, {"g": {**bench["g"], "gold_check": "warn"}})):  # the set's own switch wins
        written = make_data.run(cfg, tmp_path / "out")
        assert [r["answer"] for r in _read_out(written["g"])] == [r["answer"] for r in rows]
        log = capsys.readouterr().out
        assert "warning (gold_check: warn): data.benchmarks.g" in log and "2 of 3 gold answers" in log
    # the set's own fail beats data.gold_check: warn
    with pytest.raises(DataError, match="2 of 3 gold answers"):
        make_data.run(_cfg(tmp_path, {"g": {**bench["g"], "gold_check": "fail"}}, gold_check="warn"),
                      tmp_path / "out2")


def test_the_make_data_job_exits_with_the_message_not_a_traceback(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"problem": "\\\\frac12 of 1?", "answer": "\\\\frac{1}{"}\n')
    conf = tmp_path / "mine.yaml"
    conf.write_text(f"extends: smoke\ndata_dir: {tmp_path}\ndata:\n  benchmarks:\n"
                    "    mine: {source: jsonl, path: bad.jsonl}\n")
    r = subprocess.run([sys.executable, "-m", "ibtpo", "--config", str(conf), "make-data", "--out-dir",
                        str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "[make-data] error: make_data: the data do not pass their checks" in r.stderr
    assert "data.benchmarks.mine" in r.stderr and "1 of 1 gold answers" in r.stderr


def test_utf8_bom_is_accepted(tmp_path):
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + b'{"id": "x", "problem": "What is 3*3?", "answer": "9"}\n')
    assert load_problems(f)[0]["id"] == "x"
    rows, _ = sources.entry_rows({"source": "jsonl", "path": str(f)}, "/nowhere", "bom", "data.train")
    assert [(r["id"], r["answer"]) for r in rows] == [("x", "9")]


def test_invalid_escape_names_the_row_and_the_fix(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text('{"problem": "ok", "answer": "1"}\n{"problem": "What is \\sqrt{4}?", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"e.jsonl: row 2: invalid JSON \(Invalid \\escape\) -- a single backslash"):
        sources.entry_rows({"source": "jsonl", "path": str(f)}, tmp_path, "e", "data.train")


# ----------------------------------------------------------------------------------- the hub


HF_BENCH = {"hubset": {"source": "hf", "hf_id": "someorg/someset", "config": "main", "split": "test",
                       "problem_field": "question", "answer_field": "final_answer"}}
FETCH = ("python -c \"import datasets; datasets.load_dataset('someorg/someset', 'main', split='test')"
         ".to_json('hubset.jsonl')\"")


def test_hf_offline_fails_at_planning_with_the_command_to_fetch_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config("tiny", overrides={"data": {"benchmarks": HF_BENCH}})
    assert bm.needs_hub(cfg["data"]["benchmarks"]["hubset"])
    with pytest.raises(DataError) as e:
        bm.check_hub_access(cfg)
    msg = str(e.value)
    assert "hub is not reachable (HF_HUB_OFFLINE=1)" in msg and "only on the hub: someorg/someset" in msg
    assert FETCH in msg and "then give data.benchmarks.hubset the copy: path:" in msg
    assert "(keys: data.benchmarks.hubset)" in msg and "offline_benchmarks=skip" in msg
    bm.check_hub_access({**cfg, "offline_benchmarks": "defer"})  # defer: plan now
    skipped = load_config("tiny", overrides={"data": {"benchmarks": HF_BENCH}, "offline_benchmarks": "skip"})
    assert "hubset" not in skipped["data"]["benchmarks"]  # skip drops a hub-only benchmark ...
    bm.check_hub_access(skipped)
    train = load_config("tiny", overrides={"data": {"train": HF_BENCH["hubset"]}, "offline_benchmarks": "skip"})
    with pytest.raises(DataError, match=r"(?s)only on the hub: someorg/someset.*Or --config offline_benchmarks=defer"
                                        r".*keys: data.train"):
        bm.check_hub_access(train)  # ... but not the training set
    with_copy = load_config("tiny", overrides={"data": {"benchmarks": {"hubset": {**HF_BENCH["hubset"],
                                                                                  "path": "math500/test.jsonl"}}}})
    assert not bm.needs_hub(with_copy["data"]["benchmarks"]["hubset"])
    bm.check_hub_access(with_copy)  # a local copy: nothing needed from the hub


@pytest.mark.slow
def test_snakemake_plan_fails_offline_for_an_hf_source(tmp_path):
    (tmp_path / "results").mkdir()
    conf = tmp_path / "hf.yaml"
    conf.write_text("extends: smoke\ndata:\n  benchmarks:\n    hubset: " + json.dumps(HF_BENCH["hubset"]) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(tmp_path), "-n", "--cores", "1", "results/table1.csv", "--configfile", str(conf)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and FETCH in out and "data.benchmarks.hubset" in out, out[-3000:]
    assert not (tmp_path / "results" / "smoke" / "data").exists()


def test_hf_source_loads_through_datasets_with_the_field_mapping(tmp_path, monkeypatch):
    import datasets

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    written = make_data.run(_cfg(tmp_path, HF_BENCH), tmp_path / "out")
    assert calls == [("someorg/someset", "main", "test")]
    rows = _read_out(written["hubset"])
    assert [r["answer"] for r in rows] == GOLDS and [r["id"] for r in rows] == [f"hubset-{i:04d}" for i in range(6)]
    # defer offline: make_data itself refuses, with the same command
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_DATASETS_OFFLINE=1") as e:
        make_data.run(_cfg(tmp_path, HF_BENCH), tmp_path / "out2")
    assert FETCH in str(e.value) and len(calls) == 1


def test_hf_source_with_a_local_copy_reads_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _write_jsonl(tmp_path / "hubset.jsonl", ROWS)  # what the fetch command writes
    bench = {"hubset": {**HF_BENCH["hubset"], "path": "hubset.jsonl"}}
    rows = _read_out(make_data.run(_cfg(tmp_path, bench), tmp_path / "out")["hubset"])
    assert [r["answer"] for r in rows] == GOLDS


@pytest.mark.parametrize("entry,message", [
    ({"source": "hf", "split": "test"}, r"data.benchmarks.x.hf_id: required for source 'hf'"),
    ({"source": "hf", "hf_id": "a/b"}, r"data.benchmarks.x.split: required for source 'hf' \(no default"),
    ({"source": "parquet"}, r"data.benchmarks.x.path: required for source 'parquet'"),
    ({"source": "jsonl", "path": "dapo_math_17k/dapo_math_17k.parquet"},
     r"data.benchmarks.x.path: dapo_math_17k.parquet looks like a parquet file; use source: parquet"),
    ({"source": "hf", "hf_id": "a/b", "split": "test", "path": "nowhere.jsonl"},
     r"data.benchmarks.x.path: data file .*nowhere.jsonl not found"),
    ({"source": "jsonl", "path": "math500/test.jsonl", "gold_check": "maybe"},
     r"data.benchmarks.x.gold_check: 'maybe' is not one of \['fail', 'warn'\]"),
])
def test_config_errors_name_the_key(entry, message):
    data_dir = os.environ.get("IBTPO_DATA_DIR") or str(REPO.parent / "shared" / "data")
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides={"data_dir": data_dir, "data": {"benchmarks": {"x": entry}}})


def test_evaluate_only_reads_no_training_set(tmp_path, capsys):
    """methods: [] trains nothing: make_data neither reads nor writes data.train (here a file that does not
    exist, which a training run refuses); the sft set only where the base is built."""
    from ibtpo.config import data_splits, load_config

    missing = {"source": "jsonl", "path": str(tmp_path / "no_such_train.jsonl")}
    cfg = load_config("smoke", overrides={"methods": [], "data": {"train": missing}})
    assert data_splits(cfg) == ["sft"]  # policy.base: build
    written = make_data.run(cfg, tmp_path / "out")
    assert "train" not in written and (tmp_path / "out" / "sft.jsonl").exists()
    assert not (tmp_path / "out" / "train.jsonl").exists()
    assert "data.train is not read" in capsys.readouterr().out
    assert data_splits(load_config("smoke")) == ["train", "sft"]
    with pytest.raises(ConfigError, match="data.train.path: data file .*no_such_train.jsonl not found"):
        load_config("smoke", overrides={"data": {"train": missing}})  # a run that trains: refused at once


def test_evaluate_only_asks_the_hub_for_no_training_set():
    """The planning-time hub check names only the sets the run reads: a hub-only data.train is needed by a
    training run, not by an evaluate-only one."""
    hub_train = {"source": "hf", "hf_id": "someone/train-set", "split": "train"}
    trained = {"methods": ["grpo"], "policy": {"base": "build"},
               "data": {"train": hub_train, "sft": {"source": "arithmetic", "n": 4}, "benchmarks": {}}}
    assert list(bm.hub_only_entries(trained)) == ["data.train"]
    assert bm.hub_only_entries({**trained, "methods": []}) == {}
