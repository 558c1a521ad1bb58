"""The one answer grader, shared by training rewards and evaluation.

Argument order
--------------
Everywhere in this module the **gold answer comes first and the prediction
second**: ``grade(gold, pred)``, ``grade_many([(gold, pred), ...])``.  ``gold``
is a bare reference answer such as ``"36"``, ``"27.0"`` or ``"\\frac{1}{2}"``;
``pred`` is the model's *full completion text*.  Inside the worker the call is
``verify(parse(gold_wrapped), parse(pred))`` -- gold first, as math-verify
documents (``verify`` is not symmetric).  The gold is wrapped as ``$gold$``
before parsing so that LaTeX golds parse as LaTeX (left as is when it already
contains ``\\boxed`` or starts with ``$``).

What the answer is
------------------
``answer`` (the config's ``evaluation.answer``) says which part of the completion
is its answer:

* ``"boxed"`` (the default): the content of the **last** ``\\boxed{...}`` (see
  :func:`extract_last_boxed`).  A completion with no braced ``\\boxed{...}`` (or whose
  last one is unbalanced, e.g. cut off by the token limit) is graded **wrong**
  without asking math-verify; otherwise ``\\boxed{<content>}`` alone is what
  math-verify parses (and what the fast path sees), so ``7+3=10 ... 10-5=5`` earns
  nothing for gold 5, and ``\\boxed{3} ... \\boxed{5}`` is read as 5.
* ``"any"``: the full completion goes to math-verify, whose default extraction
  takes the last expression it finds (``3*4=12`` is correct for gold 12 without a
  box); the integer fast path then applies under the conditions below.

Why a child process
-------------------
math-verify bounds its own run time with ``signal.alarm`` (SIGALRM).  That only
works in the main thread of the main interpreter: from any other thread it
raises, and with its timeouts disabled some inputs never return (e.g. ``verify``
on ``\\boxed{9^{9^{9^{9}}}}`` spins in SymPy for ever).  Neither is acceptable
for a reward function called from rollout threads or pool workers.  So all
math-verify work runs in one persistent child process per :class:`Grader`,
with math-verify's own timeouts disabled (``parse(..., parsing_timeout=None)``,
``verify(..., timeout_seconds=None)``), and the parent enforces the deadline.

The child is a fresh interpreter (``sys.executable``, fork+exec -- the same
thing multiprocessing's "spawn" start method does; never a bare ``fork`` of a
parent that may hold torch/OpenMP threads).  It is launched with ``subprocess``
and talks over two pipes framed by ``multiprocessing.connection.Connection``
rather than through ``multiprocessing.Process``, because that avoids two
multiprocessing pitfalls: a spawn/forkserver child re-imports the caller's
``__main__`` module, and daemonic processes (``multiprocessing.Pool`` or torch
``DataLoader`` workers) are not allowed to start children at all.  The worker
starts lazily, on the first call that needs it.  Start-up cost (interpreter +
importing math-verify/SymPy + one warm-up grade) was measured at 0.4-1.5 s on
the 2-core CPU development box, depending on load; it is paid once per Grader and once more
after every timeout (the replacement is launched right after the kill, so its
start-up overlaps with whatever the caller does next).  The worker exits when its
pipe closes and, on Linux, is SIGKILLed by the kernel when this process dies even
mid-computation (PR_SET_PDEATHSIG; workers are started from one process-lifetime
launcher thread, because that signal follows the thread that started the child).

Timeout policy
--------------
A batch is sent to the worker in one message and the results stream back one
item at a time.  Every item has a hard deadline of ``timeout_s`` seconds,
measured from the arrival of the previous result (or from sending the batch).
When an item misses it, the worker is killed (SIGKILL), the item is graded
**wrong** (``False``), ``timeouts`` is incremented, a new worker is started and
the rest of the batch is sent to it.  A worker that dies while grading an item
(e.g. killed for memory) is handled the same way but counted in
``worker_errors`` instead.  Calls from several threads are serialised by a lock
around the worker channel, so threads may share one Grader; a process that
forks inherits no worker (its copy is reset and starts its own).

Fast path
---------
With ``fast_integer_path=True`` (the default) a pair is decided in-process,
without touching the worker, when all of these hold (under ``answer="boxed"`` they
are checked on ``\\boxed{<content of the last box>}``, so there the rule is simply
"the last box holds a plain integer"):

* the gold is a plain integer after stripping (``-?\\d+``, ASCII digits), or an
  integer written as a float with a zero fraction (``27.0``, as AMC stores it);
* the prediction contains exactly one ``\\boxed`` (and no ``\\fbox``) and its
  content (see :func:`extract_last_boxed`) is a plain integer ``-?\\d+`` after
  stripping, of at most 1000 digits;
* the prediction does not mention "final answer" (any case).

It then returns ``int(gold) == int(boxed)`` (compared as digit strings, so no
``int()`` digit limit applies).  The conditions are what keep
this in agreement with math-verify for integer-vs-integer: math-verify merges
several ``\\boxed`` on one line into a set (``\\boxed{3} then \\boxed{5}`` is
``{3, 5}``, which equals neither 3 nor 5), its "final answer is X. I hope"
pattern outranks ``\\boxed`` and its "final answer ... is X" pattern ties with
it (the later one wins); such predictions go to the worker.  Integers are
compared exactly, as math-verify compares SymPy Integers (``036 == 36``,
``-0 == 0``, 20-digit numbers differing in the last digit are unequal).  The
test-suite checks the agreement against math-verify itself (and a 3,800-case
fuzz over answer contexts found no disagreement).  Measured cost: 2-10 us per
item on this path (short to ~700-character completions); 2-5 ms per item through
the worker, of which the IPC is about 0.06 ms.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection

__all__ = [
    "ANSWER_MODES",
    "Grader",
    "answer_text",
    "default_grader",
    "shared_grader",
    "close_shared",
    "grade",
    "extract_last_boxed",
    "integer_fast_path",
]

# --------------------------------------------------------------------------------------
# Pure helpers (no math-verify needed)
# --------------------------------------------------------------------------------------

_BOXED = "\\boxed"
_GOLD_INT_RE = re.compile(r"-?\d+(?:\.0+)?", re.ASCII)
_PRED_INT_RE = re.compile(r"-?\d+", re.ASCII)
_FINAL_ANSWER_RE = re.compile(r"final answer", re.IGNORECASE)
_FAST_MAX_DIGITS = 1000

# evaluation.answer (pipelines/schemas/config.schema.yaml): what part of a completion is its answer
ANSWER_MODES = ("boxed", "any")
_ANSWER_TEXT = {
    "boxed": "the last `\\boxed{}` of a response (a response without one is wrong)",
    "any": "math-verify's default extraction (the last expression in a response, boxed or not)",
}


def answer_text(mode: str) -> str:
    """One sentence for reports: which part of a response was graded (``evaluation.answer``)."""
    return f"Answers: {_ANSWER_TEXT[mode]} (`evaluation.answer: {mode}`)."


def extract_last_boxed(text: str | None) -> str | None:
    """Return the content of the last ``\\boxed{...}`` in ``text``, or ``None``.

    "Last" is the ``\\boxed`` that starts last (for ``\\boxed{\\boxed{5}}`` that is
    the inner one, content ``"5"``).  The content is found by brace matching, so
    nesting works (``\\boxed{\\frac{a}{b}}`` -> ``"\\frac{a}{b}"``); a backslash
    escapes the next character, so ``\\{``/``\\}`` do not count as braces.  Space
    between ``\\boxed`` and ``{`` is allowed.  The content is returned verbatim
    (not stripped).

    ``None`` when there is no ``\\boxed``, when the last one is unbalanced
    (``\\boxed{12`` -- no content), or when the last one has no brace at all
    (``\\boxed 5``: TeX would box the single token ``5``, but this helper only
    extracts the braced form; :class:`Grader` still grades ``\\boxed 5`` through
    math-verify, which understands it).
    """
    if not text:
        return None
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    i = start + len(_BOXED)
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    if i >= n or text[i] != "{":
        return None
    i += 1
    content_start = i
    depth = 1
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[content_start:i]
        i += 1
    return None


def _int_key(s: str) -> tuple[bool, str]:
    """Exact integer identity of a ``-?\\d+`` string without int() (no digit limit)."""
    neg = s.startswith("-")
    digits = s.lstrip("-").lstrip("0") or "0"
    return (neg and digits != "0", digits)


def integer_fast_path(gold: str, pred: str) -> bool | None:
    """Grade an integer gold against a single boxed integer, or return ``None``.

    Returns ``True``/``False`` when the fast path applies (see the module
    docstring for the exact conditions and why they agree with math-verify) and
    ``None`` when the pair must go to math-verify.  Pure, thread-safe, a few
    microseconds for a typical completion.
    """
    if not isinstance(gold, str) or not isinstance(pred, str):
        return None
    g = gold.strip()
    if not _GOLD_INT_RE.fullmatch(g):
        return None
    if pred.count(_BOXED) != 1 or "\\fbox" in pred:
        return None
    if _FINAL_ANSWER_RE.search(pred):
        return None
    content = extract_last_boxed(pred)
    if content is None:
        return None
    content = content.strip()
    if len(content) > _FAST_MAX_DIGITS or not _PRED_INT_RE.fullmatch(content):
        return None
    g_int = g.split(".", 1)[0]
    if len(g_int) > _FAST_MAX_DIGITS:
        return None
    return _int_key(g_int) == _int_key(content)


def _wrap_gold(gold: str) -> str:
    g = gold.strip()
    if _BOXED in g or g.startswith("$"):
        return g
    return f"${g}$"


# --------------------------------------------------------------------------------------
# Worker side (runs in the child interpreter; the parent never imports math-verify)
# --------------------------------------------------------------------------------------

# The child loads this very file by path (not ``import ibtpo``), so whatever the
# package ``__init__`` grows to import never slows the worker down.
_BOOT = (
    "import sys, json, importlib.util\n"
    "sys.path[:] = json.loads(sys.argv[3])\n"
    "spec = importlib.util.spec_from_file_location('_ibtpo_grader_worker', sys.argv[5])\n"
    "mod = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(mod)\n"
    "mod._worker_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4]))\n"
)


def _parent_watchdog(parent_pid: int) -> None:  # pragma: no cover - runs in the child
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)


def _worker_main(rfd: int, wfd: int, parent_pid: int) -> None:  # pragma: no cover - child
    import functools
    import logging
    import signal

    # Ctrl-C goes to the whole process group; the parent handles it and the worker
    # exits when its pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Die with the parent even while stuck in a C-level SymPy/bignum call that holds
    # the GIL (a Python watchdog thread cannot run then): Linux parent-death signal.
    # It fires when the *thread* that launched us exits, hence the launcher thread.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent_pid:
        os._exit(0)
    threading.Thread(target=_parent_watchdog, args=(parent_pid,), daemon=True).start()
    inbox = Connection(rfd, writable=False)
    outbox = Connection(wfd, readable=False)

    # The "timeout is disabled" warning is expected here: the parent is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    @functools.lru_cache(maxsize=4096)
    def parse_gold(gold: str):
        return parse(_wrap_gold(gold), parsing_timeout=None)

    def one(gold: str, pred: str) -> bool:
        try:
            g = parse_gold(gold)
            p = parse(pred, parsing_timeout=None)
            return bool(verify(g, p, timeout_seconds=None))
        except Exception:
            return False

    one("1", "\\boxed{1}")  # warm-up: import latex2sympy, compile the regexes
    outbox.send(("ready", os.getpid()))
    try:
        while True:
            msg = inbox.recv()
            if msg[0] == "stop":
                break
            for i, (gold, pred) in enumerate(msg[1]):
                outbox.send((i, one(gold, pred)))
    except (EOFError, OSError):  # the parent closed the pipes or went away
        pass
    os._exit(0)


# --------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------

_THIS_FILE = os.path.abspath(__file__)
_LIVE: "weakref.WeakSet[Grader]" = weakref.WeakSet()


class _Launcher:
    """A process-lifetime thread that starts every worker.

    The worker asks Linux for SIGKILL when the thread that started it exits
    (PR_SET_PDEATHSIG); starting workers from this thread, which lives as long as
    the process, makes that "when this process exits", whichever (possibly
    short-lived) caller thread needed the worker.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._q: "queue.SimpleQueue" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="ibtpo-grader-launcher", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self.pid == os.getpid() and self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            fn, box, done = self._q.get()
            try:
                box.append((True, fn()))
            except BaseException as e:  # handed back to the caller
                box.append((False, e))
            done.set()

    def call(self, fn):
        box: list = []
        done = threading.Event()
        self._q.put((fn, box, done))
        while not done.wait(1.0):
            if not self._thread.is_alive():  # interpreter shutting down
                raise RuntimeError("grader launcher thread is gone")
        ok, value = box[0]
        if ok:
            return value
        raise value


_LAUNCHER: _Launcher | None = None
_LAUNCHER_LOCK = threading.Lock()


def _launch(argv: list[str], pass_fds: tuple[int, ...]) -> subprocess.Popen:
    global _LAUNCHER
    with _LAUNCHER_LOCK:
        if _LAUNCHER is None or not _LAUNCHER.alive():
            _LAUNCHER = _Launcher()
        launcher = _LAUNCHER
    return launcher.call(lambda: subprocess.Popen(
        argv, pass_fds=pass_fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True))


class _Worker:
    """One child interpreter and its two pipe ends."""

    def __init__(self) -> None:
        r_child, w_parent = os.pipe()  # parent -> child
        r_parent, w_child = os.pipe()  # child -> parent
        try:
            self.proc = _launch(
                [sys.executable, "-c", _BOOT, str(r_child), str(w_child), json.dumps(sys.path),
                 str(os.getpid()), _THIS_FILE],
                (r_child, w_child),
            )
        except BaseException:
            for fd in (r_child, w_parent, r_parent, w_child):
                os.close(fd)
            raise
        os.close(r_child)
        os.close(w_child)
        self.send = Connection(w_parent, readable=False)
        self.recv = Connection(r_parent, writable=False)
        self.ready = False
        self.t_launch = time.perf_counter()
        self.startup_s: float | None = None

    def wait_ready(self, timeout: float) -> None:
        if self.ready:
            return
        if not self.recv.poll(timeout):
            raise RuntimeError(f"grader worker did not start within {timeout:.0f} s")
        try:
            msg = self.recv.recv()
        except (EOFError, OSError) as e:
            raise RuntimeError("grader worker died during start-up (see its stderr)") from e
        if not (isinstance(msg, tuple) and msg[0] == "ready"):
            raise RuntimeError(f"grader worker sent {msg!r} instead of 'ready'")
        self.ready = True
        self.startup_s = time.perf_counter() - self.t_launch

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except Exception:
            pass
        self.close_pipes()

    def stop(self) -> None:
        try:
            self.send.send(("stop", None))
        except Exception:
            pass
        self.close_pipes()
        try:
            self.proc.wait(timeout=2)
        except Exception:
            self.kill()

    def close_pipes(self) -> None:
        for c in (self.send, self.recv):
            try:
                c.close()
            except OSError:
                pass

    def forget(self) -> None:
        """Drop a worker inherited through fork: it belongs to the parent process."""
        self.proc.returncode = 0  # keep Popen.__del__ quiet; it is not our child
        self.close_pipes()


class Grader:
    """Math answer grader: math-verify in a child process, with a hard per-item deadline.

    ``grade(gold, pred)`` -- gold answer first, full completion second -- returns
    ``True`` iff math-verify finds the completion's answer equal to the gold
    (``verify(parse(gold_wrapped), parse(pred))``), decided in-process by the
    integer fast path when it applies.  ``answer`` says what the completion's
    answer is: ``"boxed"`` (default) its last ``\\boxed{...}`` (none: wrong),
    ``"any"`` whatever math-verify extracts from the full text.  An item that runs
    past ``timeout_s`` seconds is graded ``False`` and counted in :attr:`timeouts`.
    See the module docstring for the answer modes, the process model, the timeout
    policy and the fast path.  :meth:`from_spec` builds one from a config's
    ``evaluation`` section.

    Thread-safe; use as a context manager or call :meth:`close` to stop the worker.
    """

    def __init__(self, timeout_s: float = 2.0, fast_integer_path: bool = True,
                 startup_timeout_s: float = 120.0, answer: str = "boxed") -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if answer not in ANSWER_MODES:
            raise ValueError(f"answer must be one of {ANSWER_MODES}, got {answer!r}")
        self.timeout_s = float(timeout_s)
        self.answer = answer
        self.fast_integer_path = bool(fast_integer_path)
        self.startup_timeout_s = float(startup_timeout_s)
        self._init_state()
        _LIVE.add(self)

    @classmethod
    def from_spec(cls, evaluation: dict, **kwargs) -> "Grader":
        """The grader a validated config's ``evaluation`` section (or a resolved eval spec) asks for:
        its ``grader_timeout_s`` and ``answer``; ``kwargs`` go to the constructor."""
        return cls(timeout_s=evaluation["grader_timeout_s"], answer=evaluation["answer"], **kwargs)

    def _init_state(self) -> None:
        self._lock = threading.Lock()  # the worker channel
        self._stats_lock = threading.Lock()
        self._worker: _Worker | None = None
        self._closed = False
        self._calls = 0
        self._timeouts = 0
        self._fast = 0
        self._no_box = 0
        self._worker_errors = 0
        self._worker_starts = 0
        self.last_startup_s: float | None = None

    def _after_fork_in_child(self) -> None:
        w = self._worker
        if w is not None:
            w.forget()
        closed = self._closed
        self._init_state()
        self._closed = closed

    # -- counters -------------------------------------------------------------------
    @property
    def calls(self) -> int:
        """Number of (gold, pred) items graded so far (fast path included)."""
        return self._calls

    @property
    def timeouts(self) -> int:
        """Number of items that ran past ``timeout_s`` (each was graded ``False``)."""
        return self._timeouts

    @property
    def fast_path_hits(self) -> int:
        """Number of items decided by the integer fast path."""
        return self._fast

    @property
    def no_box(self) -> int:
        """Number of completions graded wrong for having no ``\\boxed{...}`` (``answer="boxed"`` only)."""
        return self._no_box

    @property
    def worker_errors(self) -> int:
        """Number of items during which the worker died on its own (graded ``False``)."""
        return self._worker_errors

    @property
    def worker_starts(self) -> int:
        """Number of worker processes launched (1 + restarts)."""
        return self._worker_starts

    def stats(self) -> dict:
        return {"calls": self.calls, "timeouts": self.timeouts, "fast_path_hits": self.fast_path_hits,
                "no_box": self.no_box, "worker_errors": self.worker_errors, "worker_starts": self.worker_starts}

    # -- grading --------------------------------------------------------------------
    def grade(self, gold: str, pred: str) -> bool:
        """Grade one completion: ``gold`` (bare answer) first, ``pred`` (full text) second."""
        return self.grade_many([(gold, pred)])[0]

    def grade_many(self, pairs) -> list[bool]:
        """Grade ``[(gold, pred), ...]`` (gold first) and return one bool per pair, in order.

        Under ``answer="boxed"`` a completion without a ``\\boxed{...}`` is wrong at once and
        the others are reduced to ``\\boxed{<content of the last one>}``. Fast-path items are
        decided in-process; the rest go to the worker in one message and stream back, each
        under the ``timeout_s`` deadline.
        """
        if self._closed:
            raise RuntimeError("Grader is closed")
        pairs = list(pairs)
        results: list[bool] = [False] * len(pairs)
        slow: list[tuple[int, str, str]] = []
        fast = no_box = 0
        boxed = self.answer == "boxed"
        for i, pair in enumerate(pairs):
            gold, pred = pair
            if gold is None or pred is None:
                continue  # nothing to compare: wrong
            if not isinstance(gold, str):
                gold = str(gold)  # e.g. an int or float read from a dataset
            if not isinstance(pred, str):
                pred = str(pred)
            if boxed:
                content = extract_last_boxed(pred)
                if content is None:
                    no_box += 1
                    continue  # no answer: wrong, math-verify is not asked
                pred = _BOXED + "{" + content + "}"
            if self.fast_integer_path:
                r = integer_fast_path(gold, pred)
                if r is not None:
                    results[i] = r
                    fast += 1
                    continue
            slow.append((i, gold, pred))
        with self._stats_lock:
            self._calls += len(pairs)
            self._fast += fast
            self._no_box += no_box
        if slow:
            with self._lock:
                if self._closed:
                    raise RuntimeError("Grader is closed")
                for i, ok in self._run_slow(slow):
                    results[i] = ok
        return results

    def _ensure_worker(self) -> _Worker:
        w = self._worker
        if w is not None and w.proc.poll() is not None:  # died while idle: replace quietly
            w.kill()
            w = self._worker = None
        if w is None:
            w = self._worker = _Worker()
            with self._stats_lock:
                self._worker_starts += 1
        try:
            w.wait_ready(self.startup_timeout_s)
        except BaseException:
            w.kill()
            self._worker = None
            raise
        if self.last_startup_s is None or w.startup_s is not None:
            self.last_startup_s = w.startup_s
        return w

    def _restart(self, w: _Worker) -> None:
        w.kill()
        self._worker = _Worker()  # launch now; its start-up overlaps the caller's work
        with self._stats_lock:
            self._worker_starts += 1

    def _run_slow(self, items: list[tuple[int, str, str]]):
        pending = items
        send_failures = 0
        while pending:
            w = self._ensure_worker()
            try:
                try:
                    w.send.send(("batch", [(g, p) for _, g, p in pending]))
                except OSError:  # the worker died between calls (BrokenPipeError)
                    send_failures += 1
                    if send_failures > 2:
                        raise
                    w.kill()
                    self._worker = None
                    continue
                done = 0
                for k, (idx, _, _) in enumerate(pending):
                    if not w.recv.poll(self.timeout_s):
                        with self._stats_lock:
                            self._timeouts += 1
                        yield idx, False
                        done = k + 1
                        self._restart(w)
                        break
                    try:
                        j, ok = w.recv.recv()
                    except (EOFError, OSError):
                        with self._stats_lock:
                            self._worker_errors += 1
                        yield idx, False
                        done = k + 1
                        self._restart(w)
                        break
                    if j != k:  # protocol desync: should never happen
                        raise RuntimeError(f"grader worker answered item {j}, expected {k}")
                    yield idx, bool(ok)
                    done = k + 1
            except BaseException:
                # Interrupted mid-batch (KeyboardInterrupt, desync...): results still in
                # flight would poison the channel, so throw the worker away.
                if self._worker is w:
                    w.kill()
                    self._worker = None
                raise
            pending = pending[done:]

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker.  Further grading raises."""
        with self._lock:
            self._closed = True
            w, self._worker = self._worker, None
        if w is not None:
            if w.ready:
                w.stop()
            else:
                w.kill()

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            w = self._worker
            if w is not None:
                w.kill()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"Grader(timeout_s={self.timeout_s}, answer={self.answer!r}, "
                f"fast_integer_path={self.fast_integer_path}, "
                f"calls={self.calls}, timeouts={self.timeouts})")


def _reset_after_fork() -> None:
    global _SHARED_LOCK, _LAUNCHER_LOCK, _LAUNCHER
    _SHARED_LOCK = threading.Lock()
    _LAUNCHER_LOCK = threading.Lock()
    _LAUNCHER = None  # its thread did not survive the fork
    for g in list(_LIVE):
        g._after_fork_in_child()


def _close_all() -> None:
    # At interpreter exit a (daemon) thread may still be inside grade_many: do not
    # wait for it, just kill that worker.
    for g in list(_LIVE):
        try:
            if g._lock.acquire(timeout=0.1):
                g._lock.release()
                g.close()
            else:
                g._closed = True
                w = g._worker
                if w is not None:
                    w.proc.kill()
        except Exception:
            pass


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_close_all)

_SHARED: dict[tuple[float, str], Grader] = {}  # the process-wide graders, one per (timeout, answer mode)
_SHARED_LOCK = threading.Lock()


def shared_grader(timeout_s: float = 2.0, answer: str = "boxed") -> Grader:
    """The process-wide Grader for ``timeout_s`` and ``answer`` (otherwise default settings), created on
    first use.

    Every caller that does not own a Grader of its own (:func:`grade`, the evaluation tasks through
    :func:`ibtpo.eval.grading.get_grader`) shares these."""
    key = (float(timeout_s), str(answer))
    g = _SHARED.get(key)
    if g is None:
        with _SHARED_LOCK:
            g = _SHARED.get(key)
            if g is None:
                g = _SHARED[key] = Grader(timeout_s=key[0], answer=key[1])
    return g


def close_shared() -> None:
    """Close the process-wide graders (best effort); the next :func:`shared_grader` starts afresh."""
    with _SHARED_LOCK:
        graders = list(_SHARED.values())
        _SHARED.clear()
    for g in graders:
        try:
            g.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def default_grader() -> Grader:
    """The process-wide Grader with default settings (:func:`shared_grader`), created on first use."""
    return shared_grader()


def grade(gold: str, pred: str) -> bool:
    """``default_grader().grade(gold, pred)`` -- gold answer first, full completion second."""
    return default_grader().grade(gold, pred)
