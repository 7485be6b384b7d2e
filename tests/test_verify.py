"""Aggregation, answer grouping, selection strategies and best-of-N curves, on hand-computed values."""

import math

import pytest

from prmkit.evaluate.bon import bon_curves, n_values, plot_bon
from prmkit.types import Solution
from prmkit.verify import Candidate, aggregate, group_answers, select


def C(answer, correct, *scores):
    return Candidate(answer, correct, list(scores))


def test_aggregations_by_hand():
    s = [0.9, 0.5, 0.8]
    assert aggregate(s, "min") == 0.5 and aggregate(s, "last") == 0.8
    assert aggregate(s, "prod") == pytest.approx(0.36) and aggregate(s, "mean") == pytest.approx(2.2 / 3)
    assert aggregate([0.7, math.nan], "prod") == 0.0
    with pytest.raises(ValueError, match="valid: min, prod, last, mean"):
        aggregate(s, "max")


def test_grouping_uses_the_grader():
    assert group_answers(["0.5", "1/2", "$0.50", "2"], "gsm8k") == [0, 0, 0, 1]
    assert group_answers(["\\frac{1}{2}", "0.5", "\\dfrac12", "x"], "math") == [0, 0, 0, 1]


def test_strategies_by_hand():
    cands = [
        C("7", False, 0.9, 0.99),  # min 0.9, last 0.99
        C("12", True, 0.6, 0.5),  # min 0.5, last 0.5
        C("12.0", True, 0.7, 0.46),  # min 0.46, last 0.46
        C("3", False, 0.2),
    ]
    assert select(cands, "majority", "gsm8k")  # 12 twice
    assert not select(cands, "best_of_n", "gsm8k", "min")  # 7 scores 0.9
    assert select(cands, "weighted_sc", "gsm8k", "min")  # 12: 0.5 + 0.46 = 0.96 > 7: 0.9
    assert not select(cands, "weighted_sc", "gsm8k", "last")  # 12: 0.96 < 7: 0.99
    assert select(cands, "top_k", "gsm8k", "min", k=3)  # top 3: 7, 12, 12.0 -> 12 by vote
    assert not select(cands, "top_k", "gsm8k", "min", k=1)
    assert select(cands, "pass", "gsm8k")
    assert not select([C(None, False), C(None, False), C("5", False)], "majority", "gsm8k")
    assert select([C(None, False), C(None, False), C("5", True)], "majority", "gsm8k")  # no answer never wins
    with pytest.raises(ValueError, match="empty pool"):
        select([], "majority", "gsm8k")
    with pytest.raises(ValueError, match="valid: majority"):
        select(cands, "oracle", "gsm8k")


