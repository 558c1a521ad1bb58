"""The registry of real problem sets (``ibtpo/data/benchmarks.py``): loaders, answer normalisation,
errors that name the file and row, the planning-time hub check and ``offline_benchmarks``."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from ibtpo.config import ConfigError, load_config
from ibtpo.data import benchmarks as bm
from ibtpo.data import golds
from ibtpo.data.problems import DataError

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("IBTPO_DATA_DIR") or REPO.parent / "shared" / "data")


def _raw(rel: str) -> list[dict]:
    return [json.loads(x) for x in (DATA_DIR / rel).read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("name,rel,n,id_field", [
    ("math500", "math500/test.jsonl", 500, "unique_id"),
    ("aime24", "aime24/test.jsonl", 30, "id"),
    ("aime25", "aime25/test.jsonl", 30, None),
    ("amc23", "amc23/test.jsonl", 40, "id"),
])
def test_local_benchmarks_load_with_their_fields(name, rel, n, id_field):
    rows, meta = bm.load_registry_rows({"source": "registry", "name": name}, DATA_DIR)
    raw = _raw(rel)
    assert len(rows) == len(raw) == n == meta["rows"]
    assert [r["problem"] for r in rows] == [r["problem"] for r in raw]
    expect_ids = [str(r[id_field]) for r in raw] if id_field else [f"{name}-{i:04d}" for i in range(n)]
    assert [r["id"] for r in rows] == expect_ids
    for r, x in zip(rows, raw):
        a = x["answer"]
        assert r["answer"] == (str(int(a)) if isinstance(a, float) else a.strip())
    assert meta["lm_eval_task"] is None and meta["origin"].endswith(rel)


def test_answer_normalisation():
    assert golds.normalise_answer(27.0, True, "w") == "27"
    assert golds.normalise_answer(" 073 ", True, "w") == "073"
    assert golds.normalise_answer(2.5, False, "w") == "2.5"
    assert golds.normalise_answer("\\frac{1}{2}", False, "w") == "\\frac{1}{2}"
    with pytest.raises(DataError, match=r"f.jsonl: row 3: answer '2.5' is not an integer"):
        golds.normalise_answer("2.5", True, "f.jsonl: row 3")
    for bad in (None, float("nan"), "  ", True):
        with pytest.raises(DataError, match="w: "):
            golds.normalise_answer(bad, False, "w")


def test_bad_rows_are_named_by_file_and_row(tmp_path):
    d = tmp_path / "data"
    (d / "aime24").mkdir(parents=True)
    f = d / "aime24" / "test.jsonl"
    f.write_text('{"id": 1, "problem": "p", "answer": "12"}\n{"id": 2, "problem": "q", "answer": "1/2"}\n')
    with pytest.raises(DataError, match=r"aime24/test.jsonl: row 2: answer '1/2' is not an integer"):
        bm.load_registry_rows({"source": "registry", "name": "aime24"}, d)
    f.write_text('{"id": 1, "problem": "p", "answer": "12"}\n{"id": 1, "problem": "q", "answer": "3"}\n')
    with pytest.raises(DataError, match=r"row 2: duplicated id '1'"):
        bm.load_registry_rows({"source": "registry", "name": "aime24"}, d)
    f.write_text('{"id": 1, "question": "p", "answer": "12"}\n')
    with pytest.raises(DataError, match=r"row 1: missing field 'problem' \(has \['answer', 'id', 'question'\]\)"):
        bm.load_registry_rows({"source": "registry", "name": "aime24"}, d)
    f.write_text('{"id": 1, "problem": "p", "answer": "12"}\nnot json\n')
    with pytest.raises(DataError, match=r"row 2: invalid JSON"):
        bm.load_registry_rows({"source": "registry", "name": "aime24"}, d)
    with pytest.raises(DataError, match=r"unknown registry source 'gsm8k'; known: \["):
        bm.load_registry_rows({"source": "registry", "name": "gsm8k"}, d)


def test_a_local_path_replaces_the_registry_file_or_the_hub(tmp_path):
    f = tmp_path / "amc24.jsonl"
    f.write_text('{"problem": "What is 1+1?", "answer": 2.0}\n{"problem": "Half of 1?", "answer": "\\\\frac12"}\n')
    entry = {"source": "registry", "name": "amc24", "path": "amc24.jsonl"}
    assert bm.needs_hub({"source": "registry", "name": "amc24"}) and not bm.needs_hub(entry)
    rows, meta = bm.load_registry_rows(entry, tmp_path, name="amc24")
    assert [(r["id"], r["answer"]) for r in rows] == [("amc24-0000", "2"), ("amc24-0001", "\\frac12")]
    assert meta["origin"] == str(f.resolve()) and meta["sha256"]


def test_hub_sources_are_never_fetched_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"hub is not reachable \(HF_HUB_OFFLINE=1\).*only on the hub: gpqa_diamond"):
        bm.load_registry_rows({"source": "registry", "name": "gpqa_diamond"}, "/nonexistent")


def _paper(**over):
    data_dir = {"data_dir": str(DATA_DIR)} if os.environ.get("IBTPO_DATA_DIR") else {}
    return load_config("paper-qwen3-8b", overrides={**data_dir, **over} or None)


def test_check_hub_access_asks_the_probe_only_when_it_matters():
    cfg = _paper()
    calls = []

    def unreachable():
        calls.append(1)
        return "no connection to huggingface.co:443 (test)"

    with pytest.raises(DataError) as e:
        bm.check_hub_access(cfg, probe=unreachable)
    msg = str(e.value)
    for name, hub in (("amc24", "evalscope/amc_22-24"), ("gpqa_diamond", "Idavidrein/gpqa"),
                      ("ifeval", "google/IFEval")):
        assert f"{name} (hub {hub}" in msg
    assert "data.benchmarks.gpqa_diamond" in msg and "path:" in msg and "no connection" in msg
    bm.check_hub_access(cfg, probe=lambda: None)  # reachable: fine
    n = len(calls)
    for mode in ("defer", "skip"):
        bm.check_hub_access({**cfg, "offline_benchmarks": mode}, probe=unreachable)
    assert len(calls) == n  # no probe for defer / skip
    tiny = load_config("tiny")
    bm.check_hub_access(tiny, probe=unreachable)  # nothing from the hub: no probe
    assert len(calls) == n


def test_offline_switches_count_as_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "true")
    assert bm.hub_unreachable() == "HF_DATASETS_OFFLINE=true"


def test_probe_connects_to_the_endpoint_or_its_proxy(monkeypatch):
    """Loopback only: a listening socket answers, a closed port does not; nothing is sent."""
    import socket

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"https://127.0.0.1:{port}")
        assert bm.hub_unreachable() is None
        monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        assert bm.hub_unreachable() is None  # the proxy answers for the hub
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")  # now closed
    assert bm.hub_unreachable(timeout_s=2).startswith(f"no connection to 127.0.0.1:{port}")


def test_skip_drops_hub_only_benchmarks_and_keeps_local_ones():
    cfg = _paper(offline_benchmarks="skip")
    assert cfg["evaluation"]["benchmarks"] == ["math500", "aime24", "aime25", "amc23"]
    assert sorted(cfg["data"]["benchmarks"]) == ["aime24", "aime25", "amc23", "math500"]
    full = _paper()
    cfg2, dropped = bm.drop_hub_only(copy.deepcopy(full))
    assert dropped == ["amc24", "gpqa_diamond", "ifeval"]
    full["data"]["benchmarks"]["amc24"]["path"] = "somewhere.jsonl"
    assert bm.drop_hub_only(copy.deepcopy(full))[1] == ["gpqa_diamond", "ifeval"]  # a local path is kept


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"data.benchmarks.math500.name: unknown registry source 'math5000'"):
        _paper(data={"benchmarks": {"math500": {"source": "registry", "name": "math5000"}}})
    with pytest.raises(ConfigError,
                       match=r"data.benchmarks.amc24.path: data file .*nowhere.jsonl of 'amc24' not found"):
        _paper(data={"benchmarks": {"amc24": {"source": "registry", "name": "amc24", "path": "nowhere.jsonl"}}})
    with pytest.raises(ConfigError,
                       match=r"data.train.name: data file .*dapo_math_17k.parquet of 'dapo_math_17k' not found"):
        _paper(data_dir="/nonexistent/data")
    with pytest.raises(ConfigError, match=r"offline_benchmarks: 'sometimes' is not one of \['fail', 'defer', 'skip'\]"):
        _paper(offline_benchmarks="sometimes")


def test_registry_names_the_lm_eval_task_of_each_benchmark():
    assert bm.lm_eval_task({"source": "registry", "name": "gpqa_diamond"}) == "gpqa_diamond_cot_zeroshot"
    assert bm.lm_eval_task({"source": "registry", "name": "ifeval"}) == "ifeval"
    assert bm.lm_eval_task({"source": "registry", "name": "math500"}) is None
    assert bm.lm_eval_task({"source": "registry", "name": "gpqa_diamond",
                            "lm_eval_task": "gpqa_diamond_generative_n_shot"}) == "gpqa_diamond_generative_n_shot"
