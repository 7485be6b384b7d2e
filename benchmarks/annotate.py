"""Annotation cost and faithfulness: per_step vs early_stop vs binary_search at N=8, and shared prefills.

On the same sampled world solutions and the same completer (the demo generator), in one run:
  - each strategy labels the solutions for real (hard estimates, N=8); reported: tokens generated,
    completions per labelled step, wall time, and first-error agreement with the world's oracle;
  - ``tokens_ratio_per_step_vs_binary_search`` is the issue's target (>= 3), and the agreement gap
    (binary_search within 2 points of per_step);
  - shared-prefix completion (prefill once, expand the KV cache n-fold) vs re-encoding the prefix for every
    completion (each of the n rows prefilled on its own), same prompts, n and seed.
Prints one JSON line.

    python benchmarks/annotate.py --run-dir runs/world       # after `make demo`
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from prmkit.annotate import AnnotateConfig, annotate, prefix_prompt, select_solutions
from prmkit.evaluate.annotation import truth_labels
from prmkit.io import read_jsonl
from prmkit.sample import build_policy
from prmkit.types import Problem, Solution, index_problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/world", help="a demo run directory (generator + test samples)")
    ap.add_argument("--solutions", type=int, default=96)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--split", default="test", help="test (2-4 operations) or ood (5-6: longer solutions)")
    args = ap.parse_args()
    run = Path(args.run_dir)
    problems = index_problems(read_jsonl(run / "world" / f"{args.split}.jsonl", Problem))
    sols, _ = select_solutions(read_jsonl(run / f"samples_{args.split}.jsonl", Solution), dedupe=True)
    # every other distinct sample, so more problems are covered; right and wrong as the generator made them
    sols = sols[::2][: args.solutions]
    policy = build_policy(str(run / "generator"), AnnotateConfig(n=args.n, max_new_tokens=160, batch_size=64))

    out: dict = {"benchmark": "annotate", "machine": f"{torch.get_num_threads()} threads", "n": args.n}
    out["split"] = args.split
    out["solutions"] = len(sols)
    out["mean_steps"] = round(sum(len(s.steps) for s in sols) / len(sols), 2)
    out["wrong_solutions"] = sum(not s.correct for s in sols)
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in ("per_step", "early_stop", "binary_search"):
            cfg = AnnotateConfig(strategy=strategy, n=args.n, chunk=32)
            t0 = time.perf_counter()
            labels = annotate(
                policy, sols, list(problems.values()), cfg, Path(tmp) / f"{strategy}.jsonl", progress=False
            )
            wall = time.perf_counter() - t0
            steps = sum(len(r.steps) - 1 for r in labels)
            agree = sum(
                truth_labels(problems[r.problem_id], r.steps)[1] == r.meta["first_error"] for r in labels
            )
            out[strategy] = {
                "tokens": sum(r.meta["tokens"] for r in labels),
                "completions_per_step": round(
                    sum(sum(r.meta["n_completions"]) for r in labels) / max(1, steps), 3
                ),
                "wall_s": round(wall, 1),
                "first_error_agreement": round(agree / len(labels), 4),
            }
    out["tokens_ratio_per_step_vs_binary_search"] = round(
        out["per_step"]["tokens"] / out["binary_search"]["tokens"], 2
    )
    out["tokens_ratio_per_step_vs_early_stop"] = round(
        out["per_step"]["tokens"] / out["early_stop"]["tokens"], 2
    )
    out["agreement_gap_points"] = round(
        100 * (out["per_step"]["first_error_agreement"] - out["binary_search"]["first_error_agreement"]), 2
    )

    # shared prefill vs re-encoding the prefix per completion: identical prompts, n, seed
    prompts = [prefix_prompt(problems[s.problem_id].question, s.steps[:1], "gsm8k") for s in sols[:32]]
    t0 = time.perf_counter()
    shared = policy.generate(prompts, n=args.n, seed=0)
    t_shared = time.perf_counter() - t0
    t0 = time.perf_counter()
    repeated = policy.generate([p for p in prompts for _ in range(args.n)], n=1, seed=0)
    t_repeat = time.perf_counter() - t0
    out["shared_prefix_s"] = round(t_shared, 2)
    out["reencoded_prefix_s"] = round(t_repeat, 2)
    out["shared_prefix_speedup"] = round(t_repeat / t_shared, 2)
    out["shared_tokens"] = sum(c.n_tokens for r in shared for c in r)
    out["reencoded_tokens"] = sum(c.n_tokens for r in repeated for c in r)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
