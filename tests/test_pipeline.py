"""The demo pipeline: recipes, the report's verdicts, and the real-GSM8K path with tiny models."""

import json
from pathlib import Path

import pytest

from prmkit.config import load_recipe
from prmkit.evaluate.report import compare, hypothesis, render_report, sc_vs_alone
from prmkit.pipeline import DemoRecipe, run_demo

ROOT = Path(__file__).resolve().parents[1]


def _rows(table: dict[str, list[tuple[float, float]]]) -> list[dict]:
    return [
        {"strategy": s, "n": 2**i, "accuracy": a, "ci95": c}
        for s, pts in table.items()
        for i, (a, c) in enumerate(pts)
    ]


def test_hypothesis_verdicts_by_hand():
    rows = _rows(
        {
            "majority": [(0.5, 0.05), (0.55, 0.05), (0.58, 0.05)],
            "PRM best-of-N (min)": [(0.5, 0.05), (0.60, 0.05), (0.75, 0.04)],
            "ORM best-of-N (last)": [(0.5, 0.05), (0.58, 0.05), (0.66, 0.04)],
            "PRM weighted SC (min)": [(0.5, 0.05), (0.6, 0.05), (0.71, 0.05)],
        }
    )
    lines = hypothesis(rows)
    assert lines[0] == "At N=4: PRM 75.0% ± 4.0%, ORM 66.0% ± 4.0%, majority 58.0% ± 5.0%."
    # 0.75 - 0.66 > 0.04, 0.66 - 0.58 > 0.05, so every pair is beyond the intervals
    assert "**holds**" in lines[1] and "PRM beats ORM; ORM beats majority; PRM beats majority" in lines[1]
    assert lines[2] == "PRM minus majority voting: +5.0% at N=2, +17.0% at N=4 (the gap grows)."
    assert sc_vs_alone(rows).endswith(
        "71.0% against PRM alone 75.0% at N=4: voting makes no difference beyond the intervals."
    )
    rows = [
        r if not (r["strategy"].startswith("ORM") and r["n"] == 4) else {**r, "accuracy": 0.6} for r in rows
    ]
    assert "**does not hold**" in hypothesis(rows)[1] and "ORM ties majority" in hypothesis(rows)[1]
    assert compare({"accuracy": 0.5, "ci95": 0.01}, {"accuracy": 0.6, "ci95": 0.02}) == "loses"
    assert hypothesis(_rows({"majority": [(0.5, 0.1)]})) == []


def test_recipes_parse_and_stage_kinds_are_checked():
    for path in sorted(ROOT.glob("recipes/*.yaml")):
        recipe = DemoRecipe.from_dict(load_recipe(path))
        assert DemoRecipe.from_dict(recipe.to_dict()) == recipe  # what the run directory keeps reads back
    with pytest.raises(ValueError, match="the orm stage trains a orm, not a prm"):
        DemoRecipe.from_dict({"orm": {"kind": "prm"}})
    with pytest.raises(ValueError, match="demo.verifiers: unknown critic"):
        DemoRecipe.from_dict({"demo": {"verifiers": ["prm", "critic"]}})
    with pytest.raises(ValueError, match="source gsm8k needs data.train and data.test"):
        DemoRecipe.from_dict({"data": {"source": "gsm8k"}})
    with pytest.raises(ValueError, match="rl.methods need the verifier.*prm"):
        DemoRecipe.from_dict({"rl": {"methods": ["process"]}, "demo": {"verifiers": ["orm"]}})
    with pytest.raises(ValueError, match="ppo.reward is set per run by rl.methods"):
        DemoRecipe.from_dict({"ppo": {"reward": "process"}})
    with pytest.raises(ValueError, match="grpo.reward_model is set per run by rl.methods"):
        DemoRecipe.from_dict({"grpo": {"reward_model": "runs/w/prm"}})
    with pytest.raises(ValueError, match="rl.methods need the verifier.*orm"):
        DemoRecipe.from_dict({"rl": {"methods": ["grpo-outcome"]}, "demo": {"verifiers": ["prm"]}})


