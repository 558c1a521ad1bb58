"""Tests for ibtpo.grading: correctness, the integer fast path, and bounded time.

Expected values are written by hand.  The fast-path agreement test also asks
math-verify itself (main thread, its own SIGALRM timeouts), independently of the
grader's worker process.

Empirically (math-verify 0.9.0, SymPy 1.14, timeouts disabled):
* ``\\boxed{9^{9^{9^{9}}}}`` never returns: ``verify`` spins in SymPy's
  ``Integer._eval_power`` -> always a timeout.
* 500 nested braces inside ``\\boxed{}`` take ~4-5 s to parse -> a timeout at
  ``timeout_s=1`` on the dev box (not asserted: machine dependent).
* a 10,000-character ``1+1+...`` takes ~0.2-0.7 s, ``100000!`` ~0.2 s, the rest
  (unbalanced ``\\boxed{``, empty text, unicode junk) milliseconds.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import ibtpo.grading
from ibtpo.grading import Grader, close_shared, extract_last_boxed, integer_fast_path, shared_grader
from ibtpo.grading import answers, policy, supervisor, worker

TIMEOUT_S = 1.0
SLACK_S = 10.0

TOWER = "\\boxed{9^{9^{9^{9}}}}"
ADVERSARIAL = [
    ("5", "\\boxed{" + "1+" * 4996 + "1}"),                  # 10,000-character expression
    ("5", "\\boxed{" + "{" * 500 + "1" + "}" * 500 + "}"),    # 500 nested braces
    ("5", TOWER),                                             # never returns in math-verify
    ("5", "\\boxed{100000!}"),
    ("5", "The answer is \\boxed{"),                          # unbalanced
    ("5", ""),                                                # empty text
    ("5", "答案是 \U0001F600\u200b\ufeff\x00 ∑∫√ \\boxed{\u00e9\u2603} \U0010FFFF"),  # unicode junk
]
# Cheap subset for the thread / process-pool runs (the point there is "works off the
# main thread", the expensive inputs are covered from the main thread).
ADVERSARIAL_SMALL = [pair for pair in ADVERSARIAL if len(pair[1]) < 1000]
# A normal item after the adversarial ones: the grader must still work afterwards.
CONTROL = ("\\frac{1}{2}", "so the answer is \\boxed{0.5}")


def default_grader() -> Grader:
    """The process-wide Grader with default settings (:func:`shared_grader`), created on first use."""
    return shared_grader()


def grade(gold: str, pred: str) -> bool:
    """``default_grader().grade(gold, pred)`` -- gold answer first, full completion second."""
    return default_grader().grade(gold, pred)


@pytest.fixture(scope="module")
def g():
    with Grader(timeout_s=TIMEOUT_S) as gr:
        yield gr


@pytest.fixture(scope="module")
def g_slow():
    """Every item through math-verify in the worker."""
    with Grader(timeout_s=5.0, fast_integer_path=False) as gr:
        yield gr


@pytest.fixture(scope="module")
def g_any():
    """``answer="any"``: math-verify's own extraction from the full text (tests/test_answer_mode.py: ``boxed``)."""
    with Grader(timeout_s=TIMEOUT_S, answer="any") as gr:
        yield gr


@pytest.fixture(scope="module")
def g_slow_any():
    with Grader(timeout_s=5.0, fast_integer_path=False, answer="any") as gr:
        yield gr


# ---------------------------------------------------------------------------------
# extract_last_boxed
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The answer is \\boxed{36}", "36"),
    ("\\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),                   # nested braces
    ("\\boxed{\\frac{\\sqrt{2}}{\\left(3\\right)}}", "\\frac{\\sqrt{2}}{\\left(3\\right)}"),
    ("first \\boxed{3}, then \\boxed{5}.", "5"),                   # last wins
    ("\\boxed{3} \\boxed{\\frac{1}{2}} text", "\\frac{1}{2}"),
    ("\\boxed{12", None),                                          # unbalanced -> no content
    ("\\boxed{3} and then \\boxed{12", None),                      # the LAST one is unbalanced
    ("\\boxed{\\frac{1}{2}", None),
    ("\\boxed 5", None),                                           # brace-less form: not extracted
    ("\\boxed {7}", "7"),                                          # space before the brace is fine
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),                           # escaped braces don't count
    ("\\boxed{\\left\\{ x \\right.}", "\\left\\{ x \\right."),
    ("\\boxed{ 42 }", " 42 "),                                     # verbatim, not stripped
    ("\\boxed{}", ""),
    ("\\boxed{\\boxed{5}}", "5"),                                  # the one that starts last
    ("no box here", None),
    ("", None),
    (None, None),
])
def test_extract_last_boxed(text, expected):
    assert extract_last_boxed(text) == expected


