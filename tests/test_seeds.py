"""``prmkit eval seeds``: whole demo runs averaged, every number with its t interval over runs."""

import json

import pytest
from typer.testing import CliRunner

from prmkit.cli import app
from prmkit.evaluate.seeds import seeds_report


def _report(run: str, acc: dict, auc: float, rl: float, extra_n: bool = False) -> dict:
    bon = [{"strategy": s, "n": n, "accuracy": a, "ci95": 0.05} for (s, n), a in acc.items()]
    if extra_n:
        bon.append({"strategy": "majority", "n": 8, "accuracy": 0.9, "ci95": 0.05})
    split = {
        "problems": 10, "samples_per_problem": 4, "temperature": 0.7, "greedy_accuracy": 0.5,
        "sampled_accuracy": 0.4, "pass_at_k": {"1": 0.4, "4": 0.8}, "bon": bon,
        "within_problem_auc": [{"verifier": "PRM", "aggregation": "min", "auc": auc, "ci95": 0.1}],
    }  # fmt: skip
    rl_greedy = {"SFT": {"seeds": [0.5], "mean": 0.5}, "process PPO": {"seeds": [rl, rl], "mean": rl}}
    search = [{"method": "best-of-N", "n": 4, "accuracy": acc[("majority", 4)], "ci95": 0.1, "tokens": 100.0}]
    return {
        "run_dir": run,
        "splits": {"test": split},
        "rl": {"greedy": rl_greedy},
        "search": {"rows": search},
    }


def test_means_and_t_intervals_over_runs_by_hand():
    a = _report("r0", {("majority", 4): 0.5, ("PRM best-of-N (min)", 4): 0.7}, auc=0.6, rl=0.55, extra_n=True)
    b = _report("r1", {("majority", 4): 0.7, ("PRM best-of-N (min)", 4): 0.9}, auc=0.8, rl=0.65)
    s = seeds_report([a, b])
    test = s["splits"]["test"]
    # two runs: sd = 0.1414, se = 0.1, t(1) = 12.706
    assert [(r["strategy"], r["n"]) for r in test["bon"]] == [("majority", 4), ("PRM best-of-N (min)", 4)]
    maj = test["bon"][0]
    assert maj["accuracy"] == pytest.approx(0.6) and maj["ci95"] == pytest.approx(1.2706)
    assert maj["runs"] == [0.5, 0.7]
    assert test["within_problem_auc"][0]["auc"] == pytest.approx(0.7)
    assert test["generator"]["greedy"]["ci95"] == 0 and list(test["generator"]) == [
        "greedy", "sampled", "pass 1", "pass 4"
    ]  # fmt: skip
    assert s["rl"]["process PPO"]["mean"] == pytest.approx(0.6)
    assert s["search"][0]["tokens"] == 100.0
    assert s["dropped"] == ["majority 8"]  # one run only: left out and listed
    # paired: PRM - majority is +0.2 in both runs, so its interval is 0 where the rows' are 1.27
    (d,) = [d for d in test["paired"] if d["b"] == "majority" and d["a"].startswith("PRM best")]
    assert d["n"] == 4 and d["difference"] == pytest.approx(0.2) and d["ci95"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least 2 runs"):
        seeds_report([a])


def test_cli_writes_the_report_and_names_a_missing_run(tmp_path):
    for i, acc in enumerate((0.5, 0.7, 0.6)):
        d = tmp_path / f"run{i}"
        d.mkdir()
        r = _report(str(d), {("majority", 4): acc, ("PRM best-of-N (min)", 4): acc + 0.2}, 0.7, 0.6)
        (d / "report.json").write_text(json.dumps(r))
    runs = [str(tmp_path / f"run{i}") for i in range(3)]
    res = CliRunner().invoke(app, ["eval", "seeds", *runs, "--out-dir", str(tmp_path / "seeds")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "seeds" / "seeds.md").read_text()
    assert "# prmkit demo over 3 runs" in md and "| PRM (min) | 0.700 ± 0.000 |" in md
    assert "| PRM best-of-N (min) − majority | 4 | +20.0% ± 0.0% |" in md
    assert (tmp_path / "seeds" / "bon_seeds.png").stat().st_size > 0
    res = CliRunner().invoke(app, ["eval", "seeds", runs[0], str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope: no report.json" in res.output
