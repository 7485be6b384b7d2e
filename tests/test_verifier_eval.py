import json
import random

import pytest
from typer.testing import CliRunner

from prmkit.cli import app
from prmkit.evaluate.verifier import first_below, first_error_f1, verifier_quality
from prmkit.io import write_jsonl
from prmkit.sample import make_solution
from prmkit.steps import join_steps
from prmkit.world import WorldConfig, corrupt, generate_split


def test_first_error_f1_by_hand():
    m = first_error_f1([1, 3, -1, -1, 2], [1, 2, -1, -1, -1])
    # erroneous: 2 samples, 1 right; correct: 3 samples, 2 predicted -1
    assert m["error_acc"] == 0.5 and m["correct_acc"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    with pytest.raises(ValueError, match="both erroneous and correct"):
        first_error_f1([0], [0])


def test_first_below():
    assert first_below([], 0.5) == -1 and first_below([0.5, 0.49], 0.5) == 1


def _pool():
    """Two reference solutions and two with an injected calculation error, with the injected index."""
    problems = generate_split(WorldConfig(n_train=20), "train")[:4]
    sols, firsts = [], []
    for i, p in enumerate(problems):
        steps, first = (
            (p.solution.split("\n"), -1) if i % 2 == 0 else corrupt(p, "calculation", random.Random(i))
        )
        sols.append(make_solution(p, 0, join_steps(steps)))
        firsts.append(first)
    return problems, sols, firsts


def test_verifier_quality_by_hand(tmp_path):
    problems, sols, firsts = _pool()
    by_id = {p.id: p for p in problems}
    # a perfect verifier: 1 before the injected error, 0 from it on
    perfect = {}
    for s, first in zip(sols, firsts, strict=True):
        end = len(s.steps) if first < 0 else first
        perfect[(s.problem_id, 0)] = [1.0 if i < end else 0.0 for i in range(len(s.steps))]
    m = verifier_quality(perfect, sols, by_id)
    assert m["step_accuracy"] == 1.0 and m["f1"] == 1.0 and m["final_judgement_accuracy"] == 1.0
    # a verifier that calls every step good: all correct samples right, all erroneous ones wrong
    m = verifier_quality({k: [0.9] * len(v) for k, v in perfect.items()}, sols, by_id)
    assert m["correct_acc"] == 1.0 and m["error_acc"] == 0.0 and m["f1"] == 0.0
    assert m["final_judgement_accuracy"] == 0.5
    write_jsonl(tmp_path / "p.jsonl", problems)
    write_jsonl(tmp_path / "s.jsonl", sols)
    write_jsonl(
        tmp_path / "scores.jsonl",
        [{"problem_id": k[0], "sample_id": k[1], "scores": v} for k, v in perfect.items()],
    )
    args = [
        "eval",
        "verifier",
        "--scores",
        str(tmp_path / "scores.jsonl"),
        "--samples",
        str(tmp_path / "s.jsonl"),
    ]
    result = CliRunner().invoke(app, [*args, "--problems", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["f1"] == 1.0
    (tmp_path / "scores.jsonl").write_text('{"problem_id": "x", "sample_id": 0}\n')
    result = CliRunner().invoke(app, [*args, "--problems", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 2 and "scores.jsonl:1: Scores: missing field 'scores'" in result.output


def test_data_quantity_curve_trains_nested_subsets(tmp_path, tiny_model_dir):
    from prmkit.evaluate.verifier import data_quantity_curve
    from prmkit.models import train_tokenizer
    from prmkit.reward.train import RewardConfig
    from prmkit.types import StepLabels

    problems, sols, firsts = _pool()
    labels = [
        StepLabels(s.problem_id, 0, s.steps, h, [float(x) for x in h], final_correct=bool(s.correct))
        for s, f in zip(sols, firsts, strict=True)
        for h in [[int(f < 0 or i < f) for i in range(len(s.steps))]]
    ]
    tok = train_tokenizer([p.question + "\n" + p.solution for p in problems] + ["+ -"], vocab_size=320)
    tiny_model_dir(tok, "init")
    by_id = {p.id: p for p in problems}
    rows = data_quantity_curve(
        labels, by_id, sols, by_id, str(tmp_path / "init"), tmp_path / "curve", fractions=(0.5, 1.0),
        configs={k: RewardConfig(kind=k, max_steps=1, batch_size=2, eval_fraction=0.0) for k in ("prm", "orm")},
    )  # fmt: skip
    assert [(r["kind"], r["fraction"], r["labelled_solutions"]) for r in rows] == [
        ("prm", 0.5, 2), ("orm", 0.5, 2), ("prm", 1.0, 4), ("orm", 1.0, 4)
    ]  # fmt: skip
    assert all(0 <= r["best_of_n"] <= 1 and 0 <= r["step_accuracy"] <= 1 for r in rows)
    assert (tmp_path / "curve" / "orm-0.5" / "prmkit_reward.json").exists()


def test_curve_table_by_hand():
    from prmkit.evaluate.report import curve_table

    row = {"kind": "prm", "fraction": 0.5, "labelled_solutions": 800, "step_accuracy": 0.8125, "f1": 0.5,
           "final_judgement_accuracy": 0.75, "best_of_n": None}  # fmt: skip
    lines = curve_table([row]).splitlines()
    assert lines[0].startswith("| kind | fraction | labelled |") and len(lines) == 3
    assert lines[2] == "| prm | 0.5 | 800 | 81.2% | 0.500 | 75.0% | – |"