# ---------------------------------------------------------------------------------
# Correctness
# ---------------------------------------------------------------------------------

TYPICAL = "4+2=6\n\n2+11=13\n\nThe answer is \\boxed{36}"


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("gold, pred, expected", [
    ("36", TYPICAL, True),
    ("37", TYPICAL, False),
    ("-3", "so x = \\boxed{-3}", True),
    ("3", "so x = \\boxed{-3}", False),
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{2}}", True),
    ("0.5", "\\boxed{\\frac{1}{2}}", True),
    ("\\frac{1}{2}", "\\boxed{0.5}", True),
    ("\\frac{1}{3}", "\\boxed{\\frac{1}{2}}", False),
    ("27.0", "\\boxed{27}", True),                 # AMC golds are floats
    ("27.0", "\\boxed{28}", False),
    ("27", "\\boxed{27.0}", True),
    ("\\sqrt{2}", "Thus \\boxed{\\sqrt{2}}.", True),
    ("\\text{(C)}", "The answer is \\boxed{C}", True),
    ("10\\%", "\\boxed{10\\%}", True),
    ("5", "\\boxed 5", True),                      # brace-less boxed: math-verify handles it
    ("5", "\\boxed{3} then \\boxed{5}", False),    # math-verify reads {3, 5}
    ("5", "no boxed answer here, just words", False),
    ("5", "", False),
    ("", "\\boxed{5}", False),
])
def test_grade_correctness(g_any, g_slow_any, fast, gold, pred, expected):
    # pinned to answer="any": the rows "\boxed 5" and "\boxed{3} then \boxed{5}" are math-verify's own reading
    gr = g_any if fast else g_slow_any
    assert gr.grade(gold, pred) is expected
    assert gr.grade_many([(gold, pred)]) == [expected]


def test_non_string_inputs(g):
    assert g.grade(36, "\\boxed{36}") is True          # int gold from a dataset
    assert g.grade(27.0, "\\boxed{27}") is True        # float gold (AMC)
    assert g.grade_many([("5", None), (None, "\\boxed{5}")]) == [False, False]


def test_grade_many_mixed_order(g):
    pairs = [
        ("36", TYPICAL),                                # fast path
        ("\\frac{1}{2}", "\\boxed{\\frac{2}{4}}"),      # worker
        ("7", TYPICAL),                                 # fast path
        ("x^2", "\\boxed{x \\cdot x}"),                 # worker
        ("2", "\\boxed{\\sqrt{5}}"),                    # worker
        ("2", "\\boxed{2}"),                            # fast path
    ]
    assert g.grade_many(pairs) == [True, True, False, True, False, True]
    assert g.grade_many([]) == []


def test_module_level_grade():
    assert default_grader() is default_grader()
    assert grade("36", TYPICAL) is True
    assert grade("\\frac{1}{2}", "\\boxed{0.5}") is True
    assert grade("\\frac{1}{2}", "\\boxed{0.6}") is False


def test_process_wide_graders():
    """One process-wide grader per timeout (what evaluation's task hooks grade with), and closing them
    makes the next call start a fresh one."""
    assert shared_grader(2.0) is default_grader() is shared_grader()
    assert shared_grader(3) is shared_grader(3.0) is not default_grader()
    old = shared_grader(3.0)
    close_shared()
    assert shared_grader(3.0) is not old and default_grader() is shared_grader(2.0)
    close_shared()


# ---------------------------------------------------------------------------------
# Integer fast path
# ---------------------------------------------------------------------------------

