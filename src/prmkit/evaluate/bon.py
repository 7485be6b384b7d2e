"""Best-of-N curves: accuracy of each selection strategy as N grows, from one pool of samples per problem.

For N in 1, 2, 4, ... N_max and each of ``groups`` resampled draws (the papers use 3), every problem's
N candidates are drawn from its pool *without replacement* (seeded; the same draw for every strategy,
so strategies are compared on identical candidates). Accuracy is averaged over draws and problems.
The 95 % interval is over problems: 1.96 x the standard error of the per-problem accuracy averaged over
the draws, which is what varies from one benchmark set to another. ``bon.png`` has one line per
strategy with its interval as a band.

``within_problem_auc`` measures the ranking behind best-of-N: how often a correct sample of a problem
outscores a wrong sample of the same problem (ties count half), pooled over the (right, wrong) pairs of
every problem that has both; 0.5 is a random ranking. Its 95 % interval is over problems too: the
pooled AUC is a ratio of per-problem sums (wins over pairs), and its standard error is the ratio
estimator's, with problems as clusters, so it is computed in closed form and never resampled.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from prmkit.types import Problem, Solution
from prmkit.verify import Candidate, aggregate, group_answers, select


def n_values(n_max: int) -> list[int]:
    """1, 2, 4, ... up to ``n_max`` (``n_max`` itself included).

    >>> n_values(16), n_values(12)
    ([1, 2, 4, 8, 16], [1, 2, 4, 8, 12])
    """
    out, n = [], 1
    while n < n_max:
        out.append(n)
        n *= 2
    return out + [n_max]


def within_problem_auc(problems: dict[str, list[tuple[float, bool]]]) -> dict:
    """``{auc, ci95, problems, pairs}`` from (solution score, correct) per sample of each problem.
    Problems with only right or only wrong samples are skipped (``problems`` counts the rest); with no
    problem left, auc is None, and with one, ci95 is None.

    >>> within_problem_auc({"a": [(3, True), (1, True), (2, False)], "b": [(5, True), (4, False)], "c": [(1, True)]})
    {'auc': 0.6666666666666666, 'ci95': 0.43555555555555553, 'problems': 2, 'pairs': 3}

    In "a", 3 beats 2 and 1 does not (1 win of 2 pairs); in "b", 5 beats 4 (1 of 1); "c" has no wrong
    sample. AUC = 2/3. Residuals w - AUC * p: 1 - 4/3 = -1/3 and 1 - 2/3 = 1/3, so the standard error
    is sqrt(2/1 * (1/9 + 1/9)) / 3 = 2/9, and ci95 = 1.96 * 2/9.
    """
    per = []  # (wins, pairs) per problem with both kinds of sample
    for cands in problems.values():
        pos = [x for x, ok in cands if ok]
        neg = [x for x, ok in cands if not ok]
        if pos and neg:
            per.append((sum((a > b) + 0.5 * (a == b) for a in pos for b in neg), len(pos) * len(neg)))
    n, pairs = len(per), sum(p for _, p in per)
    if not n:
        return {"auc": None, "ci95": None, "problems": 0, "pairs": 0}
    auc = sum(w for w, _ in per) / pairs
    ci95 = None
    if n > 1:
        var = n / (n - 1) * sum((w - auc * p) ** 2 for w, p in per)
        ci95 = 1.96 * math.sqrt(var) / pairs
    return {"auc": auc, "ci95": ci95, "problems": n, "pairs": pairs}


def auc_rows(
    solutions: list[Solution],
    scores: dict[str, dict[tuple[str, int], list[float]]],
    aggregations: dict[str, list[str]],
) -> list[dict]:
    """``within_problem_auc`` of every verifier in ``scores`` and each of its aggregations, as rows
    ``{verifier, aggregation, auc, ci95, problems, pairs}``. A step-less solution scores below every
    solution with steps, as ``verify.select`` ranks it."""
    rows = []
    for name, by_key in scores.items():
        for how in aggregations[name]:
            per: dict[str, list[tuple[float, bool]]] = {}
            for s in solutions:
                row = by_key.get(s.key)
                if row is None:
                    raise ValueError(f"auc: {name} has no scores for {s.problem_id}/{s.sample_id}")
                x = aggregate(row, how) if row else -math.inf
                per.setdefault(s.problem_id, []).append((x, bool(s.correct)))
            rows.append({"verifier": name, "aggregation": how, **within_problem_auc(per)})
    return rows


def bon_curves(
    pools: dict[str, list[Candidate]],
    kind: str,
    strategies: dict[str, tuple[str, str]],
    groups: int = 3,
    seed: int = 0,
    k: int = 3,
) -> list[dict]:
    """Rows ``{strategy, n, accuracy, ci95}``. ``strategies`` maps a display name to (selection strategy,
    aggregation), e.g. ``{"PRM (min)": ("best_of_n", "min"), "majority": ("majority", "min")}``."""
    if not pools:
        raise ValueError("bon: no problems")
    empty = [pid for pid, c in pools.items() if not c]
    if empty:
        raise ValueError(f"bon: problem {empty[0]} has an empty pool ({len(empty)} such problems)")
    n_max = min(len(c) for c in pools.values())
    rows = []
    for n in n_values(n_max):
        draws = []  # per group: {pid: indices}
        for g in range(groups):
            rng = random.Random(f"{seed}-{n}-{g}")
            draws.append({pid: rng.sample(range(len(c)), n) for pid, c in sorted(pools.items())})
        for name, (strategy, how) in strategies.items():
            per_problem = []
            for pid, cands in pools.items():
                hits = [select([cands[i] for i in d[pid]], strategy, kind, how, k) for d in draws]
                per_problem.append(sum(hits) / len(hits))
            mean = sum(per_problem) / len(per_problem)
            var = sum((x - mean) ** 2 for x in per_problem) / max(1, len(per_problem) - 1)
            rows.append(
                {"strategy": name, "n": n, "accuracy": mean, "ci95": 1.96 * math.sqrt(var / len(per_problem))}
            )
    return rows


def bon_report(
    solutions: list[Solution],
    problems: dict[str, Problem],
    scores: dict[str, dict[tuple[str, int], list[float]]],
    aggregations: list[str] | dict[str, list[str]],
    groups: int = 3,
    top_k: int = 3,
) -> tuple[list[dict], str]:
    """Curves for majority voting, pass@N and, per verifier in ``scores`` (name -> step scores by
    (problem_id, sample_id)): best-of-N for each aggregation (a list for every verifier, or a list per
    verifier name), weighted SC and top-K voting with the first. Returns the rows and a markdown table
    (accuracy +- 95 % interval per N)."""
    aggs = aggregations if isinstance(aggregations, dict) else {name: list(aggregations) for name in scores}
    strategies = {"majority": ("majority", "", "min"), "pass@N": ("pass", "", "min")}
    for name in scores:
        for how in aggs[name]:
            strategies[f"{name} best-of-N ({how})"] = ("best_of_n", name, how)
        strategies[f"{name} weighted SC ({aggs[name][0]})"] = ("weighted_sc", name, aggs[name][0])
        strategies[f"{name} top-{top_k} voting ({aggs[name][0]})"] = ("top_k", name, aggs[name][0])
    kinds = {problems[s.problem_id].kind for s in solutions if s.problem_id in problems}
    if len(kinds) > 1:
        raise ValueError(f"bon: the samples mix answer kinds {sorted(kinds)}; evaluate them separately")
    kind = kinds.pop() if kinds else "gsm8k"
    by_problem: dict[str, list[Solution]] = {}
    for s in solutions:
        if s.problem_id not in problems:
            raise ValueError(f"bon: problem {s.problem_id} is not among the given problems")
        by_problem.setdefault(s.problem_id, []).append(s)
    answer_groups = {pid: group_answers([s.answer for s in sols], kind) for pid, sols in by_problem.items()}
    rows = []
    for label, (strategy, name, how) in strategies.items():
        pool: dict[str, list[Candidate]] = {}
        for pid, sols in by_problem.items():
            for s, g in zip(sols, answer_groups[pid], strict=True):
                row = scores[name].get(s.key) if name else []
                if row is None:
                    raise ValueError(f"bon: {name} has no scores for {s.problem_id}/{s.sample_id}")
                pool.setdefault(pid, []).append(Candidate(s.answer, bool(s.correct), row, g))
        rows += bon_curves(pool, kind, {label: (strategy, how)}, groups, k=top_k)
    return rows, bon_table(rows)


def bon_table(rows: list[dict]) -> str:
    """Markdown: one line per strategy, accuracy +- 95 % interval per N."""
    ns = sorted({r["n"] for r in rows})
    lines = ["| strategy | " + " | ".join(f"N={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
    for label in dict.fromkeys(r["strategy"] for r in rows):
        cells = {r["n"]: r for r in rows if r["strategy"] == label}
        lines.append(
            f"| {label} | "
            + " | ".join(f"{cells[n]['accuracy']:.1%} ± {cells[n]['ci95']:.1%}" for n in ns)
            + " |"
        )
    return "\n".join(lines)


def plot_bon(rows: list[dict], path: str | Path, title: str = "best-of-N") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["strategy"] for r in rows))
    colors = plt.get_cmap("tab20" if len(names) > 10 else "tab10").colors
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    for i, name in enumerate(names):
        pts = [r for r in rows if r["strategy"] == name]
        ns = [r["n"] for r in pts]
        acc = [r["accuracy"] for r in pts]
        # voting strategies dashed, verifier picks solid, pass@N dotted: 12 lines stay readable
        style = (
            ":"
            if name == "pass@N"
            else "--"
            if ("SC" in name or "voting" in name or name == "majority")
            else "-"
        )
        ax.plot(ns, acc, marker="o", markersize=4, linestyle=style, color=colors[i % len(colors)], label=name)
        ax.fill_between(ns, [a - r["ci95"] for a, r in zip(acc, pts, strict=True)],
                        [a + r["ci95"] for a, r in zip(acc, pts, strict=True)],
                        color=colors[i % len(colors)], alpha=0.07)  # fmt: skip
    ax.set_xscale("log", base=2)
    all_n = sorted({r["n"] for r in rows})
    ax.set_xticks(all_n, [str(n) for n in all_n])
    ax.set_xlabel("N samples per problem")
    ax.set_ylabel("accuracy (bands: 95 % intervals)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
