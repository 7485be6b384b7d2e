"""Ray sharding on a local cluster of 2 CPUs: the same records as one process, one writer, a killed
worker's shard redone and never duplicated; the CLI's --ray-workers."""

import json
import os
import sys
from pathlib import Path

import pytest

from prmkit.distributed import RayConfig, split


def test_config_and_split():
    assert not RayConfig().enabled and RayConfig(workers=2).enabled
    with pytest.raises(ValueError, match="ray.workers"):
        RayConfig(workers=-2)
    with pytest.raises(ValueError, match="cpus_per_worker"):
        RayConfig(workers=1, cpus_per_worker=0)
    assert split(7, 3, 0) == [range(0, 3), range(3, 6), range(6, 7)]
    assert split(4, 2, 3) == [range(0, 3), range(3, 4)]


def _register_crashing_backend():
    """Runs in every Ray worker: a backend "crash-once" (hf underneath) whose process dies in its first
    ``generate`` while the marker file named by PRMKIT_TEST_CRASH exists (the marker is removed first)."""
    from prmkit.policy.base import register_policy
    from prmkit.policy.hf import HFPolicy

    class CrashOnce(HFPolicy):
        def generate(self, prompts, n=1, **kw):
            try:
                os.remove(os.environ.get("PRMKIT_TEST_CRASH", ""))  # one worker wins the marker
            except OSError:
                return super().generate(prompts, n, **kw)
            os._exit(1)

    register_policy("crash-once")(lambda model, **kw: CrashOnce(model, **kw))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'prmkit[ray]')")
    marker = tmp_path_factory.mktemp("crash") / "marker"
    here = Path(__file__).resolve().parent  # workers import the hook from this module, and prmkit
    env = {
        "env_vars": {
            "PRMKIT_TEST_CRASH": str(marker),
            "PYTHONPATH": os.pathsep.join(
                [str(here.parent / "src"), str(here), os.environ.get("PYTHONPATH", "")]
            ),
            "HF_HUB_OFFLINE": "1",
        },
        "worker_process_setup_hook": _register_crashing_backend,
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=env)
    yield marker
    ray.shutdown()


@pytest.fixture(scope="module")
def generator(world, tmp_path_factory):
    from prmkit.models import new_model

    problems, tok = world
    path = tmp_path_factory.mktemp("gen") / "generator"
    new_model(tok, "test", seed=1).save_pretrained(path)
    tok.save_pretrained(path)
    return problems[:6], path


def _texts(rows):
    return [[c.text for c in row] for row in rows]


@pytest.mark.slow  # a local Ray cluster takes seconds to start
def test_sharded_sampling_equals_one_process(cluster, generator):
    from prmkit.distributed import RayPolicy
    from prmkit.models import format_prompt
    from prmkit.policy import make_policy

    problems, path = generator
    prompts = [format_prompt(p.question) for p in problems]
    kw = dict(n=2, temperature=0.7, max_new_tokens=12, seed=5)
    alone = make_policy("hf", str(path), max_new_tokens=12).generate(prompts, **kw)
    one = RayPolicy("hf", str(path), RayConfig(workers=1), max_new_tokens=12)
    try:
        assert _texts(one.generate(prompts, **kw)) == _texts(alone)  # a single shard draws as one process
        assert one.source == {"path": str(path.resolve())}
    finally:
        one.close()
    fixed = {}
    for workers in (1, 2):  # a fixed shard size: the same records for any number of workers
        pol = RayPolicy("hf", str(path), RayConfig(workers=workers, shard=2), max_new_tokens=12)
        try:
            fixed[workers] = _texts(pol.generate(prompts, **kw))
        finally:
            pol.close()
    assert fixed[1] == fixed[2] and len(fixed[2]) == len(prompts)


@pytest.mark.slow  # a local Ray cluster takes seconds to start
def test_killed_worker_is_redone_never_duplicated(cluster, generator, tmp_path):
    from prmkit.distributed import RayPolicy
    from prmkit.sample import SampleConfig, sample_problems

    problems, path = generator
    cfg = SampleConfig(n=2, max_new_tokens=10, chunk=4)
    ray_cfg = RayConfig(workers=2, shard=1)
    pol = RayPolicy("hf", str(path), ray_cfg, max_new_tokens=10)
    try:
        want = sample_problems(pol, problems, cfg, tmp_path / "clean.jsonl", progress=False)
    finally:
        pol.close()
    cluster.write_text("crash")
    pol = RayPolicy("crash-once", str(path), ray_cfg, max_new_tokens=10)
    try:
        got = sample_problems(pol, problems, cfg, tmp_path / "crashed.jsonl", progress=False)
    finally:
        pol.close()
    assert not cluster.exists(), "no worker crashed"
    rows = [json.loads(line) for line in (tmp_path / "crashed.jsonl").read_text().splitlines()]
    keys = [(r["problem_id"], r["sample_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(problems) * 2
    assert [s.text for s in got] == [s.text for s in want]


@pytest.mark.slow  # a local Ray cluster takes seconds to start
def test_scoring_and_the_cli(cluster, generator, tmp_path):
    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.models import load_tokenizer, new_model
    from prmkit.reward import StepRewardModel, score_solutions
    from prmkit.sample import make_solution

    problems, path = generator
    tok = load_tokenizer(path)
    prm_dir = tmp_path / "prm"
    StepRewardModel(new_model(tok, "test", seed=2), tok).save_pretrained(prm_dir)
    sols = [
        make_solution(p, k, f"{k} + 1 = <<{k}+1={k + 1}>>{k + 1}\nSo\n#### {k + 1}")
        for p in problems
        for k in range(3)
    ]
    by_id = {p.id: p for p in problems}
    score_solutions(str(prm_dir), sols, by_id, tmp_path / "a.jsonl", progress=False)
    score_solutions(str(prm_dir), sols, by_id, tmp_path / "b.jsonl", progress=False, ray=RayConfig(workers=2))
    a = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [len(r["scores"]) for r in a] == [len(r["scores"]) for r in b]
    flat = [x for r in b for x in r["scores"]]
    assert [x for r in a for x in r["scores"]] == pytest.approx(flat, abs=1e-5)

    probs = tmp_path / "p.jsonl"
    probs.write_text(
        "".join(json.dumps({"question": p.question, "answer": p.answer}) + "\n" for p in problems)
    )
    args = ["sample", "--model", str(path), "--problems", str(probs), "--source", "jsonl"]
    sets = ["--set", "sample.n=2", "--set", "sample.max_new_tokens=8", "--set", "ray.shard=3"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "s.jsonl"), *sets, "--ray-workers", "2"])
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == len(problems) * 2
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "t.jsonl"), "--set", "ray.workers=-2"])
    assert r.exit_code == 2 and "ray.workers" in r.output


def test_without_ray_the_cli_says_what_to_install(monkeypatch, tmp_path, world, tiny_model_dir):
    from typer.testing import CliRunner

    from prmkit.cli import app

    problems, tok = world
    model = tiny_model_dir(tok)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    probs = tmp_path / "p.jsonl"
    probs.write_text(json.dumps({"question": problems[0].question, "answer": problems[0].answer}) + "\n")
    args = ["sample", "--model", str(model), "--problems", str(probs), "--source", "jsonl"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "s.jsonl"), "--ray-workers", "2"])
    assert r.exit_code == 2 and "pip install 'prmkit[ray]'" in r.output
    assert not (tmp_path / "s.jsonl").exists()