# (gold, completion, expected by hand); every one must take the fast path.
INTEGER_CASES = [
    ("36", TYPICAL, True),
    ("35", TYPICAL, False),
    ("0", "\\boxed{0}", True),
    ("0", "\\boxed{-0}", True),
    ("-0", "\\boxed{0}", True),
    ("36", "\\boxed{036}", True),
    ("7", "\\boxed{ 7 }", True),
    ("-12", "We get $x=\\boxed{-12}$.", True),
    ("12", "We get $x=\\boxed{-12}$.", False),
    ("27.0", "\\boxed{27}", True),
    ("27.00", "\\boxed{27}", True),
    ("27.0", "\\boxed{270}", False),
    ("-4.0", "\\boxed{-4}", True),
    ("100", "\\[\\boxed{100}\\]", True),
    ("1000", "\\boxed{100}", False),
    ("12345678901234567890", "\\boxed{12345678901234567890}", True),
    ("12345678901234567890", "\\boxed{12345678901234567891}", False),
    ("10000000000000001", "\\boxed{10000000000000000}", False),
    ("8", "Since 3+5=8, the answer is $\\boxed{8}$.", True),
    ("8", "Since 3+5=8, the answer is $\\boxed{9}$.", False),
    ("5", "\\boxed{5}.", True),
    ("5", "\\boxed{5} and finally $x=7$", True),
    ("7", "\\boxed{5} and finally $x=7$", False),
    ("5", "$\\boxed{5}^\\circ$", True),
    ("5", "\\boxed{5}\\%", True),
    ("5", "**\\boxed{5}**", True),
    ("5", "\\(\\boxed{5}\\)", True),
    ("42", "Answer: \\boxed{42}", True),
    ("42", "Answer: \\boxed{24}", False),
    ("1", "1+1=2\n\\boxed{1}", True),
    ("2", "1+1=2\n\\boxed{1}", False),
    (" 9 ", "\\boxed{9}\n", True),
]


def _math_verify_main_thread(gold: str, pred: str) -> bool:
    from math_verify import parse, verify  # default (SIGALRM) timeouts: main thread only
    return verify(parse("$" + gold.strip() + "$"), parse(pred))


def test_fast_path_agrees_with_math_verify():
    assert threading.current_thread() is threading.main_thread()
    assert len(INTEGER_CASES) >= 30
    for gold, pred, expected in INTEGER_CASES:
        fp = integer_fast_path(gold, pred)
        assert fp is not None, (gold, pred)
        assert fp is expected, (gold, pred)
        assert _math_verify_main_thread(gold, pred) is expected, (gold, pred)


def test_fast_path_off_gives_same_answers(g_slow):
    got = g_slow.grade_many([(gd, p) for gd, p, _ in INTEGER_CASES])
    assert g_slow.fast_path_hits == 0
    assert got == [e for _, _, e in INTEGER_CASES]


@pytest.mark.parametrize("gold, pred", [
    ("36", "\\boxed{3} then \\boxed{36}"),              # several \boxed: math-verify merges them
    ("36", "\\boxed{36} \\boxed{36}"),
    ("36", "The final answer is $\\boxed{36}$. I hope it is correct."),  # competing pattern
    ("36", "\\boxed{36.0}"),                            # pred must be a plain integer
    ("36", "\\boxed{3,6}"),
    ("36", "\\boxed{{36}}"),
    ("36", "\\boxed 36"),
    ("36", "\\boxed{36"),
    ("36", "\\fbox{1} \\boxed{36}"),
    ("\\frac{1}{2}", "\\boxed{1}"),                     # gold not an integer
    ("27.5", "\\boxed{27}"),
    ("1,000", "\\boxed{1000}"),
    ("٣", "\\boxed{3}"),                                # non-ASCII digits
    ("5", "\\boxed{" + "9" * 1001 + "}"),               # over the 1000-digit cap
])
def test_fast_path_declines(gold, pred):
    assert integer_fast_path(gold, pred) is None


def test_fast_path_is_fast_and_skips_worker():
    pairs = [("36", TYPICAL)] * 128
    with Grader(timeout_s=TIMEOUT_S) as gr:
        t = time.perf_counter()
        for _ in range(10):
            out = gr.grade_many(pairs)
        dt = time.perf_counter() - t
        assert out == [True] * 128
        assert gr.worker_starts == 0 and gr._supervisor.worker is None
        assert gr.calls == 1280 and gr.fast_path_hits == 1280
    assert dt < 2.0  # ~2 us/item measured; this bound only catches a regression to IPC


# ---------------------------------------------------------------------------------
# Bounded time on adversarial inputs: main thread, other thread, process pool
# ---------------------------------------------------------------------------------

