"""The demo's clock and worker processes: results in order, waiting on earlier jobs, errors, wall time, and
no worker left running when the demo is killed."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prmkit.jobs import Job, Timer


def test_one_worker_runs_in_order_here_and_times_each_job(tmp_path):
    timer = Timer(tmp_path / "timings.json")
    out = timer.run_all(
        [Job("a", math.factorial, (5,)), Job("b", os.getpid), Job("c", math.factorial, (3,), done=True)]
    )
    assert out == {"a": 120, "b": os.getpid(), "c": 6}
    times = json.loads((tmp_path / "timings.json").read_text())
    assert sorted(times) == ["a", "b"]  # a done job only reads finished output: not timed
    wall = json.loads((tmp_path / "wall.json").read_text())["seconds"]
    assert wall == pytest.approx(sum(times.values()))


def test_two_workers_run_elsewhere_and_keep_the_order(tmp_path):
    timer = Timer(tmp_path / "timings.json", workers=2, threads=1)
    jobs = [
        Job("pid1", os.getpid),
        Job("sleep", time.sleep, (0.2,)),
        Job("pid2", os.getpid, after=("sleep",)),
    ]
    out = timer.run_all(jobs)
    assert list(out) == ["pid1", "sleep", "pid2"]
    assert os.getpid() not in (out["pid1"], out["pid2"])
    assert timer.times["sleep"] >= 0.2
    # side by side, the wall time is at most the sum of the jobs' own times (plus starting the workers)
    again = Timer(tmp_path / "timings.json")
    assert again.times == timer.times and again.wall == pytest.approx(timer.wall)


def test_a_job_must_follow_those_it_waits_for(tmp_path):
    with pytest.raises(ValueError, match="job b waits for a, not listed before it"):
        Timer(tmp_path / "t.json").run_all([Job("b", os.getpid, after=("a",)), Job("a", os.getpid)])


def test_a_failing_job_raises_its_error_and_starts_nothing_after(tmp_path):
    timer = Timer(tmp_path / "timings.json", workers=2, threads=1)
    jobs = [Job("bad", math.sqrt, (-1,)), Job("later", os.getpid, after=("bad",))]
    with pytest.raises(ValueError, match="math domain error"):
        timer.run_all(jobs + [Job("other", os.getpid)])
    assert "later" not in timer.times


def test_a_run_dir_from_before_wall_json_counts_its_stages_as_wall_time(tmp_path):
    (tmp_path / "timings.json").write_text(json.dumps({"sft": 3.0, "score": 2.0}))
    assert Timer(tmp_path / "timings.json").wall == 5.0


DRIVER = """
import sys, time
from pathlib import Path
from prmkit.jobs import Job, Timer
out = Path(sys.argv[1])
Timer(out / "timings.json", workers=2, threads=1).run_all(
    [Job("a", time.sleep, (60,)), Job("b", time.sleep, (60,))]
)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc (Linux)")
def test_a_killed_demo_leaves_no_worker_running(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)])
    try:
        deadline = time.time() + 60
        workers: list[int] = []
        while len(workers) < 2 and time.time() < deadline:  # wait for both workers to start their job
            workers = _children(driver.pid)
            time.sleep(0.2)
        assert len(workers) >= 2, "the workers did not start"
        time.sleep(3)  # their setup done, both in time.sleep(60)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 10
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "a worker outlived the demo"
    finally:
        driver.kill()


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s children that run Python (the spawned workers; not the resource tracker)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == pid and b"spawn_main" in cmd:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"  # a zombie has exited
