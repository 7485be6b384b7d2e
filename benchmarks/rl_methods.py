"""RL methods of the demo's RL section on a finished demo run, into another directory.

Trains and evaluates ``--methods`` (``rl.methods`` names: rft, outcome, process, grpo-outcome,
grpo-process, ...) for ``--seeds`` seeds from a demo run's generator, PRM and ORM, on its train and
test problems cut as the demo cuts them, exactly as ``prmkit demo`` would (``rl.compare.run_rl``),
but writing only under ``--out``: the run directory is read, never written. Prints one JSON line: the
greedy accuracy per method and seed with mean, std and 95% interval, the rows the demo recorded in
its ``report.json`` beside them, and the seconds per run. Runs resume.

    python benchmarks/rl_methods.py --run-dir runs/world --out runs/world-grpo \\
        --methods grpo-outcome,grpo-process --seeds 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prmkit.config import load_recipe
from prmkit.io import read_jsonl
from prmkit.jobs import Timer
from prmkit.pipeline import DemoRecipe, world_files
from prmkit.rl.compare import RLConfig, run_rl
from prmkit.types import Problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/world", help="a finished demo run (read only)")
    ap.add_argument("--out", required=True, help="where the runs go (its rl/ folder)")
    ap.add_argument("--recipe", default="recipes/world.yaml")
    ap.add_argument("--methods", default="grpo-outcome,grpo-process")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], help="stage.field=value, as prmkit's --set")
    args = ap.parse_args()
    run_dir, out = Path(args.run_dir), Path(args.out)
    recipe = DemoRecipe.from_dict(load_recipe(args.recipe, args.set))
    if recipe.demo.torch_threads:
        torch.set_num_threads(recipe.demo.torch_threads)
    splits = {s: read_jsonl(f, Problem) for s, f in world_files(run_dir).items()}
    n_test = recipe.demo.test_problems or len(splits["test"])
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    recorded = (report.get("rl") or {}).get("greedy", {})
    sft = recorded.get("SFT", {}).get("mean", report["splits"]["test"].get("greedy_accuracy"))
    cfg = RLConfig(methods=tuple(args.methods.split(",")), seeds=args.seeds, bon_samples=0)
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer(out / "timings.json")
    t0 = time.perf_counter()
    rl = run_rl(
        cfg, recipe.ppo, recipe.rft, run_dir / "generator",
        splits["train"][: recipe.data.train_limit or None], splits["test"][:n_test], splits["test"][n_test:],
        {"PRM": run_dir / "prm", "ORM": run_dir / "orm"}, recipe.sample, out, timer, sft_greedy=sft,
        grpo=recipe.grpo,
    )  # fmt: skip
    print(
        json.dumps(
            {
                "run_dir": str(run_dir),
                "methods": list(cfg.methods),
                "seeds": cfg.seeds,
                "greedy": rl["greedy"],
                "recorded": recorded,
                "seconds_per_run": {k: round(v, 1) for k, v in timer.times.items()},
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