def _run_adversarial(gr: Grader, per_call_too: bool = False, items=None) -> dict:
    """Grade the adversarial items as one batch (and first one call at a time)."""
    items = ADVERSARIAL if items is None else items
    per_call = []
    t0 = gr.timeouts
    tower_timeouts = None
    for gold, pred in (items if per_call_too else []):
        before = gr.timeouts
        t = time.perf_counter()
        r = gr.grade(gold, pred)
        per_call.append((r, time.perf_counter() - t))
        if pred == TOWER:
            tower_timeouts = gr.timeouts - before
    t = time.perf_counter()
    batch = gr.grade_many(items + [CONTROL])
    batch_s = time.perf_counter() - t
    return {"items": items, "per_call": per_call, "batch": batch, "batch_s": batch_s,
            "tower_timeouts": tower_timeouts, "timeouts": gr.timeouts - t0}


def _check_adversarial(rep: dict) -> None:
    items = rep["items"]
    for (r, dt), (_, pred) in zip(rep["per_call"], items):
        assert r is False, pred[:40]
        assert dt < TIMEOUT_S + SLACK_S, (pred[:40], dt)
    assert rep["batch"] == [False] * len(items) + [True]
    assert rep["batch_s"] < len(items) * TIMEOUT_S + SLACK_S
    if rep["per_call"]:
        assert rep["tower_timeouts"] == 1       # a genuine hang: always killed
        assert rep["timeouts"] >= 2             # the tower, once per call and once in the batch
    else:
        assert rep["timeouts"] >= 1             # the tower in the batch


def _adversarial_in_pool_worker(use_default: bool) -> dict:
    # Module-level so ProcessPoolExecutor can pickle it.
    if use_default:
        gr = default_grader()          # inherited through fork: must have been reset
        gr.timeout_s = TIMEOUT_S
        return _run_adversarial(gr, items=ADVERSARIAL_SMALL)
    with Grader(timeout_s=TIMEOUT_S) as gr:
        return _run_adversarial(gr, items=ADVERSARIAL_SMALL)


def test_adversarial_main_thread():
    with Grader(timeout_s=TIMEOUT_S) as gr:
        rep = _run_adversarial(gr, per_call_too=True)
        _check_adversarial(rep)
        assert gr.grade(*CONTROL) is True


def test_adversarial_other_thread():
    with Grader(timeout_s=TIMEOUT_S) as gr:
        box = {}

        def target():
            try:
                box["rep"] = _run_adversarial(gr, items=ADVERSARIAL_SMALL)
            except BaseException as e:  # pragma: no cover - reported below
                box["err"] = e

        th = threading.Thread(target=target)
        th.start()
        th.join(timeout=120)
        assert not th.is_alive(), "grader hung in a thread"
        assert "err" not in box, box.get("err")
        _check_adversarial(box["rep"])


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_adversarial_process_pool(start_method):
    # Start the parent's default grader first, so a forked pool worker inherits a live
    # worker handle that it must not use.
    assert grade("\\frac{1}{2}", "\\boxed{0.5}") is True
    parent_worker_pid = default_grader()._supervisor.worker.proc.pid
    ctx = multiprocessing.get_context(start_method)
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:
        rep = ex.submit(_adversarial_in_pool_worker, start_method == "fork").result(timeout=120)
    _check_adversarial(rep)
    # The parent's worker survived the child's use of its own grader.
    assert default_grader()._supervisor.worker.proc.pid == parent_worker_pid
    assert grade("\\frac{1}{2}", "\\boxed{0.5}") is True


# ---------------------------------------------------------------------------------
# Worker lifecycle, thread safety
# ---------------------------------------------------------------------------------

def test_timeout_then_rest_of_batch_and_counters():
    with Grader(timeout_s=TIMEOUT_S) as gr:
        out = gr.grade_many([("\\sqrt{4}", "\\boxed{2}"), ("5", TOWER), ("\\frac{1}{2}", "\\boxed{2/4}"),
                             ("\\frac{1}{3}", "\\boxed{2/4}")])
        assert out == [True, False, True, False]
        assert gr.timeouts == 1
        assert gr.calls == 4
        assert gr.worker_starts == 2  # first start + one restart per timeout
        assert gr.last_startup_s is not None and gr.last_startup_s > 0


