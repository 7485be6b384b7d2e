"""Verifier quality against the world's oracle: step accuracy, first-error F1, final-answer judgement.

Given step scores (``scores.jsonl`` from ``prmkit score``) for sampled world solutions:

- **step accuracy**: a step is predicted good when its score is >= ``threshold``; truth is the
  oracle's first-error convention (steps before the first wrong step are good, the rest bad);
- **first-error F1** (ProcessBench's metric): the predicted first error is the first step scored below
  the threshold (-1 if none); accuracy on erroneous solutions (prediction == oracle's first error),
  accuracy on correct ones (prediction == -1), and their harmonic mean;
- **final-answer judgement** (Math-Minos' meta-evaluation): the solution is judged right when its last
  step's score is >= ``threshold``; accuracy against the graded answer. For an ORM or a value verifier
  this is the number that matters, independent of any best-of-N selection.

Steps scored ``nan`` (cut by the context length) count as predicted bad. A solution without steps
(empty output) adds no step; its predicted first error is -1, and its final answer is judged wrong.
"""

from __future__ import annotations

import math

from prmkit.types import Problem, Solution
from prmkit.world import judge


def first_below(scores: list[float], threshold: float) -> int:
    """Index of the first step scored below ``threshold`` (nan counts as below), or -1.

    >>> first_below([0.9, 0.7, 0.2, 0.8], 0.5), first_below([0.9, 0.6], 0.5), first_below([0.9, float("nan")], 0.5)
    (2, -1, 1)
    """
    return next((i for i, s in enumerate(scores) if math.isnan(s) or s < threshold), -1)


def first_error_f1(pred: list[int], truth: list[int], partial: bool = False) -> dict[str, float | None]:
    """ProcessBench: accuracy on erroneous samples (truth >= 0), on correct ones (truth == -1), and F1.
    Both kinds of sample are needed, unless ``partial``: then a missing kind's accuracy and F1 are None.

    >>> first_error_f1([2, -1, 0, -1], [2, -1, 1, 0])
    {'error_acc': 0.3333333333333333, 'correct_acc': 1.0, 'f1': 0.5}
    >>> first_error_f1([2, 0], [2, 1], partial=True)
    {'error_acc': 0.5, 'correct_acc': None, 'f1': None}
    """
    err = [p == t for p, t in zip(pred, truth, strict=True) if t >= 0]
    ok = [p == -1 for p, t in zip(pred, truth, strict=True) if t < 0]
    if not (err and ok) and not partial:
        raise ValueError("first-error F1 needs both erroneous and correct solutions")
    e = sum(err) / len(err) if err else None
    c = sum(ok) / len(ok) if ok else None
    f1 = None if e is None or c is None else 0.0 if e + c == 0 else 2 * e * c / (e + c)
    return {"error_acc": e, "correct_acc": c, "f1": f1}


def verifier_quality(
    scores: dict[tuple[str, int], list[float]],
    solutions: list[Solution],
    problems: dict[str, Problem],
    threshold: float = 0.5,
) -> dict[str, float]:
    """The metrics of the module docstring over the solutions that have scores."""
    agree = total = judged = 0
    pred_first, true_first = [], []
    for s in solutions:
        row = scores.get(s.key)
        if row is None:
            continue
        if len(row) != len(s.steps):
            raise ValueError(f"{s.problem_id}/{s.sample_id}: {len(row)} scores for {len(s.steps)} steps")
        first = judge(problems[s.problem_id], s.steps).first_error
        for i, sc in enumerate(row):
            good = not math.isnan(sc) and sc >= threshold
            agree += good == (first < 0 or i < first)
            total += 1
        pred_first.append(first_below(row, threshold))
        true_first.append(first)
        final = row[-1] if row else math.nan  # no step: nothing says it is right
        judged += (not math.isnan(final) and final >= threshold) == bool(s.correct)
    if not true_first:
        raise ValueError("no scored solutions match the samples")
    out = {"solutions": len(true_first), "steps": total, "step_accuracy": agree / total}
    out |= first_error_f1(pred_first, true_first, partial=True)
    out["final_judgement_accuracy"] = judged / len(true_first)
    return out


def data_quantity_curve(
    labels: list,
    problems: dict[str, Problem],
    test_solutions: list[Solution],
    test_problems: dict[str, Problem],
    init: str,
    out_dir,
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0),
    configs: dict | None = None,
    seed: int = 0,
) -> list[dict]:
    """Train each verifier kind on growing fractions of the labelled *problems* (nested subsets, the
    same for every kind) and measure it on the test pool: the PRM-vs-ORM data-efficiency comparison
    of Lightman et al. ``configs`` maps each kind to train to its ``RewardConfig`` (default: prm and
    orm with default settings); ``init`` and ``seed`` replace theirs. Models land in
    ``out_dir/{kind}-{fraction}`` (a rerun reuses them)."""
    import random
    from dataclasses import replace
    from pathlib import Path

    from prmkit.reward.model import StepRewardModel
    from prmkit.reward.train import RewardConfig, train_reward

    configs = configs or {kind: RewardConfig(kind=kind) for kind in ("prm", "orm")}

    pids = sorted({r.problem_id for r in labels})
    random.Random(seed).shuffle(pids)
    qs = [test_problems[s.problem_id].question for s in test_solutions]
    rows = []
    for frac in fractions:
        keep = set(pids[: max(1, round(frac * len(pids)))])
        subset = [r for r in labels if r.problem_id in keep]
        for kind, cfg in configs.items():
            cfg = replace(cfg, init=init, seed=seed)
            path = train_reward(cfg, subset, problems, Path(out_dir) / f"{kind}-{frac:g}")
            rm = StepRewardModel.from_pretrained(path, device="cpu")
            scored = rm.score(qs, [s.steps for s in test_solutions], batch_size=32)
            scores = {s.key: row for s, row in zip(test_solutions, scored, strict=True)}
            m = verifier_quality(scores, test_solutions, test_problems)
            m |= {
                "kind": kind,
                "fraction": frac,
                "labelled_solutions": len(subset),
                "best_of_n": best_of_n(scores, test_solutions, test_problems),
            }
            rows.append(m)
    return rows


def best_of_n(
    scores: dict[tuple[str, int], list[float]], solutions: list[Solution], problems: dict[str, Problem]
) -> float:
    """Accuracy of picking, per problem, the solution with the highest min step score (all its samples),
    by ``verify.select``: the rule every best-of-N in prmkit follows."""
    from collections import defaultdict

    from prmkit.verify import Candidate, select

    pools: dict[str, list[Candidate]] = defaultdict(list)
    for s in solutions:
        pools[s.problem_id].append(Candidate(s.answer, bool(s.correct), scores[s.key]))
    return sum(select(c, "best_of_n", problems[pid].kind, "min") for pid, c in pools.items()) / len(pools)
