"""Bad input on the command line: typos in stages and fields, missing paths, outputs of another
configuration. Each is one line naming what is wrong, exit status 2, and nothing written."""

import pytest
from typer.testing import CliRunner

from prmkit.cli import app

runner = CliRunner()

# every command that takes --recipe / --set, with its required options (the paths need not exist:
# the recipe is checked before anything is read)
COMMANDS = {
    "world": ["world", "--out", "{o}"],
    "sft": ["sft", "--problems", "p", "--out", "{o}"],
    "sample": ["sample", "--model", "m", "--problems", "p", "--out", "{o}"],
    "annotate": ["annotate", "--model", "m", "--samples", "s", "--problems", "p", "--out", "{o}"],
    "prm": ["train", "prm", "--labels", "l", "--problems", "p", "--out", "{o}"],
    "orm": ["train", "orm", "--labels", "l", "--problems", "p", "--out", "{o}"],
    "value": ["train", "value", "--samples", "s", "--problems", "p", "--out", "{o}"],
    "critique": ["train", "critique", "--samples", "s", "--problems", "p", "--out", "{o}"],
    "verifier-curve": ["eval", "verifier-curve", "--labels", "l", "--problems", "p", "--samples", "s",
                       "--init", "i", "--out-dir", "{o}"],
    "demo": ["demo", "--run-dir", "{o}"],
    "ppo": ["rl", "ppo", "--policy", "m", "--problems", "p", "--out", "{o}"],
    "rft": ["rl", "rft", "--generator", "m", "--problems", "p", "--out", "{o}"],
}  # fmt: skip
# the stage each command reads: the demo recipe's name for it
READS = {"verifier-curve": "prm", "demo": "sample"}


def _run(name: str, tmp_path, *extra: str):
    out = tmp_path / "out"
    args = [a.replace("{o}", str(out)) for a in COMMANDS[name]]
    result = runner.invoke(app, [*args, *extra])
    return result, out


@pytest.mark.parametrize("name", COMMANDS)
def test_a_typo_in_a_stage_name_is_refused_everywhere(name, tmp_path):
    result, out = _run(name, tmp_path, "--set", "sampel.n=3")
    assert result.exit_code == 2, result.output
    assert (
        "unknown stage 'sampel'; valid: data, world, sft, verifier_lm, sample, annotate, prm, orm"
        in result.output
    )
    assert not out.exists()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sample: {n: 2}\nanotate: {n: 4}\n")
    result, out = _run(name, tmp_path, "--recipe", str(recipe))
    assert result.exit_code == 2 and f"{recipe}: unknown stage 'anotate'" in result.output
    assert not out.exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_reads_its_own_stage_and_checks_its_fields(name, tmp_path):
    stage = READS.get(name, name)
    result, out = _run(name, tmp_path, "--set", f"{stage}.no_such_field=1")
    assert result.exit_code == 2, result.output
    assert f"{stage}: unknown field(s) no_such_field; valid:" in result.output
    assert not out.exists()


def test_a_set_for_a_stage_the_command_does_not_read_is_said(tmp_path):
    result, _ = _run("world", tmp_path, "--set", "sample.n=3", "--set", "world.n_train=5",
                     "--set", "world.n_test=2", "--set", "world.n_ood=2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--set for stage sample is not read by this command (it reads world)" in result.output


def test_train_prm_reads_the_recipes_prm_stage(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prm: {label: fuzzy}\norm: {epochs: 1}\n")
    result, _ = _run("prm", tmp_path, "--recipe", str(recipe))
    assert result.exit_code == 2 and "prm.label: unknown 'fuzzy'" in result.output
    result, _ = _run("orm", tmp_path, "--set", "orm.kind=prm")
    assert result.exit_code == 2 and "the orm stage trains a orm, not a prm" in result.output


@pytest.mark.parametrize("model", ["/nonexistent", "./no/such/generator", "runs/none/generator"])
def test_a_missing_model_directory_is_named(model, tmp_path, world):
    from prmkit.io import write_jsonl

    problems, _ = world
    write_jsonl(tmp_path / "p.jsonl", problems[:2])
    out = tmp_path / "s.jsonl"
    args = ["sample", "--model", model, "--problems", str(tmp_path / "p.jsonl"), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {model}: no such model directory"
    assert not out.exists()


def test_a_missing_model_in_a_local_folder_is_not_taken_for_a_hub_id(tmp_path, monkeypatch, world):
    """``owner/name`` is a hub id, unless ``owner`` is a folder here: then it is refused at once (offline,
    the hub would be tried five times first)."""
    from prmkit.io import write_jsonl

    problems, _ = world
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big").mkdir()
    write_jsonl(tmp_path / "p.jsonl", problems[:2])
    args = ["sample", "--model", "big/prm", "--problems", "p.jsonl", "--out", "s.jsonl"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == "error: big/prm: no such model directory (big/ is a folder here, so not a hub id)"
    )
    assert not (tmp_path / "s.jsonl").exists()


def test_a_directory_without_a_model_is_named(tmp_path, world):
    from prmkit.io import write_jsonl
    from prmkit.sample import make_solution

    problems, _ = world
    write_jsonl(tmp_path / "p.jsonl", problems[:1])
    write_jsonl(tmp_path / "s.jsonl", [make_solution(problems[0], 0, problems[0].solution)])
    (tmp_path / "empty").mkdir()
    args = ["score", "--model", str(tmp_path / "empty"), "--samples", str(tmp_path / "s.jsonl"),
            "--problems", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "sc.jsonl")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "not a model directory (no config.json)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "p.jsonl", "s.jsonl"]  # nothing written


def test_a_run_directory_without_the_stages_inputs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    result = runner.invoke(
        app, ["sample", "--model", "m", "--problems", str(run), "--out", str(run / "s.jsonl")]
    )
    assert result.exit_code == 2 and str(run) in result.output and "world" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(
        app, ["score", "--model", "m", "--samples", str(run / "samples.jsonl"), "--problems", str(run),
              "--out", str(run / "sc.jsonl")]
    )  # fmt: skip
    assert result.exit_code == 2 and str(run) in result.output
    assert sorted(p.name for p in run.iterdir()) == []


def test_an_output_of_another_configuration_is_refused(tmp_path, world, tiny_model_dir):
    from prmkit.io import write_jsonl

    problems, tok = world
    model = tiny_model_dir(tok)
    write_jsonl(tmp_path / "p.jsonl", problems[:2])
    out = tmp_path / "s.jsonl"
    base = ["sample", "--model", str(model), "--problems", str(tmp_path / "p.jsonl"), "--source", "jsonl",
            "--out", str(out), "--set", "sample.max_new_tokens=8"]  # fmt: skip
    assert runner.invoke(app, [*base, "--set", "sample.n=2"]).exit_code == 0
    before = out.read_bytes()
    result = runner.invoke(app, [*base, "--set", "sample.n=3"])
    assert result.exit_code == 2
    assert f"{out} was written with another configuration (n: 2, now 3)" in result.output
    assert out.read_bytes() == before
    assert runner.invoke(app, [*base, "--set", "sample.n=2", "--set", "sample.batch_size=7"]).exit_code == 0
    assert out.read_bytes() == before  # a speed knob is not another configuration; nothing left to do