def test_worker_killed_while_idle_is_replaced():
    with Grader(timeout_s=TIMEOUT_S) as gr:
        assert gr.grade("\\frac{1}{2}", "\\boxed{0.5}") is True
        proc = gr._supervisor.worker.proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert gr.grade("\\frac{1}{2}", "\\boxed{0.5}") is True
        assert gr.timeouts == 0 and gr.worker_errors == 0


def test_worker_dying_mid_item_counts_as_wrong():
    with Grader(timeout_s=30.0) as gr:
        assert gr.grade("\\frac{1}{2}", "\\boxed{0.5}") is True
        pid = gr._supervisor.worker.proc.pid
        killer = threading.Timer(0.5, os.kill, args=(pid, signal.SIGKILL))
        killer.start()
        t = time.perf_counter()
        out = gr.grade_many([("5", TOWER), ("\\frac{1}{2}", "\\boxed{0.5}")])
        assert time.perf_counter() - t < 30.0       # did not wait for the deadline
        killer.join()
        assert out == [False, True]
        assert gr.worker_errors == 1 and gr.timeouts == 0


def test_threads_share_one_grader(g):
    n_threads, n_items = 8, 12
    errors, results = [], {}

    def work(t):
        try:
            pairs = [(f"\\frac{{{t}}}{{{i + 2}}}", f"\\boxed{{\\frac{{{2 * t}}}{{{2 * (i + 2)}}}}}")
                     for i in range(n_items)]
            pairs += [(str(t), f"\\boxed{{{t}}}"), (str(t), f"\\boxed{{{t + 1}}}")]
            results[t] = g.grade_many(pairs)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(1, n_threads + 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    for t in range(1, n_threads + 1):
        assert results[t] == [True] * n_items + [True, False]


def test_worker_outlives_the_thread_that_started_it():
    with Grader(timeout_s=TIMEOUT_S) as gr:
        th = threading.Thread(target=gr.grade, args=("\\frac{1}{2}", "\\boxed{0.5}"))
        th.start()
        th.join(timeout=60)
        pid = gr._supervisor.worker.proc.pid
        time.sleep(0.3)
        assert gr.grade("\\frac{1}{2}", "\\boxed{0.5}") is True
        assert gr._supervisor.worker.proc.pid == pid and gr.worker_starts == 1 and gr.worker_errors == 0


_ORPHAN_SCRIPT = """
from ibtpo.grading import Grader
g = Grader(timeout_s=600, answer="any")  # "any": the unboxed "x" goes to the worker
g.grade("x", "x")
print(g._supervisor.worker.proc.pid, flush=True)
g.grade("5", {tower!r})
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_worker_dies_with_its_parent_even_when_stuck():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(ibtpo.grading.__file__))))
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT.format(tower=TOWER)],
                              stdout=subprocess.PIPE, text=True, cwd=repo)
    try:
        worker_pid = int(parent.stdout.readline())
        time.sleep(0.5)  # the worker is now spinning on the tower
        os.kill(worker_pid, 0)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker_pid, signal.SIGKILL)
    pytest.fail("grader worker survived its parent")


def test_close_and_context_manager():
    gr = Grader(timeout_s=TIMEOUT_S)
    with gr:
        assert gr.grade("x^2", "\\boxed{x \\cdot x}") is True
        proc = gr._supervisor.worker.proc
    assert proc.wait(timeout=10) is not None   # worker gone
    with pytest.raises(RuntimeError):
        gr.grade("x", "\\boxed{x}")
    gr.close()  # idempotent


def test_argument_order_is_gold_first(g_slow):
    # math-verify is asymmetric for set-vs-relation: a relation gold accepts an interval
    # prediction, but an interval gold does not accept a relation prediction.
    assert g_slow.grade("1<x<2", "\\boxed{(1,2)}") is True
    assert g_slow.grade("(1,2)", "\\boxed{1<x<2}") is False


def test_docstrings_state_the_contract():
    doc = " ".join(" ".join(m.__doc__ for m in (ibtpo.grading, answers, worker, supervisor, policy)).split())
    for phrase in ("gold answer comes first", "SIGALRM", "graded **wrong**", "Fast path"):
        assert phrase in doc
    assert "gold" in Grader.grade.__doc__
