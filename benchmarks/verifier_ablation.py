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
- ``orm_long``: the demo's ORM trained ``--long-epochs`` times longer (is it short of training?);
- ``likelihood``: no verifier at all, the generator's own mean token log-prob (the baseline);
- ``prm_lm`` / ``orm_lm``: the demo's PRM / ORM recipe with Cobbe et al.'s auxiliary LM loss on the
  solution tokens (``lm_coef = --lm-coef``): does keeping the generator's language model keep its
  ranking signal? ``--lm-coef 0`` retrains the demo's recipe itself and ``--seed`` sets another
  training seed, for the spread between training runs.
- ``prm_pool``: the PRM on soft labels with the LM loss, on its labelled solutions plus every other
  graded pool sample's last step (``demo.prm_data: pool``), read at its last step: the PRM given the
  ORM's solutions as well as its step labels (``recipes/world-large.yaml``'s PRM).

``--variants`` picks some (default: the first seven, as before the last three existed). Models go to
RUN/ablation/. Prints one JSON line.

    python benchmarks/verifier_ablation.py --run-dir runs/world

Settings are chosen on a dev run, never on the reported test split: a run of another world seed, whose
test split is then the dev pool, e.g. (docs/benchmarks.md has the numbers)

    OMP_NUM_THREADS=1 prmkit demo --recipe recipes/world.yaml --run-dir runs/dev-seed1 --set world.seed=1 \
        --set sft.max_steps=1300 --set sample.n=16 --set demo.test_problems=100 --set demo.ood_problems=0 \
        --set demo.pool_problems=400 --set demo.audit_solutions=0 --set rl.methods=[] \
        --set "demo.verifiers=[prm, orm, likelihood]"
    OMP_NUM_THREADS=1 python benchmarks/verifier_ablation.py --run-dir runs/dev-seed1 --seen 400 \
        --variants likelihood,orm_demo,orm_lm,prm_demo,prm_lm
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from prmkit.annotate import annotate
from prmkit.evaluate.annotation import truth_labels
from prmkit.evaluate.bon import auc_rows, bon_report
from prmkit.evaluate.verifier import verifier_quality
from prmkit.io import read_jsonl, read_scores
from prmkit.pipeline import DemoRecipe
from prmkit.reward import LIKELIHOOD_PREFIX, score_solutions
from prmkit.reward.critique import CritiqueConfig, train_critique
from prmkit.reward.train import outcome_labels, train_reward, with_pool
from prmkit.sample import build_policy
from prmkit.types import Problem, Solution, StepLabels, index_problems
from prmkit.verify import aggregate

OLD = ("prm_demo", "orm_demo", "prm_oracle_labels", "orm_same_data", "prm_active", "critique_orm", "orm_long")
VARIANTS = (*OLD, "likelihood", "prm_lm", "orm_lm", "prm_pool")


def auc(scores: dict, solutions: list[Solution], how: str) -> dict:
    """The library's within-problem AUC (evaluate/bon.py), rounded, with its interval and count."""
    (row,) = auc_rows(solutions, {"v": scores}, {"v": [how]})
    return {
        k: (round(v, 4) if isinstance(v, float) else v)
        for k, v in row.items()
        if k in ("auc", "ci95", "problems")
    }


def measure(name, model, how, tests, test_probs, seen, train_probs, run_dir, groups, tag="test") -> dict:
    out = run_dir / "ablation"
    score_solutions(model, tests, test_probs, out / f"scores_{tag}_{name}.jsonl", 32, progress=False)
    scores = read_scores(out / f"scores_{tag}_{name}.jsonl")
    rows, _ = bon_report(tests, test_probs, {name: scores}, {name: [how]}, groups)
    n_max = max(r["n"] for r in rows)
    at = {(r["strategy"], r["n"]): round(r["accuracy"], 4) for r in rows}
    test_auc = auc(scores, tests, how)
    result = {
        "best_of_4": at[(f"{name} best-of-N ({how})", 4)],
        f"best_of_{n_max}": at[(f"{name} best-of-N ({how})", n_max)],
        f"best_of_{n_max}_ci95": round(
            next(r["ci95"] for r in rows if r["strategy"] == f"{name} best-of-N ({how})" and r["n"] == n_max),
            4,
        ),
        f"weighted_sc_{n_max}": at[(f"{name} weighted SC ({how})", n_max)],
        f"majority_{n_max}": at[("majority", n_max)],
        f"pass_{n_max}": at[("pass@N", n_max)],
        "auc_test": test_auc["auc"],
        "auc_test_ci95": test_auc["ci95"],
        "auc_test_problems": test_auc["problems"],
    }
    if not str(model).startswith(LIKELIHOOD_PREFIX):  # a 0.5 threshold on a token probability means nothing
        result["final_judgement"] = round(
            verifier_quality(scores, tests, test_probs)["final_judgement_accuracy"], 4
        )
    if seen:
        score_solutions(model, seen, train_probs, out / f"scores_seen_{name}.jsonl", 32, progress=False)
        result["auc_seen"] = auc(read_scores(out / f"scores_seen_{name}.jsonl"), seen, how)["auc"]
    return result


