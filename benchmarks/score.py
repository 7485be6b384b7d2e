"""Reward-model scoring: all steps in one forward pass vs one forward pass per step prefix.

On a pool of sampled world solutions and one PRM, in one run: (a) ``StepRewardModel.score`` (a step tag
after every step, all read in one pass, batched and length-sorted); (b) what ProcessBench's reference
script does: a separate forward pass for every step prefix (batch 1). Reports solutions scored per
second for both, the speed-up, and the largest difference between the two sets of step scores.
Prints one JSON line.

    python benchmarks/score.py --model runs/world/prm --run-dir runs/world
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prmkit.io import read_jsonl
from prmkit.reward.model import StepRewardModel
from prmkit.types import Problem, Solution, index_problems


def per_prefix(rm: StepRewardModel, question: str, steps: list[str]) -> list[float]:
    out = []
    for k in range(1, len(steps) + 1):
        enc = rm.encode(question, steps[:k])
        ids, tags = enc.ids, enc.positions
        with torch.no_grad():
            logits = rm.model(input_ids=torch.tensor([ids])).logits[0, tags[-1]]
        out.append(float(logits[rm.label_ids].float().softmax(-1)[0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/world/prm")
    ap.add_argument("--run-dir", default="runs/world")
    ap.add_argument("--solutions", type=int, default=400)
    ap.add_argument("--baseline-solutions", type=int, default=100)
    args = ap.parse_args()
    run = Path(args.run_dir)
    problems = index_problems(read_jsonl(run / "world" / "test.jsonl", Problem))
    sols = read_jsonl(run / "samples_test.jsonl", Solution)[: args.solutions]
    qs, steps = [problems[s.problem_id].question for s in sols], [s.steps for s in sols]
    rm = StepRewardModel.from_pretrained(args.model, device="cpu", dtype="float32")

    rm.score(qs[:16], steps[:16])  # warm-up
    t0 = time.perf_counter()
    one_pass = rm.score(qs, steps, batch_size=32)
    t_one = time.perf_counter() - t0
    k = args.baseline_solutions
    t0 = time.perf_counter()
    rm.score(qs[:k], steps[:k], batch_size=1)  # one pass, no batching: the effect of the pass alone
    t_one1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = [per_prefix(rm, q, s) for q, s in zip(qs[:k], steps[:k], strict=True)]
    t_ref = time.perf_counter() - t0
    diff = max(abs(a - b) for r, o in zip(ref, one_pass[:k], strict=True) for a, b in zip(r, o, strict=True))
    print(
        json.dumps(
            {
                "benchmark": "score",
                "machine": f"{torch.get_num_threads()} threads",
                "solutions": len(sols),
                "mean_steps": round(sum(map(len, steps)) / len(steps), 2),
                "one_pass_solutions_per_s": round(len(sols) / t_one, 1),
                "one_pass_batch1_solutions_per_s": round(k / t_one1, 1),
                "per_prefix_solutions_per_s": round(k / t_ref, 1),
                "speedup_batch1": round(t_ref / t_one1, 1),
                "speedup": round((t_ref / k) / (t_one / len(sols)), 1),
                "max_abs_diff": diff,
            }
        )
    )


if __name__ == "__main__":
    main()
