"""Answer extraction in the field mapping (``answer_field: {field, after | boxed | regex}``), the gold
check that catches a wrong mapping (golds that are whole solutions), and the one-line errors of bad
benchmark files (a JSON array read as JSONL, nested-list answers).

The excerpts below are written here by hand in the shapes of the public files: GSM8K's ``test.jsonl``
(``question``, ``answer`` = a worked solution ending in ``#### n``, numbers sometimes written
``1,234``, no id) and MATH's (``problem``, ``solution`` with the answer in its last ``\\boxed{}``,
``unique_id``).
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from ibtpo.config import ConfigError, load_config
from ibtpo.data import answer_rules, golds, sources
from ibtpo.data.problems import DataError, read_jsonl
from ibtpo.jobs import make_data

REPO = Path(__file__).resolve().parents[1]

GSM8K = [
    {"question": "Ann picked 48 apples in May and half as many in June. How many apples did she pick?",
     "answer": "In June she picked 48/2 = <<48/2=24>>24 apples.\nAltogether she picked 48+24 = <<48+24=72>>72 "
               "apples.\n#### 72"},
    {"question": "A shop sells 617 pens a day. How many pens does it sell in 2 days?",
     "answer": "It sells 617*2 = <<617*2=1234>>1,234 pens.\n#### 1,234"},
    {"question": "Tom has 12 marbles and gives away 7. How many are left?",
     "answer": "12-7 = <<12-7=5>>5 marbles are left.\n####5"},
    {"question": "The temperature was 4 degrees and fell by 7 degrees. What is it now?",
     "answer": "4-7 = <<4-7=-3>>-3.\n#### -3 "},
]
GSM8K_GOLDS = ["72", "1234", "5", "-3"]

MATH = [
    {"problem": "Compute $\\frac{1}{4} + \\frac{1}{4}$.",
     "solution": "We add: $\\frac{1}{4} + \\frac{1}{4} = \\boxed{\\frac{1}{2}}$.", "unique_id": "test/algebra/1.json"},
    {"problem": "Find the sum of the roots of $x^2 - 5x + 6 = 0$.",
     "solution": "The roots are $\\boxed{2}$ and $\\boxed{3}$, whose sum is $\\boxed{5}$.",
     "unique_id": "test/algebra/2.json"},
    {"problem": "Write $v$ as a column vector.",
     "solution": "So $v = \\boxed{\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}}.$", "unique_id": "test/precalc/3.json"},
    {"problem": "How many positive divisors does 12 have?",
     "solution": "They are 1, 2, 3, 4, 6, 12, so there are $\\boxed{6}$.", "unique_id": "test/number_theory/4.json"},
]
MATH_GOLDS = ["\\frac{1}{2}", "5", "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "6"]

AFTER = {"field": "answer", "after": "####"}
BOXED = {"field": "solution", "boxed": "last"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(tmp_path: Path, bench: dict, **data) -> dict:
    """A bare config as make_data.run takes it."""
    return {"data_dir": str(tmp_path), "data": {"train": {"source": "arithmetic", "n": 3, "seed": 1,
                                                          "spec": {"n_ops": [2]}},
                                                "benchmarks": bench, **data}}


def _answers(path: Path) -> list[str]:
    return [json.loads(x)["answer"] for x in path.read_text().splitlines() if x.strip()]


# -------------------------------------------------------------------------------------------
# extraction


def test_gsm8k_after_marker_through_make_data(tmp_path, capsys):
    _write(tmp_path / "gsm8k.jsonl", GSM8K)
    bench = {"gsm8k": {"source": "jsonl", "path": "gsm8k.jsonl", "problem_field": "question", "answer_field": AFTER}}
    written = make_data.run(_cfg(tmp_path, bench), tmp_path / "out")
    assert _answers(written["gsm8k"]) == GSM8K_GOLDS  # "#### 72", "1,234" -> "1234", "####5", "-3 "
    log = capsys.readouterr().out
    assert "gsm8k: gold check: 4/4 golds (4 distinct) grade correct" in log and "0 do not look like answers" in log


def test_math_last_boxed_and_a_regex(tmp_path):
    _write(tmp_path / "math.jsonl", MATH)
    ds = {"source": "jsonl", "path": "math.jsonl", "answer_field": BOXED, "id_field": "unique_id"}
    rows, _ = sources.entry_rows(ds, tmp_path, "math", "data.benchmarks.math")
    assert [r["answer"] for r in rows] == MATH_GOLDS and rows[1]["id"] == "test/algebra/2.json"
    assert rows[0]["solution"] == MATH[0]["solution"]  # the original fields are kept
    _write(tmp_path / "gsm8k.jsonl", GSM8K)
    ds = {"source": "jsonl", "path": "gsm8k.jsonl", "problem_field": "question",
          "answer_field": {"field": "answer", "regex": r"####\s*(-?[\d,]+)"}}
    rows, _ = sources.entry_rows(ds, tmp_path, "g", "data.benchmarks.g")
    assert [r["answer"] for r in rows] == GSM8K_GOLDS


def test_the_readme_rules_read_both_shapes(tmp_path):
    """The README recipe's GSM8K and MATH entries, as written there, on the excerpts above."""
    section = (REPO / "README.md").read_text().split("## Add a benchmark or a checkpoint", 1)[1].split("\n## ", 1)[0]
    block = yaml.safe_load(textwrap.dedent(re.findall(r"```yaml\n(.*?)```", section, re.S)[1]))
    for name, rows, gold in (("gsm8k", GSM8K, GSM8K_GOLDS), ("math", MATH, MATH_GOLDS)):
        entry = {**block[name], "path": str(_write(tmp_path / f"{name}.jsonl", rows))}
        got, _ = sources.entry_rows(entry, tmp_path, name, f"data.benchmarks.{name}")
        assert [r["answer"] for r in got] == gold, name
    other = {"text": "We get 3. Hence the answer is \\frac{1}{2}. Done."}
    assert sources.answer_getter(block["other"]["answer_field"])(other) == "\\frac{1}{2}"