def test_a_run_dir_takes_appended_rl_methods_but_no_other_change(tmp_path):
    import yaml

    from prmkit.pipeline import _claim_run_dir

    run = tmp_path / "run"
    _claim_run_dir(run, DemoRecipe.from_dict({"rl": {"methods": ["rft", "outcome"]}}))
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    del saved["grpo"]  # a run directory made before the grpo stage existed
    (run / "recipe.yaml").write_text(yaml.safe_dump(saved))
    grown = DemoRecipe.from_dict({"rl": {"methods": ["rft", "outcome", "grpo-outcome"]}})
    _claim_run_dir(run, grown)  # new runs after the finished ones: accepted, and pinned
    assert DemoRecipe.from_dict(yaml.safe_load((run / "recipe.yaml").read_text())) == grown
    for changed in (
        {"rl": {"methods": ["outcome", "rft", "grpo-outcome"]}},  # reordered
        {"rl": {"methods": ["rft"]}},  # dropped
        {"rl": {"methods": ["rft", "outcome", "grpo-outcome"], "seeds": 2}},
        {"rl": {"methods": ["rft", "outcome", "grpo-outcome"]}, "grpo": {"lr": 1e-4}},
    ):
        with pytest.raises(ValueError, match="different recipe"):
            _claim_run_dir(run, DemoRecipe.from_dict(changed))


def test_gsm8k_recipe_runs_on_real_problems_with_tiny_models(shared_data, tmp_path):
    """recipes/gsm8k.yaml with its models swapped for tiny ones: the real-data path end to end."""
    gsm = shared_data / "gsm8k"
    tiny = ["max_steps=2", "init=''", "bf16=false", "batch_size=4", "max_length=512", "save_steps=1"]
    sets = [
        f"data.train={gsm / 'train.jsonl'}", f"data.test={gsm / 'test.jsonl'}", "data.train_limit=40",
        "sft.model=scratch:test", "sft.max_steps=3", "sft.bf16=false", "sft.grad_accum=1", "sft.batch_size=8",
        "sample.n=2", "sample.max_new_tokens=24", "sample.batch_size=16",
        "annotate.n=1", "annotate.max_new_tokens=16", "annotate.batch_size=16",
        *[f"{stage}.{t}" for stage in ("prm", "orm", "value") for t in tiny],
        "demo.test_problems=3", "demo.pool_problems=4", "demo.pool_samples=2", "demo.label_solutions=4",
        "demo.score_batch_size=8",
        "rl.methods=[rft, outcome, process, grpo-process]", "rl.seeds=2", "rl.bon_samples=2",
        "ppo.iterations=1", "ppo.problems_per_iteration=2", "ppo.samples_per_problem=2", "ppo.minibatch_size=4",
        "ppo.max_new_tokens=16", "ppo.eval_problems=2", "ppo.eval_every=1",
        "grpo.iterations=1", "grpo.problems_per_iteration=2", "grpo.samples_per_problem=2",
        "grpo.minibatch_size=4", "grpo.max_new_tokens=16", "grpo.eval_problems=2",
        "rft.k=2", "rft.max_problems=4", "rft.max_new_tokens=16", "rft.max_steps=1", "rft.train_batch_size=4",
        "search.compare_budgets=[2]", "search.beam_width=2", "search.compare_seeds=2", "search.max_new_tokens=24",
        "search.step_tokens=12", "search.max_steps=3",
    ]  # fmt: skip
    recipe = load_recipe(ROOT / "recipes/gsm8k.yaml", sets)
    report = run_demo(recipe, tmp_path / "run")
    test = report["splits"]["test"]
    assert test["problems"] == 3 and test["samples_per_problem"] == 2 and set(report["splits"]) == {"test"}
    strategies = {r["strategy"] for r in test["bon"]}
    assert {
        "majority",
        "pass@N",
        "PRM best-of-N (min)",
        "ORM best-of-N (last)",
        "value best-of-N (last)",
    } <= strategies
    assert "verifier_quality" not in test and report["annotation_audit"] is None  # no oracle on real data
    assert report["verifiers"]["labels"]["solutions"] == 4
    scores = (tmp_path / "run" / "scores_test_prm.jsonl").read_text().splitlines()
    assert len(scores) == 6 and json.loads(scores[0])["problem_id"].startswith("gsm8k-test-")
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Best-of-N, test split" in md and "![best-of-N on the test split](bon.png)" in md
    assert (tmp_path / "run" / "bon.png").stat().st_size > 0
    assert md == render_report(report)
    # the RL section: every method for every seed, greedy accuracy on the same test problems
    greedy = report["rl"]["greedy"]
    assert list(greedy) == ["SFT", "RFT", "outcome PPO", "process PPO", "process GRPO"]
    assert [len(v["seeds"]) for v in greedy.values()] == [1, 2, 2, 2, 2]
    assert all(v["ci95"] >= 0 for v in greedy.values())
    assert report["rl"]["verification"]["samples_per_problem"] == 2
    assert "## Reinforcement learning" in md and "| process PPO |" in md and "| process GRPO |" in md
    for name in ("rft-seed1", "outcome-seed0", "process-seed1", "grpo-process-seed1"):
        assert (tmp_path / "run" / "rl" / name / "config.json").exists()
    # PPO's held-out curve used the test split's other problems, not the reported ones
    metrics = (tmp_path / "run" / "rl" / "process-seed0" / "metrics.jsonl").read_text().splitlines()
    assert metrics and "greedy_accuracy" in metrics[0]
    # PRM-guided search on GSM8K-format problems: every method at the one budget, 2 seeds, in the report
    search = report["search"]
    assert [(r["method"], r["n"], len(r["seeds"])) for r in search["rows"]] == [
        ("best-of-N", 2, 2), ("weighted SC", 2, 2), ("beam search", 2, 2), ("DVTS", 2, 2)
    ]  # fmt: skip
    assert (
        "## PRM-guided search at equal compute" in md
        and "![accuracy against sampled tokens](search.png)" in md
    )
    assert (tmp_path / "run" / "search.png").stat().st_size > 0


