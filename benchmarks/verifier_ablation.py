"""Why best-of-N with the demo's verifiers falls below a random pick: ablations on a finished demo run.

Each variant changes one suspected cause and is measured on the run's test pool (same samples, same
resampled draws) by best-of-N accuracy at N=4 and at the pool's N, weighted self-consistency at the
pool's N, final-answer judgement, and the within-problem AUC (how often a correct sample of a problem
outscores a wrong one of the same problem), plus the AUC on solutions it was trained on (how well it
fits its own data):

- ``demo``: the run's PRM (Monte-Carlo labels, binary search, N=8) and ORM (every graded pool sample);
- ``oracle_labels``: the PRM retrained on the same solutions with the oracle's true step labels
  (is label noise the cause?);
- ``orm_same_data``: the ORM trained only on the PRM's solutions (how much do 4x more solutions give?);
- ``active``: Lightman et al.'s active learning: the pool's wrong-answer solutions the PRM scores
  highest ("convincing wrong answers") are annotated and added, and the PRM retrained (does it learn
  to reject what it overrates?);
- ``critique_orm``: Math-Minos' two stages: the generator first learns to write the oracle's step
  critiques of the PRM's solutions, then the demo's ORM is trained from those weights;
- ``orm_long``: the demo's ORM trained ``--long-epochs`` times longer (is it short of training?).

Models go to RUN/ablation/. Prints one JSON line.

    python benchmarks/verifier_ablation.py --run-dir runs/world
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from prmkit.annotate import annotate
from prmkit.evaluate.annotation import truth_labels
from prmkit.evaluate.bon import bon_report
from prmkit.evaluate.verifier import verifier_quality
from prmkit.io import read_jsonl, read_scores
from prmkit.pipeline import DemoRecipe
from prmkit.reward import score_solutions
from prmkit.reward.critique import CritiqueConfig, train_critique
from prmkit.reward.train import outcome_labels, train_reward
from prmkit.sample import build_policy
from prmkit.types import Problem, Solution, StepLabels
from prmkit.verify import aggregate


def within_problem_auc(scores: dict, solutions: list[Solution], how: str) -> float | None:
    """P(a correct sample outscores a wrong sample of the same problem), ties counting half; None when
    no problem has both."""
    by: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for s in solutions:
        by[s.problem_id].append((aggregate(scores[(s.problem_id, s.sample_id)], how), bool(s.correct)))
    wins = pairs = 0.0
    for cands in by.values():
        pos = [x for x, ok in cands if ok]
        neg = [x for x, ok in cands if not ok]
        wins += sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
        pairs += len(pos) * len(neg)
    return wins / pairs if pairs else None


def measure(name, model, how, tests, test_probs, seen, train_probs, run_dir, groups) -> dict:
    out = run_dir / "ablation"
    score_solutions(model, tests, test_probs, out / f"scores_test_{name}.jsonl", 32, progress=False)
    score_solutions(model, seen, train_probs, out / f"scores_seen_{name}.jsonl", 32, progress=False)
    scores = read_scores(out / f"scores_test_{name}.jsonl")
    rows, _ = bon_report(tests, test_probs, {name: scores}, {name: [how]}, groups)
    n_max = max(r["n"] for r in rows)
    at = {(r["strategy"], r["n"]): round(r["accuracy"], 4) for r in rows}
    return {
        "best_of_4": at[(f"{name} best-of-N ({how})", 4)],
        f"best_of_{n_max}": at[(f"{name} best-of-N ({how})", n_max)],
        f"weighted_sc_{n_max}": at[(f"{name} weighted SC ({how})", n_max)],
        f"majority_{n_max}": at[("majority", n_max)],
        "final_judgement": round(verifier_quality(scores, tests, test_probs)["final_judgement_accuracy"], 4),
        "auc_test": within_problem_auc(scores, tests, how),
        "auc_seen": within_problem_auc(read_scores(out / f"scores_seen_{name}.jsonl"), seen, how),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/world")
    ap.add_argument("--active", type=int, default=1000, help="convincing wrong answers to annotate")
    ap.add_argument("--seen", type=int, default=2000, help="training solutions to measure the fit on")
    ap.add_argument("--long-epochs", type=float, default=6.0, help="orm_long: epochs (0 = skip)")
    args = ap.parse_args()
    run = Path(args.run_dir)
    import yaml

    recipe = DemoRecipe.from_dict(yaml.safe_load((run / "recipe.yaml").read_text()))
    gen = str(run / "generator")
    train = read_jsonl(run / "world" / "train.jsonl", Problem)
    train_probs = {p.id: p for p in train}
    test_probs = {p.id: p for p in read_jsonl(run / "world" / "test.jsonl", Problem)}
    tests = read_jsonl(run / "samples_test.jsonl", Solution)
    pool = read_jsonl(run / "samples_train.jsonl", Solution)
    labels = [r for r in read_jsonl(run / "labels.jsonl", StepLabels) if not r.meta.get("skipped")]
    labelled = {(r.problem_id, r.sample_id) for r in labels}
    seen = [s for s in pool if (s.problem_id, s.sample_id) in labelled][: args.seen]
    out = run / "ablation"
    result = {"labelled_solutions": len(labels), "pool_solutions": len(pool)}
    common = dict(tests=tests, test_probs=test_probs, seen=seen, train_probs=train_probs, run_dir=run,
                  groups=recipe.demo.groups)  # fmt: skip

    result["prm_demo"] = measure("prm_demo", run / "prm", "min", **common)
    result["orm_demo"] = measure("orm_demo", run / "orm", "last", **common)

    oracle = []
    for r in labels:
        truth, _ = truth_labels(train_probs[r.problem_id], r.steps)
        oracle.append(dataclasses.replace(r, hard=[int(t) for t in truth], soft=[float(t) for t in truth]))
    path = train_reward(recipe.prm, oracle, train_probs, out / "prm_oracle_labels", default_init=gen)
    result["prm_oracle_labels"] = measure("prm_oracle_labels", path, "min", **common)

    path = train_reward(
        recipe.orm, outcome_labels(seen), train_probs, out / "orm_same_data", default_init=gen
    )
    result["orm_same_data"] = measure("orm_same_data", path, "last", **common)

    score_solutions(run / "prm", pool, train_probs, out / "scores_pool_prm_demo.jsonl", 32, progress=False)
    pool_scores = read_scores(out / "scores_pool_prm_demo.jsonl")
    wrong = [s for s in pool if s.steps and not s.correct and (s.problem_id, s.sample_id) not in labelled]
    wrong.sort(key=lambda s: -aggregate(pool_scores[(s.problem_id, s.sample_id)], "min"))
    policy = build_policy(gen, recipe.annotate)
    extra = annotate(policy, wrong[: args.active], train, recipe.annotate, out / "labels_active.jsonl")
    extra = [r for r in extra if not r.meta.get("skipped")]
    path = train_reward(recipe.prm, labels + extra, train_probs, out / "prm_active", default_init=gen)
    result["prm_active"] = measure("prm_active", path, "min", **common) | {"added_solutions": len(extra)}

    stage1 = train_critique(CritiqueConfig(init=gen), seen, train_probs, out / "critique_stage1")
    path = train_reward(
        recipe.orm, outcome_labels(pool), train_probs, out / "critique_orm", default_init=str(stage1)
    )
    result["critique_orm"] = measure("critique_orm", path, "last", **common) | {
        "critiqued_solutions": len(seen)
    }

    if args.long_epochs:
        cfg = dataclasses.replace(recipe.orm, epochs=args.long_epochs, max_steps=-1)
        path = train_reward(cfg, outcome_labels(pool), train_probs, out / "orm_long", default_init=gen)
        result["orm_long"] = measure("orm_long", path, "last", **common) | {"epochs": args.long_epochs}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
