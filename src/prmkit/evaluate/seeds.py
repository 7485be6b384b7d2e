"""``prmkit eval seeds``: several whole demo runs (``prmkit demo --seed S``, one run directory each: world,
generator and verifiers all reseeded) averaged into one report, every number with its 95 % Student t
interval over the runs.

Within one run, the demo's intervals are over problems (best-of-N, AUC) or over RL training seeds; they
say nothing about how much a result moves with another world and another generator. Across runs, each
row here is the mean of the runs' values and the interval is over runs, so "beats" in the verdicts
below (``report.hypothesis``: higher by more than the larger of two half-intervals) means beyond the
spread over seeds. Only what every run reports is averaged: a strategy, N or verifier missing from one
run is left out (and listed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prmkit.evaluate.bon import bon_table, plot_bon
from prmkit.evaluate.report import bon_names, hypothesis, pct, prm_aggregation, sc_vs_alone, search_verdict
from prmkit.evaluate.stats import mean_ci


def read_reports(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Each run directory's ``report.json``; a missing or unreadable one is an error naming it."""
    reports = []
    for d in run_dirs:
        path = d / "report.json" if d.is_dir() else d
        try:
            reports.append(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ValueError(f"{path}: no report.json (has `prmkit demo` finished in {d}?)") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    return reports


def _pooled(
    per_run: list[dict[tuple, float]], dropped: set, name: str = "mean"
) -> dict[tuple, dict[str, Any]]:
    """Keys every run has (in the first run's order) -> ``{name: mean, ci95, runs}`` over runs (``name``
    as the rows it stands for call their value: ``accuracy`` for best-of-N and search rows, which
    ``report``'s verdicts read, ``auc`` for AUC rows); keys some run lacks go to ``dropped``."""
    common = set.intersection(*(set(r) for r in per_run))
    dropped |= set().union(*(set(r) for r in per_run)) - common
    out = {}
    for k in (k for k in per_run[0] if k in common):
        mean, ci = mean_ci([r[k] for r in per_run])
        out[k] = {name: mean, "ci95": ci or 0.0, "runs": [r[k] for r in per_run]}
    return out


def _paired(splits: list[dict[str, Any]], prm: str) -> list[dict[str, Any]]:
    """Each run's difference between two strategies at the largest N every run has, averaged with its t
    interval over runs: the PRM (alone and with weighted SC), the ORM and majority voting. Paired, the
    runs' shared ups and downs (one generator better than another) cancel, which row intervals keep."""
    names = bon_names(prm)
    pairs = [
        (names["PRM"], names["ORM"]),
        (names["PRM"], "majority"),
        (names["ORM"], "majority"),
        (f"PRM weighted SC ({prm})", "majority"),
        (f"PRM weighted SC ({prm})", names["PRM"]),
    ]
    accs = [{(r["strategy"], r["n"]): r["accuracy"] for r in s.get("bon", [])} for s in splits]
    ns = set.intersection(*({n for _, n in a} for a in accs))
    if not ns:
        return []
    n = max(ns)
    out = []
    for a, b in pairs:
        if all((a, n) in x and (b, n) in x for x in accs):
            diffs = [x[(a, n)] - x[(b, n)] for x in accs]
            mean, ci = mean_ci(diffs)
            out.append({"a": a, "b": b, "n": n, "difference": mean, "ci95": ci or 0.0, "runs": diffs})
    return out


def seeds_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and 95 % t intervals over runs of every split's generator numbers, best-of-N rows and
    within-problem AUCs, the RL methods' greedy accuracy (each run's mean over its own training seeds)
    and the search comparison's accuracies."""
    if len(reports) < 2:
        raise ValueError(f"eval seeds: need at least 2 runs for an interval over seeds, got {len(reports)}")
    aggregations = {prm_aggregation(r) for r in reports}
    if len(aggregations) > 1:
        raise ValueError(
            f"eval seeds: the runs' PRMs pick by different aggregations: {', '.join(sorted(aggregations))}"
        )
    prm = aggregations.pop()
    dropped: set = set()
    splits: dict[str, Any] = {}
    names = set.intersection(*(set(r["splits"]) for r in reports))
    for split in [s for s in reports[0]["splits"] if s in names]:
        rs = [r["splits"][split] for r in reports]
        gen = _pooled(
            [{("greedy",): r["greedy_accuracy"]} if r.get("greedy_accuracy") is not None else {} for r in rs],
            dropped,
        ) | _pooled([{("sampled",): r["sampled_accuracy"]} for r in rs], dropped)
        gen |= _pooled([{("pass", int(k)): v for k, v in r["pass_at_k"].items()} for r in rs], dropped)
        bon = _pooled(
            [{(row["strategy"], row["n"]): row["accuracy"] for row in r.get("bon", [])} for r in rs],
            dropped,
            "accuracy",
        )
        auc = _pooled(
            [{(row["verifier"], row["aggregation"]): row["auc"] for row in r.get("within_problem_auc") or []} for r in rs],
            dropped,
            "auc",
        )  # fmt: skip
        splits[split] = {
            "problems": rs[0]["problems"],
            "samples_per_problem": rs[0]["samples_per_problem"],
            "generator": {" ".join(map(str, k)): v for k, v in gen.items()},
            "bon": [{"strategy": name, "n": n, **v} for (name, n), v in bon.items()],
            "within_problem_auc": [{"verifier": v, "aggregation": a, **x} for (v, a), x in auc.items()],
            "paired": _paired(rs, prm),
        }
    out: dict[str, Any] = {"runs": [r["run_dir"] for r in reports], "prm_aggregation": prm, "splits": splits}
    if all(r.get("rl") for r in reports):
        rl = _pooled([{(k,): v["mean"] for k, v in r["rl"]["greedy"].items()} for r in reports], dropped)
        out["rl"] = {k[0]: v for k, v in rl.items()}
    if all(r.get("search") for r in reports):
        rows = [r["search"]["rows"] for r in reports]
        acc = _pooled(
            [{(row["method"], row["n"]): row["accuracy"] for row in rr} for rr in rows], dropped, "accuracy"
        )
        tokens = _pooled([{(row["method"], row["n"]): row["tokens"] for row in rr} for rr in rows], set())
        out["search"] = [
            {"method": m, "n": n, **acc[(m, n)], "tokens": tokens[(m, n)]["mean"]} for (m, n) in acc
        ]
    out["dropped"] = sorted(" ".join(map(str, k)) for k in dropped)
    return out


