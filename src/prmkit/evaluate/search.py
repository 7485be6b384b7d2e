"""The compute-matched comparison of search strategies: accuracy against sampled tokens, not N.

Each (strategy, budget, seed) run of ``prmkit.search`` gives per-problem records. A run of best-of-N
yields two methods from the same candidates: "best-of-N" (the best-scored candidate) and "weighted SC"
(the PRM-weighted majority vote, ``verify.choose``'s ``weighted_sc``); beam search and DVTS pick with
their config's ``select``. Every method's point is its mean accuracy over seeds with a 95 % interval
over seeds (Student's t: with 3 seeds, 4.30 x the standard error), at its mean sampled tokens per
problem, so strategies that spend their budget differently are compared at equal compute
(Snell et al. 2024). ``search.png`` draws accuracy against tokens per problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prmkit.evaluate.stats import mean_ci
from prmkit.search import candidates
from prmkit.verify import choose

METHODS = {"best_of_n": ("best-of-N", "weighted SC"), "beam_search": ("beam search",), "dvts": ("DVTS",)}


def method_accuracy(records: list[dict[str, Any]], selection: str, kind: str, how: str) -> float:
    """Accuracy of one run's records when each problem's candidates are picked by ``selection``."""
    hits = 0
    for r in records:
        cands = r["candidates"]
        hits += bool(cands) and cands[choose(candidates(cands), selection, kind, how)]["correct"]
    return hits / len(records)


def compare_rows(runs: list[dict[str, Any]], kind: str = "gsm8k") -> list[dict[str, Any]]:
    """Rows ``{method, n, accuracy, ci95, seeds, tokens, prm_calls, encoded_tokens, seconds}`` from runs
    ``{strategy, n, seed, select, aggregation, records}``; the cost columns are means per problem."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["strategy"], run["n"]), []).append(run)
    rows = []
    for (strategy, n), group in groups.items():
        for method in METHODS[strategy]:
            accs = []
            for run in group:
                selection = {"best-of-N": "best_of_n", "weighted SC": "weighted_sc"}.get(
                    method, run["select"]
                )
                accs.append(method_accuracy(run["records"], selection, kind, run["aggregation"]))
            acc, ci = mean_ci(accs)
            records = [r for run in group for r in run["records"]]

            def per_problem(key: str, records=records) -> float | None:
                vals = [r[key] for r in records]
                return None if any(v is None for v in vals) else sum(vals) / len(vals)

            rows.append(
                {"method": method, "n": n, "accuracy": acc, "ci95": ci, "seeds": accs,
                 "problems": len(group[0]["records"]), "tokens": per_problem("tokens"),
                 "prm_calls": per_problem("prm_calls"), "encoded_tokens": per_problem("encoded_tokens"),
                 "seconds": per_problem("seconds")}
            )  # fmt: skip
    order = {m: i for i, m in enumerate(m for ms in METHODS.values() for m in ms)}
    return sorted(rows, key=lambda r: (order[r["method"]], r["n"]))


def search_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per method and budget."""
    lines = [
        "| method | N | accuracy (95 % CI over seeds) | tokens / problem | PRM calls / problem "
        "| prompt tokens encoded / problem | seconds / problem |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = f" ± {r['ci95']:.1%}" if r["ci95"] is not None else ""
        enc = f"{r['encoded_tokens']:.0f}" if r["encoded_tokens"] is not None else "–"
        lines.append(
            f"| {r['method']} | {r['n']} | {r['accuracy']:.1%}{ci} | {r['tokens']:.0f} | {r['prm_calls']:.1f} "
            f"| {enc} | {r['seconds']:.3f} |"
        )
    return "\n".join(lines)


def plot_search(rows: list[dict[str, Any]], path: str | Path, title: str = "PRM-guided search") -> None:
    """Accuracy against sampled tokens per problem, one line per method, 95 % intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    styles = {"best-of-N": "-", "weighted SC": "--", "beam search": "-", "DVTS": "-"}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for i, method in enumerate(methods):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["tokens"])
        dodge = 1 + 0.012 * (i - (len(methods) - 1) / 2)  # methods at equal tokens side by side, not on top
        ax.errorbar(
            [r["tokens"] * dodge for r in pts], [r["accuracy"] for r in pts],
            yerr=[r["ci95"] or 0.0 for r in pts], marker="o", markersize=4, capsize=3,
            linestyle=styles.get(method, "-"), color=plt.get_cmap("tab10").colors[i % 10], label=method,
        )  # fmt: skip
    ax.set_xscale("log", base=2)
    ticks = {}
    for r in rows:  # one tick per budget, at its mean tokens over methods
        ticks.setdefault(r["n"], []).append(r["tokens"])
    ax.set_xticks([sum(v) / len(v) for v in ticks.values()],
                  [f"{sum(v) / len(v):.0f}\n(N={n})" for n, v in ticks.items()])  # fmt: skip
    ax.minorticks_off()
    ax.set_xlabel("sampled tokens per problem")
    ax.set_ylabel("accuracy (bars: 95 % intervals over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_comparison(
    generator: str, prm, problems: list, cfg, out_dir: str | Path, png: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Search ``problems`` with every strategy of ``cfg.compare_strategies`` at each of
    ``compare_budgets`` for ``compare_seeds`` seeds (``cfg.seed``, ``cfg.seed + 1``, ...), one resumable
    results file per run in ``out_dir``; returns ``{rows, table, problems, ...}`` and draws ``png``."""
    from dataclasses import replace

    from prmkit.search import build_search_policy, search_problems

    if not problems:
        raise ValueError("search comparison: no problems")
    kind = problems[0].kind
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policies: dict[bool, Any] = {}  # whole solutions (best-of-N) or one step per call
    runs = []
    try:
        for strategy in cfg.compare_strategies:
            for n in cfg.compare_budgets:
                for s in range(cfg.compare_seeds):
                    run_cfg = replace(cfg, strategy=strategy, n=n, seed=cfg.seed + s)
                    whole = strategy == "best_of_n"
                    if whole not in policies:
                        policies[whole] = build_search_policy(str(generator), run_cfg, kind)
                    records = search_problems(
                        policies[whole], prm, problems, run_cfg, out_dir / f"{strategy}-n{n}-seed{s}.jsonl",
                        progress=progress,
                    )  # fmt: skip
                    runs.append({"strategy": strategy, "n": n, "seed": s, "select": cfg.select,
                                 "aggregation": cfg.aggregation, "records": records})  # fmt: skip
    finally:
        for p in policies.values():
            p.close()
    rows = compare_rows(runs, kind)
    out = {"rows": rows, "table": search_table(rows), "problems": len(problems), "seeds": cfg.compare_seeds,
           "beam_width": cfg.beam_width, "aggregation": cfg.aggregation, "select": cfg.select}  # fmt: skip
    if png is not None:
        plot_search(
            rows, png, title=f"PRM-guided search, {len(problems)} problems, {cfg.compare_seeds} seeds"
        )
        out["png"] = Path(png).name
    return out
