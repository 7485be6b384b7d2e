"""Importing human (PRM800K) and Math-Shepherd step labels, then training a PRM on them."""

import pytest
from typer.testing import CliRunner

from prmkit.cli import app
from prmkit.data import load_prm800k_steps
from prmkit.io import read_jsonl
from prmkit.types import StepLabels


def test_prm800k_rows_and_neutral_rules(shared_data):
    path = shared_data / "prm800k/phase1_test.stepwise-critic.jsonl"
    problems, labels = load_prm800k_steps(path)
    assert (len(problems), len(labels)) == (101, 5449)  # 101 problems, one record per rated row
    first, second = labels[0], labels[1]
    assert first.steps[-1].startswith("Let's call the price of a pencil p") and first.hard == [1]
    assert second.hard == [None, 0] and second.meta["rating"] == -1  # the prefix is context only
    last = {r.meta["rating"]: r.hard[-1] for r in labels}
    assert last[0] == 1 and last[None] is None
    _, skip = load_prm800k_steps(path, neutral="skip")
    _, neg = load_prm800k_steps(path, neutral="negative")
    assert {r.hard[-1] for r in skip if r.meta["rating"] == 0} == {None}
    assert {r.hard[-1] for r in neg if r.meta["rating"] == 0} == {0}
    with pytest.raises(ValueError, match="valid: positive, negative, skip"):
        load_prm800k_steps(path, neutral="half")


def test_prm800k_parquet(shared_data):
    problems, labels = load_prm800k_steps(shared_data / "prm800k/phase1_train_plus.stepwise-critic.parquet")
    assert (len(problems), len(labels)) == (900, 51835)


def test_bad_rating_is_located(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"instruction": "q", "responses": [], "next_response": "a", "rating": 2}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: field 'rating'"):
        load_prm800k_steps(path)


def test_import_then_train_a_prm(shared_data, tmp_path, tiny_model_dir):
    from prmkit.models import train_tokenizer

    out = tmp_path / "ms"
    runner = CliRunner()
    res = runner.invoke(app, ["import", "math-shepherd", "--input", str(shared_data / "math-shepherd/samples_math-shepherd.jsonl"),
                              "--out-dir", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    labels = read_jsonl(out / "labels.jsonl", StepLabels)
    assert len(labels) == 7 and labels[0].hard == [1, 1, 1, 1, 0]
    tok = train_tokenizer([" ".join(r.steps) for r in labels] + ["+ -"], vocab_size=400)
    tiny_model_dir(tok, "init")
    res = runner.invoke(app, ["train", "prm", "--labels", str(out / "labels.jsonl"), "--problems", str(out / "problems.jsonl"),
                              "--source", "problems", "--init", str(tmp_path / "init"), "--out", str(tmp_path / "prm"),
                              "--set", "prm.max_steps=2", "--set", "prm.batch_size=4", "--set", "prm.eval_fraction=0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "prm" / "prmkit_reward.json").exists()
