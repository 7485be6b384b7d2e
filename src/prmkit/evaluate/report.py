"""``report.md`` of ``prmkit demo``: markdown tables (with 95 % intervals) and the plots, from ``report.json``.

The report states the papers' hypothesis for best-of-N (PRM > ORM > majority voting, the gap growing
with N) and says whether the run shows it, from the numbers alone: a method "beats" another at N when
its accuracy is higher by more than the larger of the two 95 % half-intervals, "ties" otherwise.
Beside best-of-N, a table gives every verifier's within-problem AUC (``evaluate/bon.py``) per split:
how well it ranks a problem's own samples, which is what best-of-N asks of it.
"""

from __future__ import annotations

from typing import Any


def bon_names(prm: str = "min") -> dict[str, str]:
    """The lines of the hypothesis, as bon_report names them; ``prm`` is the PRM's aggregation
    (``demo.prm_aggregation``)."""
    return {"PRM": f"PRM best-of-N ({prm})", "ORM": "ORM best-of-N (last)", "majority": "majority"}


def pct(x: float | None) -> str:
    """A percentage cell; "–" for a metric that could not be computed (None)."""
    return "–" if x is None else f"{x:.1%}"


def num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def at_n(rows: list[dict], n: int) -> dict[str, dict]:
    """The best-of-N rows at one N, by strategy name."""
    return {r["strategy"]: r for r in rows if r["n"] == n}


def compare(a: dict, b: dict) -> str:
    """ "beats", "ties" or "loses": ``a`` against ``b`` (rows with accuracy and ci95).

    >>> compare({"accuracy": 0.7, "ci95": 0.05}, {"accuracy": 0.6, "ci95": 0.06})
    'beats'
    >>> compare({"accuracy": 0.62, "ci95": 0.05}, {"accuracy": 0.6, "ci95": 0.06})
    'ties'
    """
    margin = max(a["ci95"], b["ci95"])
    if a["accuracy"] - b["accuracy"] > margin:
        return "beats"
    if b["accuracy"] - a["accuracy"] > margin:
        return "loses"
    return "ties"


def hypothesis(rows: list[dict], prm: str = "min") -> list[str]:
    """Sentences on PRM > ORM > majority at the largest N, and on the PRM's gap to majority voting
    growing from the smallest N > 1 to the largest (the PRM read by the aggregation ``prm``)."""
    ns = sorted({r["n"] for r in rows})
    last = at_n(rows, ns[-1])
    names = bon_names(prm)
    have = {k: last[v] for k, v in names.items() if v in last}
    if "majority" not in have or len(have) < 2:
        return []
    order = sorted(have, key=lambda k: -have[k]["accuracy"])
    lines = [
        f"At N={ns[-1]}: " + ", ".join(f"{k} {pct(have[k]['accuracy'])} ± {pct(have[k]['ci95'])}" for k in order)
        + "."
    ]  # fmt: skip
    pairs = [("PRM", "ORM"), ("ORM", "majority"), ("PRM", "majority")]
    verdicts = [f"{a} {compare(have[a], have[b])} {b}" for a, b in pairs if a in have and b in have]
    holds = all(v.split()[1] == "beats" for v in verdicts)
    lines.append(
        "The papers' ordering (PRM > ORM > majority voting) "
        + ("**holds**" if holds else "**does not hold**")
        + " beyond the intervals: "
        + "; ".join(verdicts)
        + "."
    )
    if "PRM" in have and len(ns) > 2:
        first = at_n(rows, ns[1])
        gap0 = first[names["PRM"]]["accuracy"] - first["majority"]["accuracy"]
        gap1 = have["PRM"]["accuracy"] - have["majority"]["accuracy"]
        trend = "grows" if gap1 > gap0 else "does not grow"
        lines.append(
            f"PRM minus majority voting: {gap0:+.1%} at N={ns[1]}, {gap1:+.1%} at N={ns[-1]} (the gap {trend})."
        )
    return lines


