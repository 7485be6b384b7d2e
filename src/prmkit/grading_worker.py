"""The math-verify worker behind ``grading.grade_answer(..., "math")``: one long-lived subprocess per process.

math-verify's own timeout uses SIGALRM, which works only in the main thread and cannot interrupt long
C-level arithmetic. So math-verify runs with its timeouts off in a worker subprocess; the caller waits at
most ``timeout_s`` for its answer, then kills and replaces the worker, and the comparison grades False
(``math_verify_equal`` caches it, so a pathological pair costs its timeout once). The worker caps its own
address space (``MEMORY_BYTES``) and CPU time, and is started as ``python -P`` on this file, loaded by
path: starting it never imports the prmkit package (torch). This module therefore imports only the
standard library. POSIX only.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import select
import subprocess
import sys
import threading
import time

STARTUP_TIMEOUT_S = 120.0  # importing sympy on a loaded machine
MEMORY_BYTES = 4 << 30  # a runaway expansion raises MemoryError (graded False), never swaps

# The worker loads this file by path, so starting it never imports the prmkit package (torch).
WORKER_BOOT = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_prmkit_grading_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "module.serve()\n"
)


class VerifyWorker:
    """One long-lived math-verify subprocess; a late answer kills it and the next call starts a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._ready = False

    def equal(self, pred: str, gold: str, timeout_s: float) -> bool:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()
            if not self._ready:
                self._await_ready()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps([pred, gold, timeout_s]).encode() + b"\n")
                self._proc.stdin.flush()
                line = self._readline(time.monotonic() + timeout_s)
            except OSError:  # the worker died (killed for CPU or memory by its own limits)
                line = None
            if line is None:
                self._spawn()  # kills the late worker; the new one imports sympy while the caller goes on
                return False
            return line == b"1"

    def _spawn(self) -> None:
        self.close(wait_s=0.0)
        # -P: the worker's sys.path does not start with the current directory (which may shadow stdlib).
        self._proc = subprocess.Popen(
            [sys.executable, "-P", "-c", WORKER_BOOT, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._buffer, self._ready = b"", False

    def _await_ready(self) -> None:
        self._ready = self._readline(time.monotonic() + STARTUP_TIMEOUT_S) == b"ready"
        if not self._ready:
            self.close(wait_s=0.0)
            raise RuntimeError("the math-verify grading worker did not start; see its error above")

    def _readline(self, deadline: float) -> bytes | None:
        """The worker's next line, or None when it is late or gone."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while b"\n" not in self._buffer:
            left_ms = (deadline - time.monotonic()) * 1000
            if left_ms <= 0 or not poller.poll(left_ms):
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def close(self, wait_s: float = 1.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # an idle worker exits on end of input
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def forget_after_fork(self) -> None:
        """In a forked child: the worker belongs to the parent; drop our copies of its pipes."""
        self._lock = threading.Lock()
        proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
            proc.returncode = 0  # not our child: keep Popen.__del__ from waiting on it


WORKER = VerifyWorker()
atexit.register(WORKER.close)
os.register_at_fork(after_in_child=WORKER.forget_after_fork)


@functools.lru_cache(maxsize=1 << 16)
def math_verify_equal(pred: str, gold: str, timeout_s: float) -> bool:
    return WORKER.equal(pred, gold, timeout_s)


# ------------------------------------------------------------------------------- inside the worker process


@functools.lru_cache(maxsize=1 << 14)
def _parsed(expr: str) -> tuple[object, ...]:
    from math_verify import parse

    return tuple(parse(f"\\boxed{{{expr}}}", parsing_timeout=None))  # type: ignore[arg-type]


def verify_in_worker(pred: str, gold: str) -> bool:
    from math_verify import verify

    g, p = _parsed(gold), _parsed(pred)
    return bool(g and p and verify(list(g), list(p), timeout_seconds=None))


def _limit_cpu(timeout_s: float) -> None:
    """Orphan guard: if the parent dies mid-comparison, the kernel still stops the work soon after."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + timeout_s) + 2
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def serve() -> None:
    """Worker loop: a JSON ``[pred, gold, timeout_s]`` per line in, "1" or "0" per line out."""
    import logging
    import resource

    logging.disable(logging.CRITICAL)  # math-verify warns that its timeouts are off: the parent keeps time
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard == resource.RLIM_INFINITY or hard > MEMORY_BYTES:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, hard))
    import math_verify  # noqa: F401  (import errors surface here, on stderr, before "ready")

    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        pred, gold, timeout_s = json.loads(line)
        _limit_cpu(timeout_s)
        try:
            ok = verify_in_worker(pred, gold)
        except Exception:  # MemoryError, RecursionError and sympy's own errors: not equal
            ok = False
        out.write(b"1\n" if ok else b"0\n")
        out.flush()