def test_rule_functions():
    assert answer_rules.after_marker("a #### 1 #### 2 ", "####") == "2" and answer_rules.after_marker("x", "##") is None
    assert answer_rules.last_regex("x=1, x=22", r"x=\d+") == "x=22"  # no group: the whole last match
    assert answer_rules.last_regex("x=1, x=22", r"x=(\d+)") == "22" and answer_rules.last_regex("y", r"x") is None
    for s, out in (("1,234", "1234"), ("-12,000.5", "-12000.5"), ("1,2", "1,2"), ("(1,234)", "(1,234)"),
                   ("1,2345", "1,2345"), ("12", "12")):
        assert answer_rules.strip_thousands(s) == out, s
    assert answer_rules.extract("so \\boxed{\\{1, 2\\}}.", BOXED) == "\\{1, 2\\}"


@pytest.mark.parametrize("row, spec, message", [
    ({"question": "q", "answer": "She has 5 left."}, AFTER,
     r"gsm8k.jsonl: row 2 \(id 'gsm8k-0001'\): answer_field \{field: answer, after: '####'\} found no '####' in "
     r"field 'answer' \('She has 5 left.'\)"),
    ({"question": "q", "answer": "It is 5.\n#### "}, AFTER, r"row 2 \(id 'gsm8k-0001'\): .* found an empty answer"),
    ({"question": "q", "answer": "The answer is $\\boxed{12$."}, {"field": "answer", "boxed": "last"},
     r"row 2 \(id 'gsm8k-0001'\): answer_field \{field: answer, boxed: 'last'\} found no balanced \\boxed"),
    ({"question": "q", "answer": "none"}, {"field": "answer", "regex": "#### (\\d+)"}, r"found no match of the regex"),
    ({"question": "q", "answer": ["#### 5"]}, AFTER, r"field 'answer' is a list, not a string"),
])
def test_a_row_without_an_answer_is_a_one_line_error(tmp_path, row, spec, message):
    _write(tmp_path / "gsm8k.jsonl", [{"question": "q0", "answer": "So $\\boxed{72}$.\n#### 72"}, row])
    ds = {"source": "jsonl", "path": "gsm8k.jsonl", "problem_field": "question", "answer_field": spec}
    with pytest.raises(DataError, match=message) as e:
        sources.entry_rows(ds, tmp_path, "gsm8k", "data.benchmarks.gsm8k")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec, message", [
    ({"field": "answer"}, r"data.benchmarks.x.answer_field: give exactly one of after, boxed, regex \(has none\)"),
    ({"field": "answer", "after": "####", "boxed": "last"},
     r"answer_field: give exactly one of .* \(has after, boxed\)"),
    ({"field": "answer", "regex": "(\\d+"}, r"data.benchmarks.x.answer_field: regex '\(\\\\d\+' does not compile"),
    ({"field": "answer", "boxed": "first"}, r"data.benchmarks.x.answer_field.boxed: 'first' is not one of \['last'\]"),
    ({"after": "####"}, r"data.benchmarks.x.answer_field: 'field' is a required property"),
    ({"field": "answer", "afer": "####"}, r"data.benchmarks.x.answer_field: Additional properties .*'afer'"),
    ({"field": "answer", "after": ""}, r"data.benchmarks.x.answer_field.after: '' (is too short|should be non-empty)"),
    (["answer"], r"data.benchmarks.x.answer_field: \['answer'\] is not of type 'string', 'object'"),
])
def test_a_bad_rule_is_a_config_error_naming_the_key(spec, message):
    data_dir = os.environ.get("IBTPO_DATA_DIR") or str(REPO.parent / "shared" / "data")
    entry = {"source": "jsonl", "path": "math500/test.jsonl", "answer_field": spec}
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides={"data_dir": data_dir, "data": {"benchmarks": {"x": entry}}})