def _row(cells: list[str], runs: list[float], fmt: str) -> str:
    """A markdown row: the cells, then each run's value."""
    return "| " + " | ".join([*cells, ", ".join(fmt.format(x) for x in runs)]) + " |"


def render_seeds(summary: dict[str, Any], pngs: dict[str, str]) -> str:
    """``seeds.md``: the verdicts, the best-of-N and AUC tables, RL and search, over runs."""
    n = len(summary["runs"])
    lines = [
        f"# prmkit demo over {n} runs",
        "",
        "Runs: " + ", ".join(f"`{r}`" for r in summary["runs"]) + ".",
        "",
        f"Every number is the mean over the {n} runs (each its own world, generator and verifiers); ± is the"
        " 95 % Student t interval over runs.",
        "",
    ]
    for split, s in summary["splits"].items():
        gen = s["generator"]
        lines += [
            f"## {split} split ({s['problems']} problems x {s['samples_per_problem']} samples per run)",
            "",
        ]
        lines += ["| | " + " | ".join(gen) + " |", "|---|" + "---|" * len(gen)]
        lines += [
            "| generator | "
            + " | ".join(f"{pct(v['mean'])} ± {pct(v['ci95'])}" for v in gen.values())
            + " |",
            "",
        ]
        if s["bon"]:
            lines += [*hypothesis(s["bon"], summary["prm_aggregation"]), ""]
            sc = sc_vs_alone(s["bon"], how=summary["prm_aggregation"])
            lines += [
                *([sc, ""] if sc else []),
                bon_table(s["bon"]),
                "",
                f"![best-of-N over runs]({pngs[split]})",
                "",
            ]
        if s["paired"]:
            lines += [
                "Paired: each run's difference at the same N, then the mean and its interval over runs"
                " (beyond the interval when it excludes 0).",
                "",
                "| difference | N | mean ± 95 % interval | runs |",
                "|---|---|---|---|",
            ]
            lines += [
                _row([f"{d['a']} − {d['b']}", str(d["n"]), f"{d['difference']:+.1%} ± {d['ci95']:.1%}"], d["runs"], "{:+.1%}")
                for d in s["paired"]
            ]  # fmt: skip
            lines.append("")
        if s["within_problem_auc"]:
            lines += ["| verifier | within-problem AUC | runs |", "|---|---|---|"]
            lines += [
                _row([f"{r['verifier']} ({r['aggregation']})", f"{r['auc']:.3f} ± {r['ci95']:.3f}"], r["runs"], "{:.3f}")
                for r in s["within_problem_auc"]
            ]  # fmt: skip
            lines.append("")
    if summary.get("rl"):
        lines += [
            "## Reinforcement learning (greedy test accuracy; each run: the mean over its RL seeds)",
            "",
        ]
        lines += ["| policy | mean ± 95 % interval over runs | runs |", "|---|---|---|"]
        lines += [
            _row([k, f"{pct(v['mean'])} ± {pct(v['ci95'])}"], v["runs"], "{:.1%}")
            for k, v in summary["rl"].items()
        ]
        lines.append("")
    if summary.get("search"):
        verdict = search_verdict(summary["search"])
        lines += ["## PRM-guided search at equal compute", "", *([verdict, ""] if verdict else [])]
        lines += ["| method | N | accuracy | tokens / problem |", "|---|---|---|---|"]
        lines += [
            f"| {r['method']} | {r['n']} | {pct(r['accuracy'])} ± {pct(r['ci95'])} | {r['tokens']:.0f} |"
            for r in summary["search"]
        ]
        lines.append("")
    if summary["dropped"]:
        lines += ["Left out (not in every run): " + ", ".join(summary["dropped"]) + ".", ""]
    return "\n".join(lines)


def write_seeds(run_dirs: list[Path], out_dir: Path) -> dict[str, Any]:
    """Read the runs' reports and write ``seeds.json``, ``seeds.md`` and ``bon_seeds[_split].png``."""
    from prmkit.io import atomic_write_json, atomic_write_text

    summary = seeds_report(read_reports(run_dirs))
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for split, s in summary["splits"].items():
        if s["bon"]:
            pngs[split] = "bon_seeds.png" if split == "test" else f"bon_seeds_{split}.png"
            n = len(summary["runs"])
            plot_bon(s["bon"], out_dir / pngs[split], title=f"best-of-N, {split} split, mean of {n} runs")
    atomic_write_json(out_dir / "seeds.json", summary)
    atomic_write_text(out_dir / "seeds.md", render_seeds(summary, pngs))
    return summary