def test_the_default_demo_reports_the_likelihood_baseline():
    from prmkit.pipeline import REPORT_AGGREGATIONS, DemoConfig

    assert DemoConfig().verifiers == ("prm", "orm", "value", "likelihood")
    recipe = DemoRecipe.from_dict({"demo": {"verifiers": ["prm", "likelihood"]}})
    assert recipe.demo.verifiers == ("prm", "likelihood") and REPORT_AGGREGATIONS["likelihood"] == ["last"]
    assert REPORT_AGGREGATIONS["PRM"] == ["min", "prod", "last"]


def _split(problems: int, auc: list[dict] | None) -> dict:
    r = {"problems": problems, "samples_per_problem": 4, "temperature": 0.7, "greedy_accuracy": 0.5,
         "sampled_accuracy": 0.4, "pass_at_k": {"1": 0.4, "4": 0.7}}  # fmt: skip
    return r | ({"within_problem_auc": auc} if auc is not None else {})


def test_report_auc_table_by_hand():
    def row(v, how, auc, ci, n):
        return {"verifier": v, "aggregation": how, "auc": auc, "ci95": ci, "problems": n, "pairs": 3 * n}

    report = {
        "run_dir": "runs/x",
        "recipe": {"demo": {"groups": 3}},
        "timings": {"sft": 1.0},
        "splits": {
            "test": _split(
                200, [row("PRM", "min", 0.6123, 0.0412, 90), row("likelihood", "last", 0.7, None, 1)]
            ),
            "ood": _split(100, [row("PRM", "min", None, None, 0)]),
        },
    }
    md = render_report(report)
    assert md == render_report(report)  # deterministic: no resampling
    lines = md.splitlines()
    head = lines.index("## Ranking a problem's own samples")
    table = lines[lines.index("| verifier | test AUC | test problems | ood AUC | ood problems |", head) :]
    assert table[2] == "| PRM (min) | 0.612 ± 0.041 | 90 of 200 | – | 0 of 100 |"
    assert table[3] == "| likelihood (last) | 0.700 | 1 of 200 | – | – |"
    # a report without the AUC (or from before it existed) renders as it did: no such section
    for r in report["splits"].values():
        del r["within_problem_auc"]
    assert "Ranking a problem" not in render_report(report)


def test_a_run_directory_from_before_a_new_stage_resumes(tmp_path):
    """A stage added to prmkit since a run began (as ``search``) is not a recipe change; a changed one is."""
    import yaml

    from prmkit.pipeline import _claim_run_dir

    recipe = DemoRecipe.from_dict({})
    saved = recipe.to_dict()
    del saved["search"]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    _claim_run_dir(tmp_path, recipe)
    assert "search" in yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    with pytest.raises(ValueError, match=r"different recipe \(stages: search\)"):
        _claim_run_dir(tmp_path, DemoRecipe.from_dict({"search": {"compare_seeds": 2}}))


