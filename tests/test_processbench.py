"""ProcessBench metric on hand-made files, bad input, the real files, and a tiny PRM end to end."""

import json

import pytest
from typer.testing import CliRunner

from prmkit.cli import app
from prmkit.evaluate.processbench import (
    evaluate_predictions,
    from_scores,
    load_processbench,
    pick_threshold,
    run_processbench,
)
from prmkit.io import DataError

SAMPLES = [
    {"id": "a", "problem": "q", "steps": ["s1", "s2", "s3"], "label": 1},
    {"id": "b", "problem": "q", "steps": ["s1", "s2"], "label": -1},
    {"id": "c", "problem": "q", "steps": ["s1", "s2"], "label": 0},
    {"id": "d", "problem": "q", "steps": ["s1"], "label": -1},
]


def test_metric_by_hand(tmp_path):
    # erroneous a, c: a right (1), c wrong (-1); correct b, d: b right (-1), d wrong (0)
    m = evaluate_predictions(SAMPLES, {"a": 1, "b": -1, "c": -1, "d": 0})
    assert m["error_acc"] == 0.5 and m["correct_acc"] == 0.5 and m["f1"] == 0.5
    m = evaluate_predictions(SAMPLES, {"a": 1, "b": -1, "c": 0, "d": -1})
    assert m["f1"] == 1.0
    with pytest.raises(ValueError, match="ids not in the benchmark, e.g. zz"):
        evaluate_predictions(SAMPLES, {"a": 1, "b": -1, "c": 0, "d": -1, "zz": 0})
    with pytest.raises(ValueError, match="no prediction for 1 samples, e.g. d"):
        evaluate_predictions(SAMPLES, {"a": 1, "b": -1, "c": 0})


def test_threshold_from_scores_and_picking():
    scores = {"a": [0.9, 0.3, 0.2], "b": [0.8, 0.7], "c": [0.4, 0.9], "d": [0.6]}
    assert from_scores(scores, 0.5) == {"a": 1, "b": -1, "c": 0, "d": -1}
    assert from_scores(scores, 0.75) == {"a": 1, "b": 1, "c": 0, "d": 0}
    assert 0.4 < pick_threshold(SAMPLES, scores) <= 0.6  # F1 = 1 on that range; ties go to 0.5's side


def test_bad_files_are_named(tmp_path):
    jsonl = tmp_path / "x.json"
    jsonl.write_text("\n".join(json.dumps(s) for s in SAMPLES))
    with pytest.raises(DataError, match="looks like JSONL"):
        load_processbench(jsonl)
    nolabel = tmp_path / "y.json"
    nolabel.write_text(json.dumps([{k: v for k, v in SAMPLES[0].items() if k != "label"}]))
    with pytest.raises(DataError, match="y.json: .*missing field 'label'"):
        load_processbench(nolabel)
    wrong = tmp_path / "z.json"
    wrong.write_text(json.dumps([{**SAMPLES[0], "label": 3}]))
    with pytest.raises(DataError, match="label 3 out of range"):
        load_processbench(wrong)


def test_real_files_and_a_predictions_file(shared_data, tmp_path):
    files = sorted((shared_data / "processbench").glob("*.json"))
    sizes = {f.stem: len(load_processbench(f)) for f in files}
    assert sizes == {"gsm8k": 400, "math": 1000, "olympiadbench": 1000, "omnimath": 1000}
    gsm = load_processbench(shared_data / "processbench/gsm8k.json")
    truth = {str(s["id"]): s["label"] for s in gsm}
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(json.dumps({"id": i, "first_error": y}) for i, y in truth.items()))
    res = run_processbench(
        [shared_data / "processbench/gsm8k.json"], predictions={i: y for i, y in truth.items()}
    )
    assert res["gsm8k"]["f1"] == 1.0 and res["average"]["f1"] == 1.0
    out = CliRunner().invoke(
        app,
        [
            "eval",
            "processbench",
            "--data",
            str(shared_data / "processbench/gsm8k.json"),
            "--predictions",
            str(preds),
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["gsm8k"]["samples"] == 400
    out = CliRunner().invoke(
        app,
        ["eval", "processbench", "--data", str(shared_data / "processbench"), "--predictions", str(preds)],
    )
    assert out.exit_code == 2 and "no prediction for" in out.output


def test_tiny_prm_on_real_processbench(shared_data, tmp_path, tiny_model_dir):
    from prmkit.models import train_tokenizer

    path = shared_data / "processbench/gsm8k.json"
    texts = [s["problem"] + " ".join(s["steps"]) for s in load_processbench(path)[:50]]
    tok = train_tokenizer(texts + ["+ -"], vocab_size=500)
    tiny_model_dir(tok, "m")
    args = ["eval", "processbench", "--data", str(path), "--model", str(tmp_path / "m"), "--limit", "40"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["gsm8k"]["samples"] == 40 and 0 <= res["average"]["f1"] <= 1
    out = CliRunner().invoke(app, [*args, "--pick-threshold"])
    assert out.exit_code == 0 and json.loads(out.stdout)["gsm8k"]["samples"] == 20
