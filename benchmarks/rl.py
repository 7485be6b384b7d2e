"""PPO or GRPO iteration time: generation, reward scoring and optimisation, on a given generator.

Runs ``train_ppo`` (or ``train_grpo`` with ``--method grpo``) for a few iterations (no held-out evaluation) in a temporary directory and reports
the mean seconds per iteration of each part, from the run's own ``metrics.jsonl``: generation
(sampling the rollouts through the policy backend and re-tokenising them), reward scoring (the reward
model's forward passes and grading), optimisation (old/reference log-probabilities and values, GAE,
and the PPO epochs; GRPO: old/reference log-probabilities, group advantages and its epochs). The first
iteration is left out of the means as warm-up when there are more.
Prints one JSON line.

    python benchmarks/rl.py --generator runs/world/generator --run-dir runs/world \\
        --reward-model runs/world/curve/prm-1
    python benchmarks/rl.py --method grpo ... --set problems_per_iteration=16 --set samples_per_problem=4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from prmkit.data import load_problems
from prmkit.rl import GRPOConfig, PPOConfig, train_grpo, train_ppo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="ppo", choices=["ppo", "grpo"])
    ap.add_argument("--generator", default="runs/world/generator")
    ap.add_argument("--run-dir", default="runs/world", help="world run directory (train split)")
    ap.add_argument("--reward", default="process", choices=["process", "outcome", "answer"])
    ap.add_argument("--reward-model", default="runs/world/curve/prm-1")
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--set", action="append", default=[], help="PPOConfig/GRPOConfig field=value (YAML)")
    args = ap.parse_args()
    import yaml

    fields = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    config, train = (PPOConfig, train_ppo) if args.method == "ppo" else (GRPOConfig, train_grpo)
    cfg = config(
        **{
            "reward": args.reward,
            "reward_model": "" if args.reward == "answer" else args.reward_model,
            "iterations": args.iterations,
            "eval_problems": 0,
            "save_every": args.iterations,
            **fields,
        }
    )
    problems = load_problems("world", args.run_dir, split="train")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = train(cfg, args.generator, problems, Path(tmp) / args.method, progress=False)
        wall = time.perf_counter() - t0
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    its = [m for m in metrics if m["iteration"] > 0]
    timed = its[1:] if len(its) > 1 else its

    def mean(key: str) -> float:
        return round(sum(m[key] for m in timed) / len(timed), 3)

    parts = {k: mean(f"t_{k}") for k in ("generate", "score", "optimise")}
    per_it = sum(parts.values())
    print(
        json.dumps(
            {
                "benchmark": "rl",
                "machine": f"{torch.get_num_threads()} threads",
                "generator": args.generator,
                "method": args.method,
                "reward": cfg.reward,
                "rollouts_per_iteration": cfg.problems_per_iteration * cfg.samples_per_problem,
                "epochs": cfg.ppo_epochs if args.method == "ppo" else cfg.epochs,
                "minibatch_size": cfg.minibatch_size,
                "mean_response_tokens": mean("response_tokens"),
                "iterations_timed": len(timed),
                "s_per_iteration": round(per_it, 3),
                "s_generate": parts["generate"],
                "s_score": parts["score"],
                "s_optimise": parts["optimise"],
                "share": {k: round(v / per_it, 3) for k, v in parts.items()},
                "wall_s_including_load_and_save": round(wall, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