def test_a_run_directory_resumes_across_added_fields_and_verifiers(tmp_path):
    """A field the saved recipe predates, at its default, and a verifier appended to demo.verifiers only
    add work; a field the saved recipe predates at another value, or a verifier removed, is a change."""
    import yaml

    from prmkit.pipeline import _claim_run_dir

    saved = DemoRecipe.from_dict({}).to_dict()
    del saved["demo"]["prm_data"]
    saved["demo"]["verifiers"] = ["prm", "orm", "value"]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    _claim_run_dir(tmp_path, DemoRecipe.from_dict({}))  # likelihood appended, prm_data at its default
    assert yaml.safe_load((tmp_path / "recipe.yaml").read_text())["demo"]["prm_data"] == "labels"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ValueError, match=r"different recipe \(stages: demo\)"):
        _claim_run_dir(tmp_path, DemoRecipe.from_dict({"demo": {"prm_data": "pool"}}))
    with pytest.raises(ValueError, match=r"different recipe \(stages: demo\)"):
        _claim_run_dir(tmp_path, DemoRecipe.from_dict({"demo": {"verifiers": ["prm", "likelihood"]}}))


def test_reseed_moves_every_stage_seed(tmp_path):
    from prmkit.pipeline import reseed

    recipe = reseed({"sft": {"seed": 5, "max_steps": 3}}, 2)
    built = DemoRecipe.from_dict(recipe)
    assert recipe["sft"] == {"seed": 7, "max_steps": 3}
    assert (built.world.seed, built.sample.seed, built.annotate.seed, built.prm.seed, built.orm.seed) == (
        2,
    ) * 5
    assert (built.value.seed, built.ppo.seed, built.grpo.seed, built.rft.seed, built.search.seed) == (2,) * 5
    assert reseed({}, 0) == {stage: {"seed": 0} for stage in recipe if "seed" in recipe[stage]}


def _numbers(report: dict) -> dict:
    """A report without what differs between two runs of the same recipe: times and paths."""
    out = {k: v for k, v in report.items() if k not in ("timings", "wall_seconds", "run_dir", "recipe")}
    search = dict(out["search"])
    search["rows"] = [{k: v for k, v in r.items() if "second" not in k} for r in search["rows"]]
    search.pop("table")  # its seconds column
    return json.loads(json.dumps(out | {"search": search}))


@pytest.mark.slow
def test_the_demo_gives_the_same_numbers_on_two_workers(tmp_path):
    """Jobs side by side in worker processes (verifiers, pools, scores, RL runs, search) change the wall
    time, never a number of the report; and a run directory may change its worker count."""
    sets = [
        "rl.methods=[outcome, process]", "rl.seeds=1", "rl.bon_samples=2", "ppo.iterations=1",
        "ppo.problems_per_iteration=2", "ppo.samples_per_problem=2", "ppo.minibatch_size=4",
        "ppo.max_new_tokens=16", "ppo.eval_problems=2", "demo.torch_threads=1",
    ]  # fmt: skip
    one = run_demo(load_recipe(ROOT / "recipes/world-quick.yaml", sets), tmp_path / "one")
    two = run_demo(
        load_recipe(ROOT / "recipes/world-quick.yaml", [*sets, "demo.workers=2"]), tmp_path / "two"
    )
    assert _numbers(one) == _numbers(two)
    assert two["rl"]["verification"]["bon"] and two["annotation_audit"]
    assert "worker processes" in (tmp_path / "two" / "report.md").read_text()
    again = run_demo(load_recipe(ROOT / "recipes/world-quick.yaml", sets), tmp_path / "two")  # resumed on one
    assert _numbers(again) == _numbers(two)


def test_only_the_labelled_verifiers_wait_for_the_annotation(monkeypatch, tmp_path):
    """The ORM on the graded pool runs beside the annotation, so its job must not annotate as well (two
    processes would append to one labels file); the PRM and an ORM on the labels wait for it."""
    import prmkit.pipeline as pl
    import prmkit.reward.train as rt

    recipe = DemoRecipe.from_dict({})
    monkeypatch.setattr(pl, "_pool", lambda *a: [])
    monkeypatch.setattr(pl, "annotate_pool", lambda *a: pytest.fail("the ORM's job annotated"))
    monkeypatch.setattr(rt, "train_reward", lambda cfg, data, by_id, out, default_init=None: out)
    assert pl.train_verifier("orm", recipe, tmp_path / "gen", [], tmp_path) == tmp_path / "orm"
    jobs = {j.name: j.after for j in pl.verifier_jobs(recipe, tmp_path / "gen", [], tmp_path)}
    assert jobs == {
        "sample_train": (),
        "annotate": ("sample_train",),
        "train_prm": ("annotate",),
        "train_value": ("sample_train",),
        "train_orm": ("sample_train",),
    }
    on_labels = DemoRecipe.from_dict({"demo": {"orm_data": "labels"}})
    assert {j.name: j.after for j in pl.verifier_jobs(on_labels, tmp_path, [], tmp_path)}["train_orm"] == (
        "annotate",
    )


