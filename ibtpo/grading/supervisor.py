"""Process supervision: starting grading workers, the hard per-item deadline, restarts and kills.

Process model
-------------
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
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from multiprocessing.connection import Connection

from . import worker

__all__ = ["Supervisor", "WorkerProcess"]


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


def _reset_after_fork() -> None:
    global _LAUNCHER_LOCK, _LAUNCHER
    _LAUNCHER_LOCK = threading.Lock()
    _LAUNCHER = None  # its thread did not survive the fork


os.register_at_fork(after_in_child=_reset_after_fork)


class WorkerProcess:
    """One child interpreter (:mod:`ibtpo.grading.worker`) and its two pipe ends."""

    def __init__(self) -> None:
        r_child, w_parent = os.pipe()  # parent -> child
        r_parent, w_child = os.pipe()  # child -> parent
        try:
            self.proc = _launch(worker.command(r_child, w_child), (r_child, w_child))
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


class Supervisor:
    """The worker of one Grader: started lazily, replaced when it dies or misses a deadline.

    ``stats`` is the Grader's tally (anything with ``add(**counts)``); the supervisor counts
    ``worker_starts``, ``timeouts`` and ``worker_errors`` there.  :meth:`grade` is serialised by
    :attr:`lock`, the lock around the worker channel.
    """

    def __init__(self, stats) -> None:
        self.stats = stats
        self.lock = threading.Lock()  # the worker channel
        self.worker: WorkerProcess | None = None
        self.closed = False
        self.last_startup_s: float | None = None

    def grade(self, items: list[tuple[int, str, str]], timeout_s: float,
              startup_timeout_s: float) -> list[tuple[int, bool]]:
        """``(idx, ok)`` for every ``(idx, gold, pred)`` of ``items``, in order, each under ``timeout_s``."""
        with self.lock:
            if self.closed:
                raise RuntimeError("Grader is closed")
            return list(self._stream(items, timeout_s, startup_timeout_s))

    def _ensure_worker(self, startup_timeout_s: float) -> WorkerProcess:
        w = self.worker
        if w is not None and w.proc.poll() is not None:  # died while idle: replace quietly
            w.kill()
            w = self.worker = None
        if w is None:
            w = self.worker = WorkerProcess()
            self.stats.add(worker_starts=1)
        try:
            w.wait_ready(startup_timeout_s)
        except BaseException:
            w.kill()
            self.worker = None
            raise
        if self.last_startup_s is None or w.startup_s is not None:
            self.last_startup_s = w.startup_s
        return w

    def _restart(self, w: WorkerProcess) -> None:
        w.kill()
        self.worker = WorkerProcess()  # launch now; its start-up overlaps the caller's work
        self.stats.add(worker_starts=1)

    def _stream(self, items: list[tuple[int, str, str]], timeout_s: float, startup_timeout_s: float):
        pending = items
        send_failures = 0
        while pending:
            w = self._ensure_worker(startup_timeout_s)
            try:
                try:
                    w.send.send(("batch", [(g, p) for _, g, p in pending]))
                except OSError:  # the worker died between calls (BrokenPipeError)
                    send_failures += 1
                    if send_failures > 2:
                        raise
                    w.kill()
                    self.worker = None
                    continue
                done = 0
                for k, (idx, _, _) in enumerate(pending):
                    if not w.recv.poll(timeout_s):
                        self.stats.add(timeouts=1)
                        yield idx, False
                        done = k + 1
                        self._restart(w)
                        break
                    try:
                        j, ok = w.recv.recv()
                    except (EOFError, OSError):
                        self.stats.add(worker_errors=1)
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
                if self.worker is w:
                    w.kill()
                    self.worker = None
                raise
            pending = pending[done:]

    def close(self) -> None:
        """Stop the worker; further :meth:`grade` calls raise."""
        with self.lock:
            self.closed = True
            w, self.worker = self.worker, None
        if w is not None:
            if w.ready:
                w.stop()
            else:
                w.kill()

    def close_at_exit(self) -> None:
        """:meth:`close`, unless a (daemon) thread is still grading: then just kill its worker."""
        if self.lock.acquire(timeout=0.1):
            self.lock.release()
            self.close()
        else:
            self.closed = True
            w = self.worker
            if w is not None:
                w.proc.kill()

    def kill(self) -> None:
        """Kill the worker without waiting for the channel (garbage collection)."""
        w = self.worker
        if w is not None:
            w.kill()

    def forget(self) -> None:
        """In a forked child: drop the inherited worker handle without touching the parent's process."""
        w = self.worker
        if w is not None:
            w.forget()
