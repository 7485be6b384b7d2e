"""Step-score aggregation and answer selection: how N scored samples of one problem become one answer.

Aggregations of a solution's step scores into one solution score (``AGGREGATIONS``):
``min`` (Math-Shepherd), ``prod`` (Lightman et al.), ``last`` (an ORM's score sits at the last step),
``mean``. A ``nan`` step score (cut by the context length) counts as 0: unknown is not evidence of good.
A solution without steps (empty or blank output) aggregates to 0 and is ranked below every solution
with steps by ``best_of_n`` and ``top_k``; its missing answer never wins a vote.

Selection strategies over one problem's candidates (``STRATEGIES``):

- ``majority``: self-consistency, the most frequent answer;
- ``best_of_n``: the answer of the best-scored candidate;
- ``weighted_sc``: the answer whose candidates' scores sum highest (Math-Shepherd's SC + RM);
- ``top_k``: majority vote among the ``k`` best-scored candidates (Cobbe et al.'s top-K voting);
- ``pass``: correct when any candidate is (the upper bound, pass@N).

Answers are grouped by the one grader's equivalence (``grade_answer``), not by string, so "18" and
"18.00" or "\\frac12" and "0.5" vote together. Ties break towards the answer seen first, so a result
never depends on dictionary order.

    >>> cands = [Candidate("18", True, [0.9, 0.2]), Candidate("18.0", True, [0.8, 0.7]), Candidate("7", False, [0.99])]
    >>> [select(cands, s, "gsm8k", "min") for s in ("majority", "best_of_n", "weighted_sc", "pass")]
    [True, False, False, True]

Two votes for 18 win the majority; the verifier's 0.99 for 7 beats both the best 18 (0.7) and the 18s'
summed scores (0.2 + 0.7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prmkit.grading import grade_answer, normalize_number

AGGREGATIONS = ("min", "prod", "last", "mean")
STRATEGIES = ("majority", "best_of_n", "weighted_sc", "top_k", "pass")


@dataclass(frozen=True)
class Candidate:
    """One sampled solution of a problem: its extracted answer, its grade, its step scores, and
    optionally its answer group within the problem's whole pool (``group_answers`` over the pool, done
    once, so that voting over many subsets of the pool does not call the grader again)."""

    answer: str | None
    correct: bool
    scores: list[float]
    group: int | None = None


def _groups(cands: list[Candidate], kind: str) -> list[int]:
    if all(c.group is not None for c in cands):
        return [c.group for c in cands]  # type: ignore[misc]
    return group_answers([c.answer for c in cands], kind)


def aggregate(scores: list[float], how: str) -> float:
    """One solution score from step scores.

    >>> [round(aggregate([0.9, 0.5, 0.8], h), 3) for h in AGGREGATIONS]
    [0.5, 0.36, 0.8, 0.733]
    >>> aggregate([0.9, float("nan")], "min"), aggregate([], "min")
    (0.0, 0.0)
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; valid: {', '.join(AGGREGATIONS)}")
    xs = [0.0 if math.isnan(x) else x for x in scores]
    if not xs:
        return 0.0
    if how == "min":
        return min(xs)
    if how == "prod":
        return math.prod(xs)
    if how == "last":
        return xs[-1]
    return sum(xs) / len(xs)


def group_answers(answers: list[str | None], kind: str) -> list[int]:
    """A group id per answer: equal ids for answers the grader calls equivalent; None is its own group.

    >>> group_answers(["18", "18.0", "7", None, "$18"], "gsm8k")
    [0, 0, 1, 2, 0]
    """
    reps: list[str] = []  # one representative answer per group
    keys: dict[str, int] = {}  # cheap exact keys first (canonical numbers), the grader only on a miss
    out = []
    none_group = None
    for a in answers:
        if a is None:
            if none_group is None:
                none_group = len(reps)
                reps.append("\0none")
            out.append(none_group)
            continue
        key = (normalize_number(a) if kind == "gsm8k" else None) or a.strip()
        if key in keys:
            out.append(keys[key])
            continue
        gid = next((i for i, r in enumerate(reps) if r != "\0none" and grade_answer(a, r, kind)), None)
        if gid is None:
            gid = len(reps)
            reps.append(a)
        keys[key] = gid
        out.append(gid)
    return out


def _vote(cands: list[Candidate], groups: list[int], weights: list[float]) -> int:
    """The index of the first candidate of the group with the highest total weight (ties: the group seen first).
    The group of missing answers never wins while any answer exists."""
    total: dict[int, float] = {}
    for g, w in zip(groups, weights, strict=True):
        total[g] = total.get(g, 0.0) + w
    first = {g: groups.index(g) for g in total}
    best = max(total, key=lambda g: (cands[first[g]].answer is not None, total[g], -first[g]))
    return first[best]


def choose(cands: list[Candidate], strategy: str, kind: str, how: str = "min", k: int = 3) -> int:
    """The index of the candidate ``strategy`` picks (its answer is the pick's answer); ``pass`` picks the
    first correct candidate, else the first. ``select`` is whether that pick is correct.

    >>> cands = [Candidate("18", True, [0.9, 0.2]), Candidate("18.0", True, [0.8, 0.7]), Candidate("7", False, [0.99])]
    >>> [choose(cands, s, "gsm8k", "min") for s in ("majority", "best_of_n", "weighted_sc", "top_k")]
    [0, 2, 2, 0]
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if not cands:
        raise ValueError("select: no candidates (an empty pool for a problem)")
    if strategy == "pass":
        return next((i for i, c in enumerate(cands) if c.correct), 0)
    if strategy == "majority":
        return _vote(cands, _groups(cands, kind), [1.0] * len(cands))
    solution_scores = [aggregate(c.scores, how) for c in cands]
    # best first; a candidate without steps (empty output) ranks below every candidate with steps
    ranked = sorted(range(len(cands)), key=lambda i: (not cands[i].scores, -solution_scores[i], i))
    if strategy == "best_of_n":
        return ranked[0]
    if strategy == "top_k":
        top = sorted(ranked[:k])
        return top[choose([cands[i] for i in top], "majority", kind)]
    return _vote(cands, _groups(cands, kind), solution_scores)  # weighted_sc


def select(cands: list[Candidate], strategy: str, kind: str, how: str = "min", k: int = 3) -> bool:
    """Whether ``strategy`` picks a correct answer among ``cands`` (scores aggregated by ``how``)."""
    if strategy == "pass" and cands:
        return any(c.correct for c in cands)
    return cands[choose(cands, strategy, kind, how, k)].correct