# -------------------------------------------------------------------------------------------
# the gold check sees a wrong mapping


def test_the_raw_gsm8k_mapping_is_flagged_before_grading(tmp_path):
    f = _write(tmp_path / "gsm8k.jsonl", GSM8K)
    bench = {"gsm8k": {"source": "jsonl", "path": "gsm8k.jsonl", "problem_field": "question"}}  # answer: answer
    with pytest.raises(DataError) as e:
        make_data.run(_cfg(tmp_path, bench), tmp_path / "out")
    msg = str(e.value)
    assert f"data.benchmarks.gsm8k ({f.resolve()}): 4 of 4 golds do not look like answers: id 'gsm8k-0000' " \
           "(holds '####': 'In June" in msg
    assert "use answer_field: {field: answer, after: '####'}, or set data.benchmarks.gsm8k.gold_check: warn" in msg
    assert "graded wrong against themselves" not in msg  # flagged rows are not graded
    assert not (tmp_path / "out").exists()


def test_a_raw_math_solution_mapping_suggests_boxed_last(tmp_path, capsys):
    _write(tmp_path / "math.jsonl", MATH)
    bench = {"math": {"source": "jsonl", "path": "math.jsonl", "answer_field": "solution", "id_field": "unique_id",
                      "gold_check": "warn"}}
    make_data.run(_cfg(tmp_path, bench), tmp_path / "out")
    log = capsys.readouterr().out
    assert "math: gold check: 0/4 golds (4 distinct) grade correct as \\boxed{gold}, 4 do not look like answers" in log
    assert "4 of 4 golds do not look like answers: id 'test/algebra/1.json' (holds \\boxed:" in log
    assert "use answer_field: {field: solution, boxed: last}" in log


def test_answer_shapes():
    s = golds.shape_problem
    prose = "First we note that the two numbers share a factor, so we divide both of them by it and get"
    assert s(prose) == f"is {len(prose)} characters of prose" and s("the answer is five") is None  # short: fine
    assert s("3\n4") == "spans several lines" and s("\\fbox{3}") == "holds \\boxed"
    for fine in ("\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix} \\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
                 "x^8 + x^7 + x^6 + x^5 + x^4 + x^3 + x^2 + x + 1 + \\frac{\\sqrt{2}}{2} + \\frac{\\pi^2}{8} + y^2",
                 "\\text{(A)}", "72", "\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]"):
        assert s(fine) is None, fine
    rows = [{"id": str(i), "answer": "A"} for i in range(10)]
    assert golds.same_gold_note(rows) == "all 10 golds are the same ('A'): check the answer_field mapping"
    assert golds.same_gold_note(rows[:9]) is None and golds.same_gold_note(rows + [{"id": "x", "answer": "B"}]) is None


# -------------------------------------------------------------------------------------------
# bad files, one line each


@pytest.mark.parametrize("text", [json.dumps(GSM8K), json.dumps(GSM8K, indent=2)])
def test_a_json_array_file_says_jsonl_is_expected(tmp_path, text):
    f = tmp_path / "gsm8k.jsonl"
    f.write_text(text)
    with pytest.raises(DataError, match=r"gsm8k.jsonl: row 1: .* -- expected JSONL: one object per line; this file "
                                        r"is a JSON array \(convert it: python -c") as e:
        read_jsonl(f)
    assert "\n" not in str(e.value)
    f.write_text(json.dumps(GSM8K[0]) + "\n[1]\n")  # an array line after an object row: no array hint
    with pytest.raises(DataError, match=r"row 2: not a JSON object$"):
        read_jsonl(f)


def test_nested_list_answers_are_an_error_not_flattened(tmp_path):
    _write(tmp_path / "o.jsonl", [{"question": "q1", "final_answer": ["1"]},
                                  {"question": "q2", "final_answer": [["1", "2"]]}])
    ds = {"source": "jsonl", "path": "o.jsonl", "problem_field": "question", "answer_field": "final_answer"}
    with pytest.raises(DataError, match=r"o.jsonl: row 2: answer \[\['1', '2'\]\] is a list holding a list; give "
                                        r"one value or a flat list \(nested lists are not flattened\)$"):
        sources.entry_rows(ds, tmp_path, "o", "data.benchmarks.o")
