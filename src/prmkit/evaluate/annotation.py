"""Annotation quality against the world's oracle (Math-Shepherd §4.4, with exact truth instead of humans).

From one ``per_step`` run at N_max that kept every completion's outcome and token count, each strategy
at each N <= N_max is *replayed* exactly: ``per_step`` at N reads the first N outcomes of every prefix,
``early_stop`` reads them round by round until the first success, ``binary_search`` bisects with
early-stopped probes over the same outcomes. The labels and costs are those a real run drawing the same
completions in the same order would produce, so all strategies are compared on identical samples.

Truth is the first-error convention (PRM800K): steps before the oracle's first wrong step are good, the
rest bad. Metrics per (strategy, N), over the steps that completions decide (all but the last, whose label
is the graded answer): HE accuracy, precision/recall of the "good" label, mean SE of truly good and bad
steps (calibration), first-error agreement (predicted first HE=0 step == oracle's, -1 when none),
completions per labelled step and tokens per solution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prmkit.annotate import ANNOTATION_STRATEGIES, Bisection, early_stop_rounds
from prmkit.types import Problem, StepLabels, index_problems
from prmkit.world import judge


@dataclass(frozen=True)
class Replay:
    hard: list[int]
    soft: list[float | None]
    completions: int
    tokens: int


def _early(outcomes: list[int], n: int) -> tuple[int, int]:
    """(hard, completions drawn) for one prefix under early stopping with budget n."""
    drawn = 0
    for k in early_stop_rounds(n):
        drawn += k
        if any(outcomes[:drawn]):
            return 1, drawn
    return 0, drawn


def replay(rec: StepLabels, n: int, strategy: str) -> Replay:
    """Labels and cost of ``strategy`` at ``n`` completions, from a per_step record's outcomes."""
    outcomes, toks = rec.meta["outcomes"], rec.meta["completion_tokens"]
    last, final = len(rec.steps) - 1, int(bool(rec.final_correct))
    if any(len(o) < n for o in outcomes[:last]):
        raise ValueError(
            f"{rec.problem_id}/{rec.sample_id}: needs a per_step run with at least {n} completions"
        )
    hard, soft, used, tokens = [0] * (last + 1), [None] * (last + 1), 0, 0
    hard[last], soft[last] = final, float(final)
    if strategy == "per_step":
        for i in range(last):
            hard[i], soft[i] = int(any(outcomes[i][:n])), sum(outcomes[i][:n]) / n
            used, tokens = used + n, tokens + sum(toks[i][:n])
    elif strategy == "early_stop":
        for i in range(last):
            hard[i], k = _early(outcomes[i], n)
            soft[i] = sum(outcomes[i][:n]) / n if k == n else None
            used, tokens = used + k, tokens + sum(toks[i][:k])
    elif strategy == "binary_search":
        search = (
            Bisection(last, last + 1) if final else Bisection(-1, last)
        )  # right answer: all good, no probes
        while not search.done:
            h, k = _early(outcomes[search.mid], n)
            used, tokens = used + k, tokens + sum(toks[search.mid][:k])
            search.update(bool(h))
        hard = [int(i < search.hi) for i in range(last + 1)]
    else:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(ANNOTATION_STRATEGIES)}")
    return Replay(hard, soft, used, tokens)


def truth_labels(problem: Problem, steps: list[str]) -> tuple[list[int], int]:
    """Oracle labels under the first-error convention, and the first error index (-1 if none)."""
    v = judge(problem, steps)
    first = v.first_error
    return [int(first < 0 or i < first) for i in range(len(steps))], first


def annotation_quality(
    records: list[StepLabels], problems: list[Problem], ns: tuple[int, ...] = (1, 2, 4, 8, 16)
) -> list[dict]:
    """One row per (strategy, N): the metrics of the module docstring."""
    by_id = index_problems(problems)
    recs = [r for r in records if "outcomes" in r.meta and not r.skipped]
    if not recs:
        raise ValueError(
            "no per_step records with outcomes to evaluate (run annotate with strategy per_step)"
        )
    n_max = min(min((len(o) for o in r.meta["outcomes"][:-1]), default=10**9) for r in recs)
    truths = {}
    for r in recs:
        if r.problem_id not in by_id:
            raise ValueError(f"labels name problem {r.problem_id}, which is not among the given problems")
        truths[r.key] = truth_labels(by_id[r.problem_id], r.steps)
    rows = []
    for strategy in ANNOTATION_STRATEGIES:
        for n in ns:
            if n > n_max:
                continue
            agree = total = tp = fp = fn = 0
            se_good: list[float] = []
            se_bad: list[float] = []
            first_ok = used = tokens = decided = 0
            for r in recs:
                truth, first = truths[r.key]
                rep = replay(r, n, strategy)
                for i in range(len(r.steps) - 1):
                    y, h = truth[i], rep.hard[i]
                    agree += y == h
                    total += 1
                    tp, fp, fn = tp + (h and y), fp + (h and not y), fn + (y and not h)
                    if rep.soft[i] is not None:
                        (se_good if y else se_bad).append(rep.soft[i])
                pred_first = next((i for i, h in enumerate(rep.hard) if h == 0), -1)
                first_ok += pred_first == first
                used, tokens, decided = (
                    used + rep.completions,
                    tokens + rep.tokens,
                    decided + len(r.steps) - 1,
                )
            rows.append(
                {
                    "strategy": strategy,
                    "n": n,
                    "solutions": len(recs),
                    "steps": total,
                    "he_accuracy": agree / max(1, total),
                    "he_precision": tp / max(1, tp + fp),
                    "he_recall": tp / max(1, tp + fn),
                    "se_mean_good": sum(se_good) / len(se_good) if se_good else None,
                    "se_mean_bad": sum(se_bad) / len(se_bad) if se_bad else None,
                    "first_error_agreement": first_ok / len(recs),
                    "completions_per_step": used / max(1, decided),
                    "tokens_per_solution": tokens / len(recs),
                }
            )
    return rows


def render_table(rows: list[dict]) -> str:
    head = "| strategy | N | HE acc | HE prec | HE rec | SE good | SE bad | first-error agr. | compl./step | tokens/sol. |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        se = [f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("se_mean_good", "se_mean_bad")]
        lines.append(
            f"| {r['strategy']} | {r['n']} | {r['he_accuracy']:.1%} | {r['he_precision']:.1%} | {r['he_recall']:.1%} "
            f"| {se[0]} | {se[1]} | {r['first_error_agreement']:.1%} | {r['completions_per_step']:.2f} "
            f"| {r['tokens_per_solution']:.0f} |"
        )
    return "\n".join(lines)


def plot_quality(rows: list[dict], path: str | Path) -> None:
    """annotation_quality.png: HE accuracy, first-error agreement and cost against N, per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [
        ("he_accuracy", "HE step accuracy"),
        ("first_error_agreement", "first-error agreement"),
        ("completions_per_step", "completions per step"),
    ]
    for ax, (key, title) in zip(axes, panels, strict=True):
        for strategy in ANNOTATION_STRATEGIES:
            pts = [(r["n"], r[key]) for r in rows if r["strategy"] == strategy]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=strategy)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N completions per prefix")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
