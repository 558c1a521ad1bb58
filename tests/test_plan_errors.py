"""Issue 24, items 4 and 5: errors before compute, one line each. Benchmark names that collide after
sanitising, an external ``path`` that is not a checkpoint, ``python -m ibtpo`` config and data errors
without a traceback, and the context budget (prompt + generation budget within the model's positions)
at ``make_data`` and at the start of an evaluation job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ibtpo.config import ConfigError, checkpoint_problem, load_config
from ibtpo.data import context_budget as cb
from ibtpo.data.problems import DataError
from ibtpo.jobs import make_data
from ibtpo.model.tokenizer import build_char_tokenizer

REPO = Path(__file__).resolve().parents[1]
LONG = "x" * 300  # 301 prompt tokens with "{problem}\n": over the smoke base's 256 - 64


def fake_checkpoint(d: Path, positions: int | None = 64, weights: bool = True) -> Path:
    """A directory with what the checks read: the char tokenizer, a config.json and (empty) weights."""
    d.mkdir(parents=True, exist_ok=True)
    build_char_tokenizer().save_pretrained(d)
    (d / "config.json").write_text(json.dumps({"model_type": "llama", **({"max_position_embeddings": positions}
                                                                        if positions else {})}))
    if weights:
        (d / "model.safetensors").write_bytes(b"")
    return d


def jsonl(path: Path, problems: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": p, "answer": "1"}) + "\n"
                            for i, p in enumerate(problems)))
    return path


# ------------------------------------------------------------------------------------------- 5a


def test_benchmark_names_that_collide_after_sanitising_are_refused_naming_both():
    bench = {"my bench": {"source": "arithmetic", "n": 4, "seed": 1}, "my_bench": {"source": "arithmetic", "n": 4}}
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides={"data": {"benchmarks": bench},
                                        "evaluation": {"benchmarks": ["my bench", "my_bench"]}})
    assert str(e.value).splitlines()[1:] == [
        "  evaluation.benchmarks: 'my bench' and 'my_bench' collide after sanitising (both become lm-eval task "
        "'ibtpo_my_bench'); rename one under data.benchmarks"]


# ------------------------------------------------------------------------------------------- 5b


def test_an_external_path_that_is_not_a_checkpoint_is_one_line_at_planning(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides={"external": {"mine": {"path": str(tmp_path / "empty")}}})
    assert str(e.value).splitlines()[1:] == [
        f"  external.mine.path: {tmp_path / 'empty'} is not a checkpoint directory: no config.json; no weights "
        "(*.safetensors / pytorch_model*.bin / *.safetensors.index.json); no tokenizer files (tokenizer.json / "
        "tokenizer_config.json / tokenizer.model / vocab.json) (expected what save_pretrained writes)"]
    (tmp_path / "f.bin").write_bytes(b"")
    assert checkpoint_problem(tmp_path / "f.bin") == f"{tmp_path / 'f.bin'} is a file, not a checkpoint directory"
    with pytest.raises(ConfigError, match=r"external.gone.path: /nowhere/ckpt not found \(a path under results_dir"):
        load_config("smoke", overrides={"external": {"gone": {"path": "/nowhere/ckpt"}}})
    # a checkpoint directory, and a DAG output not built yet (under results_dir), are fine
    ok = fake_checkpoint(tmp_path / "ckpt")
    cfg = load_config("smoke", overrides={"external": {"a": {"path": str(ok)}, "b": {"path": "results/smoke/base"}}})
    assert set(cfg["external"]) == {"a", "b"}
    with pytest.raises(ConfigError, match=r"policy.base: .*empty is not a checkpoint directory: no config.json"):
        load_config("smoke", overrides={"policy": {"base": str(tmp_path / "empty")}})


# ------------------------------------------------------------------------------------------- 5c


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ibtpo", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_config_and_data_errors_of_a_job_are_lines_on_stderr_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: smoke\ntrain: {steps: 0}\n")
    r = run_cli("--config", str(bad), "make-data", "--out-dir", str(tmp_path / "out"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [f"python -m ibtpo make-data: error: {bad}: invalid configuration:",
                                     "  train.steps: 0 is less than the minimum of 1"]
    r = run_cli("--config", str(tmp_path / "nope.yaml"), "evaluate", "--checkpoint", "x", "--bench-dir", "b",
                "--out-dir", "o")
    assert r.returncode == 1
    assert r.stderr == f"python -m ibtpo evaluate: error: {tmp_path / 'nope.yaml'}: config file not found\n"


# ------------------------------------------------------------------------------------------- 4


def test_prompt_lengths_and_overlong_ids():
    tok = build_char_tokenizer()
    assert cb.prompt_lengths(["ab", "abcd"], tok, "Q: {problem}\n") == [6, 8]
    assert cb.overlong(["a", "b"], [6, 8], positions=12, max_new_tokens=5) == [("b", 8)]
    assert cb.config_positions({"text_config": {"max_position_embeddings": 9}}) == 9
    assert cb.config_positions({}) is None


def smoke_with(tmp_path: Path, problems: list[str], **over) -> dict:
    f = jsonl(tmp_path / "long.jsonl", problems)
    data = {"benchmarks": {"long": {"source": "jsonl", "path": str(f)}}}
    return load_config("smoke", overrides={"data": data, "evaluation": {"benchmarks": ["long"], **over}})


def test_make_data_refuses_prompts_over_the_built_base_positions_with_count_and_ids(tmp_path):
    cfg = smoke_with(tmp_path, ["1+1?", LONG, LONG + "y"])
    with pytest.raises(DataError) as e:
        make_data.run(cfg, tmp_path / "out")
    assert ("data.benchmarks.long: 2 of 3 prompts do not fit the built base (policy.arch.max_positions): prompt "
            "tokens + evaluation.max_new_tokens (64) > its 256 positions, i.e. prompts over 192 tokens (first: "
            "'q1' (301 tokens), 'q2' (302 tokens)); shorten prompt_template") in str(e.value)
    assert not (tmp_path / "out").exists()  # nothing was written
    # skip: logged, the data are written (the evaluation leaves them out and counts them)
    make_data.run(smoke_with(tmp_path, ["1+1?", LONG], overlong="skip"), tmp_path / "out")
    assert (tmp_path / "out" / "bench" / "long.jsonl").exists()


def test_make_data_checks_the_training_set_with_rollout_budget_and_external_checkpoints(tmp_path, capsys):
    f = jsonl(tmp_path / "train.jsonl", ["1+1?", LONG])
    with pytest.raises(DataError, match=r"data.train: 1 of 2 prompts do not fit the built base .* "
                                        r"rollout.max_new_tokens \(64\) .* \(first: 'q1' \(301 tokens\)\)"):
        make_data.run(load_config("smoke", overrides={"data": {"train": {"source": "jsonl", "path": str(f)}}}),
                      tmp_path / "out")
    ext = fake_checkpoint(tmp_path / "ext", positions=80)  # 80 - 64: prompts over 16 tokens do not fit
    cfg = load_config("smoke", overrides={"external": {"small": {"path": str(ext)}},
                                          "data": {"benchmarks": {"arith_ops2": {"n": 3}}}})
    with pytest.raises(DataError, match=rf"data.benchmarks.arith_ops2: 2 of 3 prompts do not fit external.small "
                                        rf"\({ext}\): .* > its 80 positions"):
        make_data.run(cfg, tmp_path / "out")


def test_the_evaluation_job_checks_its_checkpoint_before_generating(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "ckpt", positions=100)  # prompts over 100 - 64 = 36 tokens do not fit
    bench = {"b": {"path": str(jsonl(tmp_path / "b.jsonl", ["1+1?", "y" * 40, "2+2?"]))}}
    cfg = smoke_with(tmp_path, ["1+1?"])
    with pytest.raises(DataError) as e:
        cb.fit_evaluation(cfg, str(ckpt), bench, tmp_path / "o")
    assert str(e.value).splitlines()[1].startswith(
        f"  evaluation.benchmarks: b ({tmp_path / 'b.jsonl'}): 1 of 3 prompts do not fit checkpoint {ckpt}: prompt "
        "tokens + evaluation.max_new_tokens (64) > its 100 positions, i.e. prompts over 36 tokens (first: 'q1' (41 ")
    cfg["evaluation"]["overlong"] = "skip"
    out, notes = cb.fit_evaluation(cfg, str(ckpt), bench, tmp_path / "o")
    assert [json.loads(x)["id"] for x in Path(out["b"]["path"]).read_text().splitlines()] == ["q0", "q2"]
    assert notes == {"b": {"overlong_skipped": {"count": 1, "of": 3, "positions": 100, "max_new_tokens": 64,
                                                "ids": ["q1"]}}}
    # a checkpoint without max_position_embeddings is not checked (logged)
    assert cb.fit_evaluation(cfg, str(fake_checkpoint(tmp_path / "nopos", None)), bench, tmp_path / "o")[1] == {}


def test_the_training_budget_is_the_vllm_max_model_len_where_it_caps_the_base():
    cfg = {"rollout": {"backend": "vllm", "vllm": {"max_model_len": 4096}}}
    assert cb.rollout_positions(cfg, 32768, "policy.base 'Q'") == (4096, "policy.base 'Q' under "
                                                                          "rollout.vllm.max_model_len")
    assert cb.rollout_positions({"rollout": {"backend": "hf"}}, 512, "b") == (512, "b")



def test_a_checkpoint_whose_tokenizer_does_not_load_is_one_line_at_the_evaluation_start(tmp_path):
    d = tmp_path / "notok"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 64}))
    with pytest.raises(DataError, match=rf"^evaluate: checkpoint {d}: its tokenizer does not load \(\w+: .*\)$"):
        cb.fit_evaluation(smoke_with(tmp_path, ["1+1?"]), str(d), {}, tmp_path / "o")
