"""Verifier training throughput: random batches against ``group_by_length`` batches, side by side.

On a run's graded train pool (``samples_train.jsonl``) and the model its verifiers start from, trains the
ORM (``--lm-coef``: with the auxiliary LM loss, as ``recipes/world-large.yaml`` does) for ``--steps``
steps from the same start with ``orm.group_by_length`` off and on, alternating ``--rounds`` times, and
reports each one's training steps per second (the Trainer's loop alone: no example building, no
saving), the speed-up, and the share of real (not padding) tokens in the batches each sampler makes over
one epoch of the same examples. Prints one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --run-dir runs/world-large-s0 \
        --init runs/world-large-s0/verifier_lm --limit 16000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

from prmkit.io import read_jsonl
from prmkit.reward.model import StepRewardModel
from prmkit.reward.train import RewardConfig, build_examples, outcome_labels, reward_trainer
from prmkit.types import Problem, Solution, index_problems


def real_share(lengths: list[int], order: list[int], batch_size: int) -> float:
    """Real tokens over padded tokens of the batches cut from ``order``."""
    batches = [[lengths[i] for i in order[k : k + batch_size]] for k in range(0, len(order), batch_size)]
    return sum(map(sum, batches)) / sum(max(b) * len(b) for b in batches)


def steps_per_second(cfg: RewardConfig, rows: list[dict], out: Path) -> float:
    rm = StepRewardModel.from_pretrained(cfg.init, dtype="float32", kind="orm")
    trainer = reward_trainer(cfg, rm, rows, [], out, save_strategy="no")
    t0 = time.perf_counter()
    trainer.train()
    return cfg.max_steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run-dir", default="runs/world", help="a demo run: world/train.jsonl, samples_train.jsonl"
    )
    ap.add_argument(
        "--init", default=None, help="the model the verifiers start from (default: RUN/generator)"
    )
    ap.add_argument("--limit", type=int, default=16000, help="pool samples to train on (the first ones)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lm-coef", type=float, default=1.0)
    args = ap.parse_args()
    run = Path(args.run_dir)
    init = args.init or str(run / "generator")
    problems = index_problems(read_jsonl(run / "world" / "train.jsonl", Problem))
    labels = outcome_labels(read_jsonl(run / "samples_train.jsonl", Solution)[: args.limit])
    cfg = RewardConfig(
        kind="orm", init=init, lm_coef=args.lm_coef, max_steps=args.steps, batch_size=args.batch_size,
        eval_fraction=0.0, logging_steps=10**6,
    )  # fmt: skip
    rm = StepRewardModel.from_pretrained(init, dtype="float32", kind="orm")
    rows = build_examples(labels, problems, cfg, rm.tokenizer, rm.tag)
    lengths = [len(r["input_ids"]) for r in rows]
    shuffled = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    grouped = get_length_grouped_indices(lengths, args.batch_size, generator=torch.Generator().manual_seed(0))
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                rates[on].append(
                    steps_per_second(replace(cfg, group_by_length=on), rows, Path(tmp) / f"{r}{on}")
                )
    random_rate, grouped_rate = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "init": init,
                "examples": len(rows),
                "mean_tokens": round(statistics.mean(lengths), 1),
                "steps": args.steps,
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "torch_threads": torch.get_num_threads(),
                "steps_per_s_random": round(random_rate, 3),
                "steps_per_s_grouped": round(grouped_rate, 3),
                "speedup": round(grouped_rate / random_rate, 3),
                "real_token_share_random": round(real_share(lengths, shuffled, args.batch_size), 3),
                "real_token_share_grouped": round(real_share(lengths, grouped, args.batch_size), 3),
                "rates": {
                    "random": [round(x, 3) for x in rates[False]],
                    "grouped": [round(x, 3) for x in rates[True]],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
