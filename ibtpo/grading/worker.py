"""The grading worker: the child interpreter that runs math-verify, and the protocol it speaks.

Why a child process
-------------------
math-verify bounds its own run time with ``signal.alarm`` (SIGALRM).  That only
works in the main thread of the main interpreter: from any other thread it
raises, and with its timeouts disabled some inputs never return (e.g. ``verify``
on ``\\boxed{9^{9^{9^{9}}}}`` spins in SymPy for ever).  Neither is acceptable
for a reward function called from rollout threads or pool workers.  So all
math-verify work runs in one persistent child process per
:class:`~ibtpo.grading.Grader`, with math-verify's own timeouts disabled
(``parse(..., parsing_timeout=None)``, ``verify(..., timeout_seconds=None)``), and
the parent enforces the deadline (:mod:`ibtpo.grading.supervisor`).

Inside the worker the call is ``verify(parse(gold_wrapped), parse(pred))`` -- gold
first, as math-verify documents (``verify`` is not symmetric).  The gold is wrapped
as ``$gold$`` before parsing so that LaTeX golds parse as LaTeX (left as is when it
already contains ``\\boxed`` or starts with ``$``; :func:`wrap_gold`).

Protocol
--------
The child is started with :func:`command` (a fresh ``sys.executable`` that loads
this very file by path, not ``import ibtpo``, so whatever the package imports never
slows the worker down; hence this module imports only the standard library).  It
talks over two pipes framed by ``multiprocessing.connection.Connection``:

* child -> parent, once: ``("ready", pid)`` after importing math-verify and one warm-up grade;
* parent -> child: ``("batch", [(gold, pred), ...])`` or ``("stop", None)``;
* child -> parent, per batch item, in order: ``(i, ok)`` with ``i`` the item's index in the batch.

The worker exits when its pipe closes, on ``stop``, and (Linux) is SIGKILLed by the
kernel when the thread that launched it exits (PR_SET_PDEATHSIG), even mid-computation.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from multiprocessing.connection import Connection

__all__ = ["command", "main", "wrap_gold"]

# Runs as ``python -c _BOOT rfd wfd sys.path parent_pid this_file`` and loads this file by path.
_BOOT = (
    "import sys, json, importlib.util\n"
    "sys.path[:] = json.loads(sys.argv[3])\n"
    "spec = importlib.util.spec_from_file_location('_ibtpo_grader_worker', sys.argv[5])\n"
    "mod = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(mod)\n"
    "mod.main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4]))\n"
)
_THIS_FILE = os.path.abspath(__file__)


def command(read_fd: int, write_fd: int) -> list[str]:
    """The command line of a worker that reads batches from ``read_fd`` and writes results to
    ``write_fd`` (both inherited), with this process as the parent it watches."""
    return [sys.executable, "-c", _BOOT, str(read_fd), str(write_fd), json.dumps(sys.path),
            str(os.getpid()), _THIS_FILE]


def wrap_gold(gold: str) -> str:
    """The gold as math-verify parses it: ``$gold$`` (LaTeX), unless it holds ``\\boxed`` or starts with ``$``."""
    g = gold.strip()
    if "\\boxed" in g or g.startswith("$"):
        return g
    return f"${g}$"


def _parent_watchdog(parent_pid: int) -> None:  # pragma: no cover - runs in the child
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)


def _die_with_parent(parent_pid: int) -> None:  # pragma: no cover - runs in the child
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


def _verifier():  # pragma: no cover - runs in the child
    """``one(gold, pred) -> bool``: math-verify with its own timeouts off (the parent is the timeout)."""
    import functools
    import logging

    # The "timeout is disabled" warning is expected here: the parent is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    @functools.lru_cache(maxsize=4096)
    def parse_gold(gold: str):
        return parse(wrap_gold(gold), parsing_timeout=None)

    def one(gold: str, pred: str) -> bool:
        try:
            g = parse_gold(gold)
            p = parse(pred, parsing_timeout=None)
            return bool(verify(g, p, timeout_seconds=None))
        except Exception:
            return False

    return one


def main(rfd: int, wfd: int, parent_pid: int) -> None:  # pragma: no cover - runs in the child
    """The worker's entry point (see the module docstring for the protocol); never returns."""
    _die_with_parent(parent_pid)
    inbox = Connection(rfd, writable=False)
    outbox = Connection(wfd, readable=False)
    one = _verifier()
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
