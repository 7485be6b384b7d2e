"""How much ranking does best-of-64 need to beat majority voting? A fit over every verifier measured.

Reads ``benchmarks/data/verifier_bon64.csv``: one row per verifier measured in ``docs/benchmarks.md``
(the section it comes from is in the row), with its within-problem AUC and its best-of-64 accuracy
minus majority voting's over the same 64 samples per problem, on the test split of a world-large run
or on a dev pool. A least-squares line of that gap against the AUC, per split and over all rows, says
at which AUC best-of-64 draws level with majority voting and at which it leads by the issue's 5
points; a bootstrap over the rows (``--boot`` resamples) gives 95 % intervals for both.
Draws the points and the lines to ``--plot``. Prints one JSON line.

    python benchmarks/bon_vs_auc.py --plot docs/bon64_vs_auc.png
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGET = 5.0  # points above majority voting at N=64, the goal


def crossings(auc: np.ndarray, gap: np.ndarray) -> dict:
    """The line gap = slope * auc + icpt, and the AUCs where it crosses 0 and TARGET."""
    slope, icpt = np.polyfit(auc, gap, 1)
    resid = gap - (slope * auc + icpt)
    return {
        "n": int(len(auc)),
        "slope_points_per_auc": float(slope),
        "r": float(np.corrcoef(auc, gap)[0, 1]),
        "auc_at_0": float(-icpt / slope),
        "auc_at_target": float((TARGET - icpt) / slope),
        "resid_sd": float(resid.std(ddof=2)),
    }


def fit(auc: np.ndarray, gap: np.ndarray, boots: int, rng: np.random.Generator) -> dict:
    out = crossings(auc, gap)
    draws = []
    for _ in range(boots):
        idx = rng.integers(0, len(auc), len(auc))
        if np.ptp(auc[idx]) > 0:
            draws.append(crossings(auc[idx], gap[idx]))
    for key in ("auc_at_0", "auc_at_target"):
        vals = np.array([d[key] for d in draws])
        out[key + "_95"] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]
    return out


def rounded(obj):
    """``obj`` with every float in it to 3 decimals, for the printed line (the plot uses the full fit)."""
    if isinstance(obj, float):
        return round(obj, 3)
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v) for v in obj]
    return obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=Path, default=HERE / "data" / "verifier_bon64.csv")
    ap.add_argument(
        "--plot", type=Path, default=None, help="write the scatter and the fitted lines here (PNG)"
    )
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples of the rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with args.points.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows, start=2):
        for field in ("auc", "bon64_minus_majority"):
            try:
                row[field] = float(row[field])
            except (KeyError, TypeError, ValueError):
                raise SystemExit(
                    f"{args.points}:{i}: field {field!r} must be a number, got {row.get(field)!r}"
                ) from None
    rng = np.random.default_rng(args.seed)
    groups = {
        "all": rows,
        "test": [r for r in rows if r["split"] == "test"],
        "dev": [r for r in rows if r["split"] != "test"],
    }
    result = {"target_points": TARGET}
    for name, group in groups.items():
        auc = np.array([r["auc"] for r in group])
        gap = np.array([r["bon64_minus_majority"] for r in group])
        result[name] = fit(auc, gap, args.boot, rng)

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        xs = np.linspace(0.74, 0.93, 50)
        for name, color in (("test", "tab:red"), ("dev", "tab:blue")):
            group = groups[name]
            for kind, marker in (("PRM", "o"), ("ORM", "s")):
                pts = [r for r in group if r["verifier"].startswith(kind)]
                ax.scatter(
                    [r["auc"] for r in pts],
                    [r["bon64_minus_majority"] for r in pts],
                    c=color,
                    marker=marker,
                    alpha=0.75,
                    label=f"{kind}, {name}",
                )
            f = result[name]
            ax.plot(xs, f["slope_points_per_auc"] * (xs - f["auc_at_0"]), color=color, lw=1)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(TARGET, color="grey", lw=0.8, ls="--")
        ax.axvline(0.85, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("within-problem AUC")
        ax.set_ylabel("best-of-64 minus majority voting (points)")
        ax.set_title("Every verifier measured on the world (docs/benchmarks.md)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        result["plot"] = str(args.plot)
    print(json.dumps(rounded(result)))


if __name__ == "__main__":
    main()