def sc_vs_alone(rows: list[dict], verifier: str = "PRM", how: str = "min") -> str | None:
    """Math-Shepherd's PRM + self-consistency (weighted SC) against the PRM alone, at the largest N."""
    ns = sorted({r["n"] for r in rows})
    last = at_n(rows, ns[-1])
    alone, sc = last.get(f"{verifier} best-of-N ({how})"), last.get(f"{verifier} weighted SC ({how})")
    if alone is None or sc is None:
        return None
    return (
        f"{verifier} + self-consistency (weighted SC) {pct(sc['accuracy'])} against {verifier} alone "
        f"{pct(alone['accuracy'])} at N={ns[-1]}: voting {EFFECT[compare(sc, alone)]}."
    )


EFFECT = {"beats": "helps", "loses": "hurts", "ties": "makes no difference beyond the intervals"}


def _generator(split: str, r: dict) -> list[str]:
    ks = list(r["pass_at_k"])
    return [
        f"**{split}** ({r['problems']} problems, {r['samples_per_problem']} samples each at T={r['temperature']})",
        "",
        "| greedy (T=0) | sampled accuracy | " + " | ".join(f"pass@{k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
        f"| {pct(r.get('greedy_accuracy'))} | {pct(r['sampled_accuracy'])} | "
        + " | ".join(pct(r["pass_at_k"][k]) for k in ks)
        + " |",
        "",
    ]


def curve_table(rows: list[dict]) -> str:
    """``prmkit eval verifier-curve``'s table: one row per verifier kind and fraction of the labels."""
    head = "| kind | fraction | labelled | step acc | first-error F1 | final judgement | best-of-N |"
    lines = [head, "|---|---|---|---|---|---|---|"] + [
        f"| {r['kind']} | {r['fraction']:g} | {r['labelled_solutions']} | {pct(r['step_accuracy'])} | "
        f"{num(r['f1'])} | {pct(r['final_judgement_accuracy'])} | {pct(r['best_of_n'])} |"
        for r in rows
    ]
    return "\n".join(lines)


def auc_table(splits: dict[str, dict]) -> list[str]:
    """One row per verifier and aggregation, the within-problem AUC of each split in its columns."""
    have = {s: r["within_problem_auc"] for s, r in splits.items() if r.get("within_problem_auc")}
    if not have:
        return []
    cells: dict[str, dict[str, str]] = {}
    for split, rows in have.items():
        for row in rows:
            auc = num(row["auc"]) + ("" if row["ci95"] is None else f" ± {row['ci95']:.3f}")
            counted = f"{row['problems']} of {splits[split]['problems']}"
            cells.setdefault(f"{row['verifier']} ({row['aggregation']})", {})[split] = f"{auc} | {counted}"
    lines = [
        "## Ranking a problem's own samples",
        "",
        "Within-problem AUC: how often a correct sample of a problem outscores a wrong sample of the same"
        " problem (ties count half), pooled over the pairs of every problem with both right and wrong"
        " samples; 0.5 is a random ranking. ± is the 95 % interval over problems; problems counts those"
        " with both kinds of sample. likelihood, when present, is the generator's own mean token"
        " log-probability, with no training.",
        "",
        "| verifier | " + " | ".join(f"{s} AUC | {s} problems" for s in have) + " |",
        "|---|" + "---|---|" * len(have),
    ]
    for name, by_split in cells.items():
        lines.append(f"| {name} | " + " | ".join(by_split.get(s, "– | –") for s in have) + " |")
    return [*lines, ""]


def _verifiers(info: dict, recipe: dict) -> list[str]:
    pool = info["pool"]
    lines = [
        "## Verifier training data",
        "",
        f"- Train pool: {pool['problems']} problems, {pool['samples']} samples, {pct(pool['accuracy'])} correct.",
    ]
    if recipe.get("demo", {}).get("verifier_init") == "verifier_lm":
        lm = recipe["verifier_lm"]
        length = f"{lm['max_steps']} steps" if lm["max_steps"] > 0 else f"{lm['epochs']:g} epochs"
        lines.append(
            f"- Every trained verifier starts from its own LM ({lm['model']}, {length} at lr {lm['lr']:g} on the"
            " reference solutions the generator learnt from), not from the generator."
        )
    if "labels" in info:
        lab = info["labels"]
        lines.append(
            f"- Step labels: {lab['solutions']} solutions annotated by {lab['strategy']} with N={lab['n']} "
            f"completions per probe ({lab['tokens']:,} completion tokens; {lab['skipped']} skipped)."
        )
    for key, name in (("prm", "PRM"), ("orm", "ORM"), ("value", "value verifier")):
        if f"{key}_solutions" in info:
            lines.append(f"- {name}: trained on {info[f'{key}_solutions']} solutions.")
    return [*lines, ""]


def _audit(rows: list[dict]) -> list[str]:
    from prmkit.evaluate.annotation import render_table

    return [
        "## Annotation quality against the oracle",
        "",
        f"{rows[0]['solutions']} pool solutions annotated per step at the largest N, every strategy and N"
        " replayed from the same completions; truth is the oracle's first-error labelling.",
        "",
        render_table(rows),
        "",
        "![annotation quality](annotation_quality.png)",
        "",
    ]


def _quality(split: str, quality: dict[str, dict]) -> list[str]:
    lines = [
        f"**{split}** (every sampled solution of the split; a step is judged good at score >= 0.5)",
        "",
        "| verifier | step accuracy | first-error acc. (erroneous) | acc. (correct) | first-error F1 | "
        "final-answer judgement |",
        "|---|---|---|---|---|---|",
    ]
    for name, q in quality.items():
        lines.append(
            f"| {name} | {pct(q['step_accuracy'])} | {pct(q['error_acc'])} | {pct(q['correct_acc'])} | "
            f"{num(q['f1'])} | {pct(q['final_judgement_accuracy'])} |"
        )
    return [*lines, ""]


def _rl(rl: dict, test_bon: list[dict] | None) -> list[str]:
    greedy = rl["greedy"]
    n_seeds = max(len(v["seeds"]) for v in greedy.values())
    lines = [
        "## Reinforcement learning",
        "",
        "Greedy accuracy on the test problems of the SFT generator and of each method started from it, one"
        " run per seed (Math-Shepherd's hypothesis: process PPO > outcome PPO > RFT > SFT; DeepSeekMath's:"
        " process GRPO > outcome GRPO), with the 95% t-interval of the mean over seeds (training seeds only:"
        " every row is judged on the same test problems).",
        "",
        "| policy | " + " | ".join(f"seed {i}" for i in range(n_seeds)) + " | mean ± std | 95% interval |",
        "|---|" + "---|" * (n_seeds + 2),
    ]
    for name, r in greedy.items():
        cells = [pct(x) for x in r["seeds"]] + [""] * (n_seeds - len(r["seeds"]))
        spread = f"{pct(r['mean'])} ± {pct(r['std'])}" if len(r["seeds"]) > 1 else pct(r["mean"])
        ci = r.get("ci95")  # absent in reports written before it was computed
        interval = f"{pct(r['mean'] - ci)} – {pct(r['mean'] + ci)}" if ci and len(r["seeds"]) > 1 else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {spread} | {interval} |")
    lines.append("")
    ver = rl.get("verification")
    if ver:
        n = ver["samples_per_problem"]
        rl_rows, sft_rows = at_n(ver["bon"], n), at_n(test_bon or [], n)
        pick = bon_names(ver.get("aggregation", "min"))["PRM"]  # reports before the field: min
        line = f"RL + verification at N={n}: the {ver['policy']} policy with {pick} "
        line += f"{pct(rl_rows[pick]['accuracy'])}, majority voting {pct(rl_rows['majority']['accuracy'])}"
        if pick in sft_rows:
            line += (
                f"; the SFT generator with the same PRM {pct(sft_rows[pick]['accuracy'])}, "
                f"majority voting {pct(sft_rows['majority']['accuracy'])}"
            )
        lines += [line + ".", "", ver["bon_table"], ""]
    return lines


def search_verdict(rows: list[dict]) -> str | None:
    """One line: every method against best-of-N at the largest budget, judged against the intervals.

    >>> search_verdict([{"method": "best-of-N", "n": 8, "accuracy": 0.4, "ci95": 0.05, "tokens": 560},
    ...                 {"method": "DVTS", "n": 8, "accuracy": 0.5, "ci95": 0.04, "tokens": 570}])
    'At N=8 (about 560 sampled tokens a problem), against best-of-N 40.0% ± 5.0%: DVTS 50.0% ± 4.0% beats.'
    """
    n = max((r["n"] for r in rows if r["method"] == "best-of-N"), default=None)
    at = {r["method"]: r for r in rows if r["n"] == n}
    if n is None or any(r["ci95"] is None for r in at.values()):
        return None  # one seed: no interval to judge by
    bon = at.pop("best-of-N")
    verdicts = [f"{m} {pct(r['accuracy'])} ± {pct(r['ci95'])} {compare(r, bon)}" for m, r in at.items()]
    return (
        f"At N={n} (about {bon['tokens']:.0f} sampled tokens a problem), against best-of-N "
        f"{pct(bon['accuracy'])} ± {pct(bon['ci95'])}: {', '.join(verdicts)}."
    )


def _search(search: dict) -> list[str]:
    verdict = search_verdict(search["rows"])
    return [
        "## PRM-guided search at equal compute",
        "",
        *([verdict, ""] if verdict else []),
        f"Best-of-N, weighted self-consistency (the same samples, PRM-weighted vote), step-level beam search and"
        f" DVTS (beam width {search['beam_width']}; prefixes ranked by the PRM's {search['aggregation']} step"
        f" score) on the first {search['problems']} test problems, {search['seeds']} seeds each; ± is the 95 %"
        " interval over seeds (Student's t). Compare methods at equal tokens per problem, not equal N: a"
        " beam search of N beams samples about N solutions' worth of steps, and scores every prefix.",
        "",
        search["table"],
        "",
        f"![accuracy against sampled tokens]({search['png']})" if search.get("png") else "",
        "",
    ]


def prm_aggregation(report: dict[str, Any]) -> str:
    """How the run's PRM picks a solution (``demo.prm_aggregation``; min in reports before the field)."""
    return report.get("recipe", {}).get("demo", {}).get("prm_aggregation", "min")


def render_report(report: dict[str, Any]) -> str:
    """The whole ``report.md``."""
    splits = report["splits"]
    prm = prm_aggregation(report)
    lines = ["# prmkit demo report", "", f"Run directory: `{report['run_dir']}`", ""]
    for split, r in splits.items():
        if r.get("bon"):
            lines += [f"## Best-of-N, {split} split", ""]
            lines += [f"{s}" for s in hypothesis(r["bon"], prm)]
            sc = sc_vs_alone(r["bon"], how=prm)
            lines += ["", *([sc, ""] if sc else [])]
            lines += [
                f"{report['recipe']['demo']['groups']} resampled draws per N without replacement; ± is the 95 % "
                "interval over problems.",
                "",
                r["bon_table"],
                "",
                f"![best-of-N on the {split} split]({r['bon_png']})",
                "",
            ]
    lines += auc_table(splits)
    lines += ["## Generator", ""]
    for split, r in splits.items():
        lines += _generator(split, r)
    if report.get("verifiers"):
        lines += _verifiers(report["verifiers"], report.get("recipe", {}))
    if report.get("annotation_audit"):
        lines += _audit(report["annotation_audit"])
    quality = {s: r["verifier_quality"] for s, r in splits.items() if r.get("verifier_quality")}
    if quality:
        lines += [
            "## Verifiers against the oracle",
            "",
            "Step accuracy and ProcessBench's first-error metrics with the world oracle's labels, on every"
            " sampled solution; final-answer judgement is Math-Minos' meta-evaluation (last step's score >= 0.5"
            " against the graded answer). A solution whose answer is right by wrong reasoning counts as"
            ' erroneous; "–" means the split has no solution without an error.',
            "",
        ]
        for split, q in quality.items():
            lines += _quality(split, q)
    if report.get("rl"):
        lines += _rl(report["rl"], splits.get("test", {}).get("bon"))
    if report.get("search"):
        lines += _search(report["search"])
    total = sum(report["timings"].values())
    lines += ["## Time per stage", "", "| stage | seconds | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {v / total:.0%} |" for k, v in report["timings"].items()]
    lines += [f"| total | {total:.1f} | |", ""]
    workers = report.get("recipe", {}).get("demo", {}).get("workers", 1)
    if report.get("wall_seconds") and workers > 1:
        lines += [
            f"Wall time {report['wall_seconds']:.0f} s: independent stages ran side by side on {workers} worker"
            " processes, so the stages' times add up to more.",
            "",
        ]
    return "\n".join(lines)