def test_bon_curves_and_plot(tmp_path):
    # problem a: 2 of 4 right, the verifier knows which; problem b: none right
    pools = {
        "a": [C("1", True, 0.9), C("2", False, 0.1), C("1", True, 0.8), C("3", False, 0.2)],
        "b": [C("5", False, 0.5)] * 4,
    }
    rows = bon_curves(pools, "gsm8k", {"verifier": ("best_of_n", "min"), "pass": ("pass", "min")}, groups=3)
    by = {(r["strategy"], r["n"]): r for r in rows}
    assert n_values(4) == [1, 2, 4] and set(by) == {(s, n) for s in ("verifier", "pass") for n in (1, 2, 4)}
    assert by[("verifier", 4)]["accuracy"] == 0.5 and by[("pass", 4)]["accuracy"] == 0.5
    assert by[("verifier", 4)]["ci95"] == pytest.approx(1.96 * math.sqrt(0.5 / 2))
    assert by[("verifier", 2)]["accuracy"] == by[("pass", 2)]["accuracy"]  # a perfect verifier = pass@N
    plot_bon(rows, tmp_path / "bon.png")
    assert (tmp_path / "bon.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="empty pool"):
        bon_curves({"a": []}, "gsm8k", {"v": ("best_of_n", "min")})


def test_eval_bon_cli(tmp_path):
    import json

    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.io import write_jsonl
    from prmkit.types import Problem, Solution

    problems = [Problem(id=f"p{i}", question="q", answer="1") for i in range(3)]
    sols = [
        Solution(problem_id=f"p{i}", sample_id=j, text="", steps=["x"], answer=str(j % 2), correct=j % 2 == 1)
        for i in range(3)
        for j in range(4)
    ]
    scores = [
        {"problem_id": s.problem_id, "sample_id": s.sample_id, "scores": [0.9 if s.correct else 0.1]}
        for s in sols
    ]
    write_jsonl(tmp_path / "p.jsonl", problems)
    write_jsonl(tmp_path / "s.jsonl", sols)
    write_jsonl(tmp_path / "sc.jsonl", scores)
    args = ["eval", "bon", "--samples", str(tmp_path / "s.jsonl"), "--problems", str(tmp_path / "p.jsonl")]
    args += ["--source", "problems", "--out-dir", str(tmp_path), "--scores", f"good={tmp_path / 'sc.jsonl'}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {(r["strategy"], r["n"]): r["accuracy"] for r in json.loads((tmp_path / "bon.json").read_text())}
    assert rows[("good best-of-N (min)", 4)] == 1.0 and rows[("pass@N", 4)] == 1.0
    assert (tmp_path / "bon.png").exists() and "| majority |" in (tmp_path / "bon.md").read_text()
    # every right sample outscores every wrong one of its problem: AUC 1 over the 3 problems' 12 pairs
    (auc,) = json.loads((tmp_path / "auc.json").read_text())
    assert auc == {
        "verifier": "good",
        "aggregation": "min",
        "auc": 1.0,
        "ci95": 0.0,
        "problems": 3,
        "pairs": 12,
    }
    assert "| good (min) | 1.000 ± 0.000 | 3 of 3 |" in result.output
    result = CliRunner().invoke(app, [*args[:-1], "bad"])
    assert result.exit_code == 2 and "expected NAME=PATH" in result.output


def test_within_problem_auc_by_hand():
    from prmkit.evaluate.bon import auc_rows, within_problem_auc

    # "a": 0.9 beats 0.5 (1), 0.5 ties 0.5 (1/2); "b": only right samples, skipped
    r = within_problem_auc({"a": [(0.9, True), (0.5, True), (0.5, False)], "b": [(0.1, True), (0.2, True)]})
    assert r == {"auc": 0.75, "ci95": None, "problems": 1, "pairs": 2}
    assert within_problem_auc({"b": [(0.1, False)]}) == {"auc": None, "ci95": None, "problems": 0, "pairs": 0}
    # identical problems: no spread over problems, a zero-width interval
    same = [(0.9, True), (0.1, False)]
    assert within_problem_auc({"a": same, "b": same}) == {"auc": 1.0, "ci95": 0.0, "problems": 2, "pairs": 2}
    sols = [
        Solution("p", 0, "a", ["a"], "1", True),
        Solution("p", 1, "", [], None, False),  # step-less: below every solution with steps
        Solution("p", 2, "b", ["b", "c"], "2", False),
        Solution("q", 0, "a", ["a"], "1", True),
    ]
    scores = {("p", 0): [0.0], ("p", 1): [], ("p", 2): [0.9, 0.2], ("q", 0): [0.5]}
    rows = auc_rows(sols, {"PRM": scores}, {"PRM": ["min", "last"]})
    # min: 0.0 vs empty (win), 0.0 vs 0.2 (loss); last: 0.0 vs empty (win), 0.0 vs 0.2 (loss)
    assert [(r["aggregation"], r["auc"], r["problems"], r["pairs"]) for r in rows] == [
        ("min", 0.5, 1, 2),
        ("last", 0.5, 1, 2),
    ]
    scores[("p", 2)] = [0.9, 0.0]
    assert auc_rows(sols, {"PRM": scores}, {"PRM": ["min"]})[0]["auc"] == 0.75  # a tie counts half
    del scores[("q", 0)]
    with pytest.raises(ValueError, match="PRM has no scores for q/0"):
        auc_rows(sols, {"PRM": scores}, {"PRM": ["min"]})
