"""The demo's clock and its worker processes: stages timed one by one, independent jobs run side by side.

``Timer.run`` runs a stage in this process and adds its wall time to ``timings.json`` (per stage, kept
across resumed runs). ``Timer.run_all`` runs a group of independent jobs (the verifiers' training, one
verifier's scores each, the RL runs) on ``workers`` processes, each job on ``threads`` torch threads,
and returns their results in the order given. A job's output does not depend on where it ran: every job
seeds its own random numbers and a worker uses the same thread count as the demo, so the demo's numbers
are the same with one worker or several (``docs/benchmarks.md``); only its wall time changes.

Times: ``timings.json`` keeps each job's own seconds, so the per-stage table reads the same either way;
``wall.json`` keeps the wall time of the whole run, which side-by-side jobs make shorter than their sum.

Workers are spawned (no fork of a process that holds torch's threads) and started once per group. A
worker exits when the process that started it dies, so a killed demo leaves no job writing into the run
directory while its rerun resumes. When a job fails, no other job starts, the ones running finish (their
outputs resume like any other), and the error is raised.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from prmkit.io import atomic_write_json


@dataclass(frozen=True)
class Job:
    """One stage of a group: ``fn(*args, **kwargs)`` timed as ``name``, started once the jobs named in
    ``after`` have finished (a job reads an earlier one's output from its files, not from its result);
    ``done`` when it only reads finished output (run here, not timed). ``fn`` must be a module-level
    function and its arguments picklable, since a worker process runs it."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    done: bool = False


class Timer:
    """Wall time per stage (``timings.json``) and of the whole run (``wall.json``), across resumed runs;
    ``run_all`` puts groups of independent jobs on ``workers`` processes of ``threads`` torch threads."""

    def __init__(self, path: Path, workers: int = 1, threads: int = 1):
        self.path = Path(path)
        self.wall_path = self.path.with_name("wall.json")
        self.workers, self.threads = workers, threads
        self.times: dict[str, float] = json.loads(self.path.read_text()) if self.path.exists() else {}
        # a run directory that predates wall.json ran every stage one after another
        self.wall: float = (
            json.loads(self.wall_path.read_text())["seconds"]
            if self.wall_path.exists()
            else sum(self.times.values())
        )

    def _add(self, name: str | None, seconds: float, wall: float) -> None:
        if name is not None:
            self.times[name] = self.times.get(name, 0.0) + seconds
            atomic_write_json(self.path, self.times)
        self.wall += wall
        atomic_write_json(self.wall_path, {"seconds": self.wall})

    def run(self, name: str, fn, *args, done: bool = False, **kwargs):
        """Run a stage here; its time is added unless ``done`` says it only reads finished output."""
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        if not done:
            elapsed = time.perf_counter() - t0
            self._add(name, elapsed, elapsed)
        return result

    def run_all(self, jobs: list[Job]) -> dict[str, Any]:
        """Every job's result by name. With one worker (or one job to run) here, one after another in the
        order given, which must list a job after those it waits for; else side by side on up to
        ``workers`` processes, each free worker taking the first job in that order whose ``after`` jobs
        have finished (so list the longest first)."""
        names = [j.name for j in jobs]
        for i, job in enumerate(jobs):
            if unknown := set(job.after) - set(names[:i]):
                raise ValueError(
                    f"job {job.name} waits for {', '.join(sorted(unknown))}, not listed before it"
                )
        todo = [j for j in jobs if not j.done]
        if self.workers <= 1 or len(todo) <= 1:
            return {j.name: self.run(j.name, j.fn, *j.args, done=j.done, **j.kwargs) for j in jobs}
        results: dict[str, Any] = {}
        over = {j.name for j in jobs if j.done}  # the jobs whose outputs the others may read
        t0 = time.perf_counter()
        with ProcessPoolExecutor(
            min(self.workers, len(todo)), mp_context=get_context("spawn"), initializer=_start_worker,
            initargs=(self.threads, os.getpid()),
        ) as pool:  # fmt: skip
            running: dict[Any, Job] = {}
            while todo or running:
                for job in [j for j in todo if over.issuperset(j.after)]:
                    if len(running) == self.workers:
                        break
                    running[pool.submit(_timed, job.fn, job.args, job.kwargs)] = job
                    todo.remove(job)
                ended, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in ended:
                    job = running.pop(fut)
                    if fut.exception() is not None:
                        raise fut.exception()  # the pool's exit lets the running jobs finish
                    results[job.name], seconds = fut.result()
                    over.add(job.name)
                    self._add(job.name, seconds, 0.0)
        self._add(None, 0.0, time.perf_counter() - t0)
        for job in jobs:
            if job.done:
                results[job.name] = job.fn(*job.args, **job.kwargs)
        return {name: results[name] for name in names}


def finished(path: Path, records: int) -> bool:
    """Whether an appended JSONL output holds all its ``records`` (one per line): its job only reads it.

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "x.jsonl"
    >>> finished(f, 2), f.write_text('{}\\n{}\\n') and finished(f, 2), finished(f, 3)
    (False, True, False)
    """
    if not path.exists():
        return False
    with path.open("rb") as fh:
        return sum(1 for _ in fh) == records


def _timed(fn, args, kwargs) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def _start_worker(threads: int, parent: int) -> None:
    """A worker's setup: torch's thread count, and an exit as soon as its parent is gone (a ``kill -9``
    of the demo must not leave a job writing into the run directory)."""
    import torch

    torch.set_num_threads(threads)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