def test_verifiers_can_start_from_their_own_lm(monkeypatch, tmp_path):
    """``demo.verifier_init: verifier_lm``: the LM is a job that waits for nothing, every trained verifier
    waits for it and starts from it; by default nothing changes."""
    import prmkit.pipeline as pl
    import prmkit.reward.train as rt

    recipe = DemoRecipe.from_dict({"demo": {"verifier_init": "verifier_lm"}})
    jobs = {j.name: j for j in pl.verifier_jobs(recipe, tmp_path / "gen", [], tmp_path)}
    assert jobs["train_verifier_lm"].after == () and jobs["sample_train"].after == ()
    assert jobs["train_verifier_lm"].args[0] == recipe.verifier_lm
    assert jobs["train_verifier_lm"].args[2] == tmp_path / "verifier_lm"
    assert jobs["train_prm"].after == ("annotate", "train_verifier_lm")
    assert jobs["train_orm"].after == ("sample_train", "train_verifier_lm")
    monkeypatch.setattr(pl, "_pool", lambda *a: [])
    monkeypatch.setattr(rt, "train_reward", lambda cfg, data, by_id, out, default_init=None: default_init)
    assert pl.train_verifier("orm", recipe, tmp_path / "gen", [], tmp_path) == str(tmp_path / "verifier_lm")
    default = DemoRecipe.from_dict({})
    assert pl.train_verifier("orm", default, tmp_path / "gen", [], tmp_path) == str(tmp_path / "gen")
    assert "train_verifier_lm" not in {j.name for j in pl.verifier_jobs(default, tmp_path, [], tmp_path)}
    with pytest.raises(ValueError, match="demo.verifier_init: unknown 'lm'; valid: generator, verifier_lm"):
        DemoRecipe.from_dict({"demo": {"verifier_init": "lm"}})
    with pytest.raises(ValueError, match="verifier_lm: set epochs > 0 or max_steps > 0"):
        DemoRecipe.from_dict({"verifier_lm": {"epochs": 0}})


def test_sft_runs_first_and_the_verifiers_lm_beside_it(tmp_path):
    """Every job of the demo waits for SFT but the verifiers' own LM, which reads no generator: the two
    are the first jobs a pair of workers takes."""
    import prmkit.pipeline as pl

    splits = {"train": [], "test": [], "ood": [], "held_out": []}
    for init, roots in (("generator", ["sft"]), ("verifier_lm", ["sft", "train_verifier_lm"])):
        recipe = DemoRecipe.from_dict({"demo": {"verifier_init": init}, "rl": {"methods": ["rft"]}})
        jobs = pl.demo_jobs(recipe, splits, tmp_path)
        assert [j.name for j in jobs if not j.after] == roots == [j.name for j in jobs[: len(roots)]]
        assert {"sample_train", "sample_test", "rl_rft-seed0"} <= {
            j.name for j in jobs if j.after == ("sft",)
        }
        assert jobs[0].args == (recipe.sft, [], tmp_path / "generator")


def test_the_demo_trains_the_verifiers_own_lm(tmp_path):
    """A tiny run with ``demo.verifier_init: verifier_lm``: the LM is trained on the train split and the
    PRM and ORM start from it, not from the generator; the report says so."""
    sets = [
        "demo.verifier_init=verifier_lm", "verifier_lm.model=scratch:test", "verifier_lm.max_steps=4",
        "verifier_lm.batch_size=8", "verifier_lm.save_steps=2", "verifier_lm.lr=3e-3",
        "demo.verifiers=[prm, orm, likelihood]", "demo.audit_solutions=0", "demo.ood_problems=0",
        "rl.methods=[]", "search.compare_problems=0", "sft.max_steps=4", "demo.test_problems=4",
    ]  # fmt: skip
    report = run_demo(load_recipe(ROOT / "recipes/world-quick.yaml", sets), tmp_path / "run")
    lm = tmp_path / "run" / "verifier_lm"
    assert (lm / "config.json").exists() and "train_verifier_lm" in report["timings"]
    for key in ("prm", "orm"):
        meta = json.loads((tmp_path / "run" / key / "prmkit_reward.json").read_text())
        assert meta["init"] == {"path": str(lm)}
    assert "init" not in report["verifiers"]  # the recipe says it: report["recipe"]["verifier_lm"]
    assert (
        "starts from its own LM (scratch:test, 4 steps at lr 0.003"
        in (tmp_path / "run" / "report.md").read_text()
    )
