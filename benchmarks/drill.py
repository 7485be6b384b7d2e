"""Kill drill: ``kill -9`` the long commands at random moments, resume them, and compare each result with
an uninterrupted run of the same command.

Commands drilled: ``prmkit sample``, ``annotate``, ``train prm``, ``train orm``, ``train value``,
``score``, ``rl ppo`` and ``demo`` itself, all at ``recipes/world-quick.yaml`` sizes on inputs prepared
once (a small world, a tiny generator, samples, labels and a PRM). For each command:

1. an uninterrupted reference run in a fresh directory measures its wall time T;
2. a chain of runs in another fresh directory: each run is killed (SIGKILL to its process group) at a
   moment drawn uniformly from (0, T), so kills land in imports and model loading, mid-write and
   mid-training; the same command is rerun until it exits 0 (a run that ends before its kill moment
   ends the chain). Chains are repeated until the stage has ``--kills-per-stage`` kills;
3. every finished chain is compared with the reference: per JSONL output, records lost, duplicated and
   torn lines (lines that do not parse as JSON), whether the records are the same (as a set, volatile
   fields such as timings dropped) and whether the file is byte-equal; per model directory, whether the
   safetensors weights are bit-identical (else the largest difference); per JSON summary
   (``report.json``, ``prmkit_reward.json``, ``prmkit_rl.json``), whether the numbers are equal with
   timings and paths dropped.

After each kill the drill also notes what the kill left behind: a torn last line, a checkpoint folder
without ``trainer_state.json``, a temporary file. A rerun that exits non-zero is a failed resume: its
error is reported and the chain starts over. Prints one JSON line.

    PYTHONPATH=src python benchmarks/drill.py --kills-per-stage 7 --seed 0      # 15-25 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUICK = str(ROOT / "recipes" / "world-quick.yaml")
# fields that legitimately differ between two runs of the same command
VOLATILE_SUFFIXES = ("runtime", "per_second", "seconds")
VOLATILE_KEYS = {"timings", "run_dir"}


def _sets(*items: str) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def _train_sets(stage: str, extra: tuple[str, ...] = ()) -> list[str]:
    return _sets(
        f"{stage}.max_steps=30", f"{stage}.save_steps=4", f"{stage}.batch_size=8", f"{stage}.seed=0", *extra
    )


PPO = (
    "ppo.iterations=6", "ppo.problems_per_iteration=4", "ppo.samples_per_problem=2", "ppo.max_new_tokens=64",
    "ppo.save_every=2", "ppo.eval_problems=8", "ppo.eval_every=3", "ppo.minibatch_size=4", "ppo.seed=0",
)  # fmt: skip


@dataclass
class Stage:
    name: str
    args: list[str]  # after `python -m prmkit.cli`; "{out}" is the run's fresh directory

    def command(self, out: Path) -> list[str]:
        return [sys.executable, "-m", "prmkit.cli", *(a.replace("{out}", str(out)) for a in self.args)]


def stages(prep: Path) -> list[Stage]:
    """The drilled commands."""
    p = str(prep)
    world = ["--problems", p, "--split", "train"]
    return [
        Stage("sample", ["sample", "--model", f"{p}/generator", *world, "--limit", "80",
                         "--out", "{out}/samples.jsonl", "--recipe", QUICK,
                         *_sets("sample.chunk=4", "sample.seed=0")]),
        Stage("annotate", ["annotate", "--model", f"{p}/generator", "--samples", f"{p}/samples.jsonl",
                           *world, "--limit", "160", "--out", "{out}/labels.jsonl", "--recipe", QUICK,
                           *_sets("annotate.chunk=8", "annotate.seed=0")]),
        Stage("train prm", ["train", "prm", "--labels", f"{p}/labels.jsonl", *world, "--out", "{out}/prm",
                            "--recipe", QUICK, *_train_sets("prm")]),
        Stage("train orm", ["train", "orm", "--samples", f"{p}/samples.jsonl", *world, "--out", "{out}/orm",
                            "--recipe", QUICK, *_train_sets("orm")]),
        Stage("train value", ["train", "value", "--samples", f"{p}/samples.jsonl", *world,
                              "--out", "{out}/value", "--recipe", QUICK, *_train_sets("value")]),
        Stage("score", ["score", "--model", f"{p}/prm", "--samples", f"{p}/samples.jsonl", *world,
                        "--out", "{out}/scores.jsonl", "--batch-size", "8"]),
        Stage("rl ppo", ["rl", "ppo", "--policy", f"{p}/generator", "--problems", p,
                         "--reward-model", f"{p}/prm", "--reward", "process", "--out", "{out}/ppo",
                         *_sets(*PPO)]),
        Stage("demo", ["demo", "--recipe", QUICK, "--run-dir", "{out}/run",
                       *_sets("rl.methods=[process]", "rl.seeds=1", "rl.bon_samples=2",
                              *(x for x in PPO if not x.startswith(("ppo.seed", "ppo.eval_problems"))))]),
    ]  # fmt: skip


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        PYTHONPATH=str(ROOT / "src"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONHASHSEED="0",
    )
    return e


def run(
    cmd: list[str], log: Path, kill_at: float | None = None, limit: float = 900.0
) -> tuple[int, float, bool]:
    """Run ``cmd`` (output appended to ``log``), SIGKILL its process group at ``kill_at`` seconds if it is
    still running then. Returns (exit status, seconds, killed)."""
    with log.open("ab") as f:
        f.write(f"\n$ {' '.join(cmd)}  # kill at {kill_at}\n".encode())
        f.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=f, stderr=f, start_new_session=True)
        try:
            rc = proc.wait(timeout=kill_at if kill_at is not None else limit)
            return rc, time.perf_counter() - t0, False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9, time.perf_counter() - t0, kill_at is not None


def last_lines(log: Path, n: int = 3) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return " | ".join(lines[-n:])[-600:]


# ---------------------------------------------------------------- what a kill leaves, what a run produced


def outputs(root: Path) -> dict[str, list[Path]]:
    """The compared outputs under ``root``: JSONL files, model weights and JSON summaries (checkpoint
    folders are the stages' business, not output)."""
    out: dict[str, list[Path]] = {"jsonl": [], "weights": [], "json": []}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(
            part.endswith(".checkpoints") or part.startswith(".") for part in rel.parts
        ):
            continue
        if path.suffix == ".jsonl":
            out["jsonl"].append(rel)
        elif path.name == "model.safetensors":
            out["weights"].append(rel)
        elif path.name in ("report.json", "prmkit_reward.json", "prmkit_rl.json"):
            out["json"].append(rel)
    return out


def torn_tail(path: Path) -> bool:
    data = path.read_bytes()
    if not data:
        return False
    if not data.endswith(b"\n"):
        return True
    try:
        json.loads(data.rstrip(b"\n").rsplit(b"\n", 1)[-1])
    except ValueError:
        return True
    return False


def leftovers(root: Path) -> dict[str, int]:
    """What a kill left behind under ``root``."""
    found = Counter()
    for path in root.rglob("*"):
        if path.is_file() and path.suffix == ".jsonl" and torn_tail(path):
            found["torn_last_line"] += 1
        if (
            path.is_dir()
            and path.name.startswith("checkpoint-")
            and not (path / "trainer_state.json").exists()
        ):
            found["checkpoint_without_trainer_state"] += 1
        if path.name.endswith(".tmp"):
            found["temporary_file"] += 1
    return dict(found)


def fingerprint(root: Path) -> int:
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def record_key(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "problem_id" in obj and "sample_id" in obj:
            return (obj["problem_id"], obj["sample_id"])
        for name in ("iteration", "id"):
            if name in obj:
                return obj[name]
    return json.dumps(obj, sort_keys=True)


def stable(obj: Any, root: Path) -> Any:
    """``obj`` without timings and with the run's own directory written as ``<OUT>``."""
    if isinstance(obj, dict):
        return {
            k: stable(v, root)
            for k, v in obj.items()
            if k not in VOLATILE_KEYS and not k.startswith("t_") and not k.endswith(VOLATILE_SUFFIXES)
        }
    if isinstance(obj, list):
        return [stable(v, root) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(root), "<OUT>")
    return obj


def read_lines(path: Path) -> tuple[list[Any], int]:
    """Parsed records and the number of lines that do not parse (torn)."""
    records, torn = [], 0
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            torn += 1
    return records, torn


def diff_paths(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two JSON values differ (the first few paths)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += diff_paths(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in diff_paths(x, y, f"{where}[{i}]")
        ]
    same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return [] if same else [where or "."]


def compare(ref: Path, got: Path) -> dict[str, Any]:
    """One finished chain's outputs against the reference run's."""
    from safetensors.torch import load_file

    want, have = outputs(ref), outputs(got)
    result: dict[str, Any] = {
        "lost": 0, "duplicated": 0, "torn": 0, "differences": [], "byte_equal": [], "weights_equal": []
    }  # fmt: skip
    diffs = result["differences"]
    for kind in want:
        for rel in sorted(set(want[kind]) - set(have[kind])):
            diffs.append(f"{rel}: missing")
    for rel in want["jsonl"]:
        if rel not in have["jsonl"]:
            continue
        (a, _), (b, torn) = read_lines(ref / rel), read_lines(got / rel)
        a, b = [stable(r, ref) for r in a], [stable(r, got) for r in b]
        keys_a, keys_b = Counter(map(record_key, a)), Counter(map(record_key, b))
        lost = sum((keys_a - keys_b).values())
        dup = sum(c - 1 for c in keys_b.values() if c > 1)
        result["lost"] += lost
        result["duplicated"] += dup
        result["torn"] += torn
        same_set = Counter(json.dumps(r, sort_keys=True) for r in a) == Counter(
            json.dumps(r, sort_keys=True) for r in b
        )
        byte_equal = (ref / rel).read_bytes() == (got / rel).read_bytes()
        if not same_set:
            changed = sum(1 for k in keys_a if keys_b.get(k))
            by_key_a = {record_key(r): r for r in a}
            differing = [k for k, r in ((record_key(r), r) for r in b) if k in by_key_a and by_key_a[k] != r]
            diffs.append(
                f"{rel}: records differ (lost {lost}, duplicated {dup}, torn {torn}, "
                f"{len(differing)} of {changed} shared keys changed"
                + (
                    f", e.g. {differing[0]}: {diff_paths(by_key_a[differing[0]], next(r for r in b if record_key(r) == differing[0]))[:3]}"
                    if differing
                    else ""
                )
                + ")"
            )
        elif a != b:
            diffs.append(f"{rel}: same records, other order")
        result["byte_equal"].append(byte_equal)  # False also where only timings differ (PPO's t_*)
    for rel in want["weights"]:
        if rel not in have["weights"]:
            continue
        same = (ref / rel).read_bytes() == (got / rel).read_bytes()
        result["weights_equal"].append(same)
        if same:
            continue
        ta, tb = load_file(str(ref / rel)), load_file(str(got / rel))
        if set(ta) != set(tb):
            diffs.append(f"{rel}: other tensors")
            continue
        worst = max((ta[k].float() - tb[k].float()).abs().max().item() for k in ta)
        diffs.append(
            f"{rel}: weights differ (max |diff| {worst:.3g})"
            if worst
            else f"{rel}: same tensors, other bytes"
        )
    for rel in want["json"]:
        if rel not in have["json"]:
            continue
        a = stable(json.loads((ref / rel).read_text()), ref)
        b = stable(json.loads((got / rel).read_text()), got)
        if a != b:
            paths = diff_paths(a, b)
            diffs.append(f"{rel}: {len(paths)} numbers differ, e.g. {', '.join(paths[:4])}")
    return result


# ---------------------------------------------------------------- the drill


def prepare(prep: Path, log: Path) -> float:
    """The inputs every drilled command reads (each command skips what it finished before)."""
    t0 = time.perf_counter()
    p = str(prep)
    world = ["--problems", p, "--split", "train"]
    steps = [
        ["world", "--out", p, "--recipe", QUICK],
        ["sft", "--problems", p, "--out", f"{p}/generator", "--recipe", QUICK],
        ["sample", "--model", f"{p}/generator", *world, "--limit", "80", "--out", f"{p}/samples.jsonl",
         "--recipe", QUICK, *_sets("sample.chunk=4")],
        ["annotate", "--model", f"{p}/generator", "--samples", f"{p}/samples.jsonl", *world, "--limit", "160",
         "--out", f"{p}/labels.jsonl", "--recipe", QUICK, *_sets("annotate.chunk=8")],
        ["train", "prm", "--labels", f"{p}/labels.jsonl", *world, "--out", f"{p}/prm", "--recipe", QUICK,
         *_train_sets("prm")],
    ]  # fmt: skip
    for args in steps:
        rc, _, _ = run([sys.executable, "-m", "prmkit.cli", *args], log)
        if rc != 0:
            raise SystemExit(
                f"drill: preparing inputs failed: prmkit {' '.join(args[:2])}: {last_lines(log)}"
            )
    return time.perf_counter() - t0


@dataclass
class StageReport:
    kills: int = 0
    chains: int = 0
    reference_seconds: float = 0.0
    kill_moments: list[float] = field(default_factory=list)  # fractions of T
    kills_after_progress: int = 0  # the run had written something before it was killed
    left_by_kills: Counter = field(default_factory=Counter)
    failed_resumes: list[str] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    torn: int = 0
    leftovers_at_end: Counter = field(default_factory=Counter)
    differences: list[str] = field(default_factory=list)
    identical_chains: int = 0
    jsonl_byte_equal: list[bool] = field(default_factory=list)
    weights_bit_identical: list[bool] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "kills": self.kills,
            "chains": self.chains,
            "identical_chains": self.identical_chains,
            "reference_seconds": round(self.reference_seconds, 1),
            "kill_moments": sorted(round(x, 2) for x in self.kill_moments),
            "kills_after_progress": self.kills_after_progress,
            "left_by_kills": dict(self.left_by_kills),
            "failed_resumes": self.failed_resumes,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "torn_lines": self.torn,
            "leftovers_at_end": dict(self.leftovers_at_end),
            "differences": sorted(set(self.differences)),
            "jsonl_byte_equal": f"{sum(self.jsonl_byte_equal)}/{len(self.jsonl_byte_equal)}",
            "weights_bit_identical": f"{sum(self.weights_bit_identical)}/{len(self.weights_bit_identical)}",
        }


def drill_stage(stage: Stage, work: Path, kills: int, rng: random.Random, budget: float) -> StageReport:
    rep = StageReport()
    slug = stage.name.replace(" ", "_")
    base = work / slug
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    log = base / "log.txt"
    ref = base / "reference"
    ref.mkdir()
    rc, T, _ = run(stage.command(ref), log)
    if rc != 0:
        rep.failed_resumes.append(f"reference run failed (exit {rc}): {last_lines(log)}")
        return rep
    rep.reference_seconds = T
    t_end = time.perf_counter() + budget
    while rep.kills < kills and time.perf_counter() < t_end and len(rep.failed_resumes) < 3:
        rep.chains += 1
        out = base / f"chain{rep.chains}"
        out.mkdir()
        while True:
            before = fingerprint(out)
            moment = rng.uniform(0, T) if rep.kills < kills else None
            rc, _, killed = run(stage.command(out), log, kill_at=moment, limit=5 * T + 120)
            if killed:
                rep.kills += 1
                rep.kill_moments.append(moment / T)
                rep.kills_after_progress += fingerprint(out) != before
                rep.left_by_kills.update(leftovers(out))
                continue
            if rc != 0:
                rep.failed_resumes.append(f"chain {rep.chains}: exit {rc}: {last_lines(log)}")
                break
            found = compare(ref, out)
            rep.lost += found["lost"]
            rep.duplicated += found["duplicated"]
            rep.torn += found["torn"]
            rep.differences += found["differences"]
            rep.identical_chains += not found["differences"]
            rep.jsonl_byte_equal += found["byte_equal"]
            rep.weights_bit_identical += found["weights_equal"]
            rep.leftovers_at_end.update(leftovers(out))
            break
    return rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/prmkit-drill"), help="scratch directory")
    ap.add_argument("--kills-per-stage", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    ap.add_argument("--stages", default="", help="comma-separated subset, e.g. 'sample,train prm'")
    ap.add_argument("--stage-budget", type=float, default=300.0, help="seconds of chains per stage at most")
    args = ap.parse_args()
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    prep = args.work / "prep"
    prep_seconds = prepare(prep, args.work / "prep.log")
    rng = random.Random(args.seed)
    chosen = [s.strip() for s in args.stages.split(",") if s.strip()]
    reports = {}
    for stage in stages(prep):
        if chosen and stage.name not in chosen:
            continue
        rep = drill_stage(stage, args.work, args.kills_per_stage, rng, args.stage_budget)
        reports[stage.name] = rep.summary()
        print(f"drill: {stage.name}: {json.dumps(reports[stage.name])}", file=sys.stderr, flush=True)
    total = {k: sum(r[k] for r in reports.values()) for k in ("kills", "lost", "duplicated", "torn_lines")}
    print(
        json.dumps(
            {
                "benchmark": "kill_drill",
                "seed": args.seed,
                "kills_per_stage": args.kills_per_stage,
                **total,
                "failed_resumes": sum(len(r["failed_resumes"]) for r in reports.values()),
                "stages_identical": sorted(
                    n for n, r in reports.items() if r["chains"] and r["identical_chains"] == r["chains"]
                ),
                "prep_seconds": round(prep_seconds, 1),
                "seconds": round(time.perf_counter() - t0, 1),
                "stages": reports,
            }
        )
    )


if __name__ == "__main__":
    main()
