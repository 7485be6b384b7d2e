"""PRM-guided search at equal compute: best-of-N, weighted SC, beam search and DVTS on world problems.

Runs ``evaluate.search.run_comparison`` (the demo's search stage) with a run directory's generator and
PRM, and reports per method and budget: accuracy (mean and 95 % interval over seeds), sampled tokens,
PRM calls, prompt tokens encoded and wall time per problem; and, at equal accuracy, the tokens and PRM
calls each method needs to reach best-of-N's accuracy at its largest budget (interpolated between
budgets on log tokens; null where a method never reaches it); and per strategy the seconds spent in
the policy's ``generate`` and in the PRM's ``score`` (all budgets and seeds; zero for a run that
resumed finished results, so give a fresh ``--out-dir`` for timings). Prints one JSON line.

    python benchmarks/search.py --run-dir runs/world --out-dir /tmp/search-bench
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from prmkit.config import load_recipe, stage_config
from prmkit.evaluate.search import run_comparison
from prmkit.io import read_jsonl
from prmkit.policy.hf import HFPolicy
from prmkit.reward import load_reward_model
from prmkit.types import Problem


def at_accuracy(rows: list[dict], target: float, key: str) -> float | None:
    """``key`` (tokens, prm_calls) where the method's accuracy first reaches ``target``, linear in log
    ``key`` between its budgets."""
    pts = sorted(rows, key=lambda r: r["tokens"])
    for a, b in zip([None, *pts], pts, strict=False):
        if b["accuracy"] >= target:
            if a is None or b["accuracy"] == a["accuracy"]:
                return b[key]
            w = (target - a["accuracy"]) / (b["accuracy"] - a["accuracy"])
            return math.exp(math.log(a[key]) + w * (math.log(b[key]) - math.log(a[key])))
    return None


class Clock:
    """Seconds spent in wrapped calls, per current label."""

    def __init__(self):
        self.label, self.seconds = "", {}

    def wrap(self, fn, what: str):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                key = f"{self.label}:{what}"
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0

        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/world", help="a demo run: generator/, prm/, world/test.jsonl")
    ap.add_argument("--out-dir", default="runs/search-bench", help="results files and search.png")
    ap.add_argument("--recipe", default="recipes/world.yaml", help="its search: stage is the starting point")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="search.field=value")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = stage_config("search", load_recipe(args.recipe, args.sets))
    run = Path(args.run_dir)
    problems = read_jsonl(run / "world" / "test.jsonl", Problem)[: cfg.compare_problems]
    prm = load_reward_model(str(run / "prm"))
    clock = Clock()
    prm.score = clock.wrap(prm.score, "score")
    HFPolicy.generate = clock.wrap(HFPolicy.generate, "generate")
    t0 = time.perf_counter()
    out = Path(args.out_dir)
    for strategy in cfg.compare_strategies:  # one strategy at a time, to time each
        clock.label = strategy
        run_comparison(run / "generator", prm, problems, replace(cfg, compare_strategies=(strategy,)), out)
    wall = time.perf_counter() - t0
    result = run_comparison(run / "generator", prm, problems, cfg, out, out / "search.png")  # all finished
    rows = result["rows"]
    top = max(r["n"] for r in rows if r["method"] == "best-of-N")
    target = next(r["accuracy"] for r in rows if r["method"] == "best-of-N" and r["n"] == top)
    matched = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        matched[method] = {k: at_accuracy(mine, target, k) for k in ("tokens", "prm_calls")}
    keep = ("method", "n", "accuracy", "ci95", "seeds", "tokens", "prm_calls", "encoded_tokens", "seconds")
    print(json.dumps({
        "problems": len(problems), "seeds": cfg.compare_seeds, "beam_width": cfg.beam_width,
        "aggregation": cfg.aggregation, "threads": args.threads, "wall_s": round(wall, 1),
        "rows": [{k: r[k] for k in keep} for r in rows],
        "time_s": {k: round(v, 1) for k, v in clock.seconds.items()},
        "equal_accuracy": {"target": target, "of": f"best-of-N N={top}", "per_problem": matched},
        "config": {k: v for k, v in vars(replace(cfg)).items() if k not in ("trust_remote_code", "revision")},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