def timed_train(*args, **kwargs) -> tuple[Path, float]:
    t0 = time.perf_counter()
    return train_reward(*args, **kwargs), round(time.perf_counter() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/world")
    ap.add_argument("--variants", default=",".join(OLD), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument(
        "--tests",
        default=None,
        help="samples of RUN's test split to measure on (default: RUN/samples_test.jsonl)",
    )
    ap.add_argument("--active", type=int, default=1000, help="convincing wrong answers to annotate")
    ap.add_argument(
        "--seen", type=int, default=2000, help="training solutions to measure the fit on (0 = skip)"
    )
    ap.add_argument("--long-epochs", type=float, default=6.0, help="orm_long: epochs (0 = skip)")
    ap.add_argument(
        "--lm-coef",
        type=float,
        default=1.0,
        help="prm_lm / orm_lm / prm_pool: the auxiliary LM loss's weight",
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=None,
        help="prm_lm / orm_lm / prm_pool: training seed (default: the recipe's)",
    )
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    run = Path(args.run_dir)
    import yaml

    recipe = DemoRecipe.from_dict(yaml.safe_load((run / "recipe.yaml").read_text()))
    gen = str(run / "generator")
    train = read_jsonl(run / "world" / "train.jsonl", Problem)
    train_probs = index_problems(train)
    test_probs = index_problems(read_jsonl(run / "world" / "test.jsonl", Problem))
    tests = read_jsonl(args.tests or run / "samples_test.jsonl", Solution)
    pool = read_jsonl(run / "samples_train.jsonl", Solution)
    labels = [r for r in read_jsonl(run / "labels.jsonl", StepLabels) if not r.skipped]
    labelled = {r.key for r in labels}
    seen = [s for s in pool if s.key in labelled][: args.seen]
    out = run / "ablation"
    orm_data = outcome_labels(pool) if recipe.demo.orm_data == "pool" else labels
    result = {
        "run_dir": str(run),
        "world_seed": recipe.world.seed,
        "tests": str(args.tests or run / "samples_test.jsonl"),
        "test_problems": len({s.problem_id for s in tests}),
        "labelled_solutions": len(labels),
        "pool_solutions": len(pool),
        "orm_solutions": len(orm_data),
        "load_at_start": round(os.getloadavg()[0], 2),
    }
    tag = Path(args.tests).stem if args.tests else "test"  # the scores files of each pool apart
    common = dict(tests=tests, test_probs=test_probs, seen=seen, tag=tag,
                  train_probs=train_probs, run_dir=run, groups=recipe.demo.groups)  # fmt: skip
    t_start = time.perf_counter()

    if "likelihood" in variants:
        result["likelihood"] = measure("likelihood", f"{LIKELIHOOD_PREFIX}{gen}", "last", **common)
    if "prm_demo" in variants:
        result["prm_demo"] = measure("prm_demo", run / "prm", "min", **common)
    if "orm_demo" in variants:
        result["orm_demo"] = measure("orm_demo", run / "orm", "last", **common)
    for key, base, data, how in (
        ("prm_lm", recipe.prm, labels, "min"),
        ("orm_lm", recipe.orm, orm_data, "last"),
        ("prm_pool", dataclasses.replace(recipe.prm, label="soft"), with_pool(labels, pool), "last"),
    ):
        if key in variants:
            seed = base.seed if args.seed is None else args.seed
            name = f"{key}{args.lm_coef:g}" + ("" if seed == base.seed else f"-seed{seed}")
            cfg = dataclasses.replace(base, lm_coef=args.lm_coef, seed=seed)
            path, secs = timed_train(cfg, data, train_probs, out / name, default_init=gen)
            result[key] = measure(name, path, how, **common) | {
                "lm_coef": args.lm_coef,
                "seed": seed,
                "train_s": secs,
            }

    if "prm_oracle_labels" in variants:
        oracle = []
        for r in labels:
            truth, _ = truth_labels(train_probs[r.problem_id], r.steps)
            oracle.append(
                dataclasses.replace(r, hard=[int(t) for t in truth], soft=[float(t) for t in truth])
            )
        path = train_reward(recipe.prm, oracle, train_probs, out / "prm_oracle_labels", default_init=gen)
        result["prm_oracle_labels"] = measure("prm_oracle_labels", path, "min", **common)

    if "orm_same_data" in variants:
        path = train_reward(
            recipe.orm, outcome_labels(seen), train_probs, out / "orm_same_data", default_init=gen
        )
        result["orm_same_data"] = measure("orm_same_data", path, "last", **common)

    if "prm_active" in variants:
        score_solutions(
            run / "prm", pool, train_probs, out / "scores_pool_prm_demo.jsonl", 32, progress=False
        )
        pool_scores = read_scores(out / "scores_pool_prm_demo.jsonl")
        wrong = [s for s in pool if s.steps and not s.correct and s.key not in labelled]
        wrong.sort(key=lambda s: -aggregate(pool_scores[s.key], "min"))
        policy = build_policy(gen, recipe.annotate)
        extra = annotate(policy, wrong[: args.active], train, recipe.annotate, out / "labels_active.jsonl")
        extra = [r for r in extra if not r.skipped]
        path = train_reward(recipe.prm, labels + extra, train_probs, out / "prm_active", default_init=gen)
        result["prm_active"] = measure("prm_active", path, "min", **common) | {"added_solutions": len(extra)}

    if "critique_orm" in variants:
        stage1 = train_critique(CritiqueConfig(init=gen), seen, train_probs, out / "critique_stage1")
        path = train_reward(
            recipe.orm, outcome_labels(pool), train_probs, out / "critique_orm", default_init=str(stage1)
        )
        result["critique_orm"] = measure("critique_orm", path, "last", **common) | {
            "critiqued_solutions": len(seen)
        }

    if "orm_long" in variants and args.long_epochs:
        cfg = dataclasses.replace(recipe.orm, epochs=args.long_epochs, max_steps=-1)
        path = train_reward(cfg, outcome_labels(pool), train_probs, out / "orm_long", default_init=gen)
        result["orm_long"] = measure("orm_long", path, "last", **common) | {"epochs": args.long_epochs}
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result["load_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
