"""The command line: help on every command, located errors, and the demo smoke run (slow)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prmkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["world"], ["sft"], ["sample"], ["demo"]])
def test_help(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_bad_problems_file_names_file_line_field(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{"question": "q"}\n')
    result = runner.invoke(
        app,
        [
            "sample",
            "--model",
            "x",
            "--problems",
            str(bad),
            "--source",
            "jsonl",
            "--out",
            str(tmp_path / "s.jsonl"),
        ],
    )
    assert result.exit_code == 2
    assert "p.jsonl:2: missing field 'answer'" in result.output


def test_unknown_backend_and_field(tmp_path):
    result = runner.invoke(app, ["world", "--out", str(tmp_path), "--set", "world.n_trian=5"])
    assert result.exit_code == 2 and "n_trian" in result.output and "valid:" in result.output
    result = runner.invoke(
        app,
        ["sample", "--model", "x", "--problems", "p", "--out", "o", "--set", "sample.backend=vlm"],
    )
    assert result.exit_code == 2 and "valid: hf" in result.output


def test_world_command(tmp_path):
    result = runner.invoke(
        app,
        [
            "world",
            "--out",
            str(tmp_path),
            "--set",
            "world.n_train=50",
            "--set",
            "world.n_test=5",
            "--set",
            "world.n_ood=5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "world" / "train.jsonl").read_text().splitlines()) == 50


@pytest.mark.slow
def test_demo_quick_smoke_and_resume(tmp_path):
    run = tmp_path / "run"
    args = ["demo", "--recipe", str(ROOT / "recipes/world-quick.yaml"), "--run-dir", str(run)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    test = report["splits"]["test"]
    assert test["problems"] == 12 and set(test["pass_at_k"]) == {"1", "2", "4"}
    # the report's accuracies are those of the samples it wrote (graded against the gold answers)
    greedy = [
        json.loads(line)["correct"] for line in (run / "samples_test_greedy.jsonl").read_text().splitlines()
    ]
    assert len(greedy) == 12 and test["greedy_accuracy"] == pytest.approx(sum(greedy) / 12)
    sampled = [json.loads(line) for line in (run / "samples_test.jsonl").read_text().splitlines()]
    assert test["sampled_accuracy"] == pytest.approx(sum(s["correct"] for s in sampled) / len(sampled))
    solved = {s["problem_id"] for s in sampled if s["correct"]}
    assert test["pass_at_k"]["1"] == pytest.approx(test["sampled_accuracy"])  # 4 samples for every problem
    assert test["pass_at_k"]["4"] == pytest.approx(len(solved) / 12)  # k = n: solved at least once
    assert test["pass_at_k"]["1"] <= test["pass_at_k"]["2"] <= test["pass_at_k"]["4"]
    md = (run / "report.md").read_text()
    assert "| greedy (T=0) |" in md and "## Best-of-N, test split" in md and "## Annotation quality" in md
    assert "## Verifiers against the oracle" in md and "## Time per stage" in md
    assert {"PRM", "ORM", "value"} == set(test["verifier_quality"]) and report["annotation_audit"]
    assert max(r["n"] for r in test["bon"]) == 4 and max(r["n"] for r in report["splits"]["ood"]["bon"]) == 2
    assert "## PRM-guided search at equal compute" in md and {r["n"] for r in report["search"]["rows"]} == {2}
    assert len(list((run / "search").glob("*.jsonl"))) == 3 * 2  # strategies x seeds at the one budget
    for name in ("bon.png", "bon_ood.png", "annotation_quality.png", "search.png"):
        assert (run / name).stat().st_size > 0
    for name in ("generator", "prm", "orm", "value"):
        assert (run / name / "config.json").exists()
    n_samples = len((run / "samples_test.jsonl").read_text().splitlines())
    assert n_samples == 12 * 4
    # a rerun resumes: nothing is sampled twice, finished stages add no time
    timings = json.loads((run / "timings.json").read_text())
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len((run / "samples_test.jsonl").read_text().splitlines()) == n_samples
    again = json.loads((run / "timings.json").read_text())
    for stage in ("world", "sft", "sample_train", "train_prm", "train_orm", "train_value", "sample_test",
                  "sample_test_greedy", "score_test_prm", "search"):  # fmt: skip
        assert again[stage] == timings[stage]
    # a different recipe in the same run dir is refused
    result = runner.invoke(app, [*args, "--set", "sample.n=8"])
    assert result.exit_code == 2 and "different recipe" in result.output


def test_verifiers_start_from_the_run_directorys_generator(tmp_path):
    from prmkit.cli import _verifier_config

    (tmp_path / "generator").mkdir()
    (tmp_path / "generator" / "config.json").write_text("{}")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prm: {init: recipe-model}\n")
    assert _verifier_config("prm", None, None, None, str(tmp_path)).init == str(tmp_path / "generator")
    assert _verifier_config("orm", recipe, None, None, str(tmp_path)).init == str(tmp_path / "generator")
    assert _verifier_config("prm", recipe, None, None, str(tmp_path)).init == "recipe-model"
    cfg = _verifier_config(
        "value", None, ["value.init=recipe-model"], "Qwen/Qwen2.5-Math-1.5B", str(tmp_path)
    )
    assert cfg.init == "Qwen/Qwen2.5-Math-1.5B"
    assert _verifier_config("critique", None, None, None, str(tmp_path / "problems.jsonl")).init == ""
    (tmp_path / "verifier_lm").mkdir()  # the demo trained the verifiers' own LM: they start from it
    (tmp_path / "verifier_lm" / "config.json").write_text("{}")
    assert _verifier_config("orm", None, None, None, str(tmp_path)).init == str(tmp_path / "verifier_lm")
