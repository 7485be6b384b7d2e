"""``prmkit demo``: the main job, chained in a run directory, each stage skipped once its output exists.

Stages so far: world -> sft (generator) -> sample the test split greedily (T=0) and N times
(T=0.7) -> ``report.json`` / ``report.md`` with greedy accuracy, sampled accuracy and pass@k.
A killed demo resumes: finished stages are skipped and sampling continues where it stopped. The
resolved recipe is saved in the run directory; rerunning with a different recipe there is refused
rather than mixing outputs of two configurations.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from prmkit.config import build, check_stages
from prmkit.io import atomic_write_json, atomic_write_text, read_jsonl, write_jsonl
from prmkit.policy.sft import SFTConfig, train_sft
from prmkit.sample import SampleConfig, accuracy_summary, build_policy, sample_problems
from prmkit.types import Problem
from prmkit.world import SPLITS, WorldConfig, make_world

STAGES = ["world", "sft", "sample", "demo"]


@dataclass(frozen=True)
class DemoConfig:
    test_problems: int = 300  # test-split problems sampled for the report (0 = all)
    ood_problems: int = 0  # OOD-split problems given the same evaluation (0 = skip)
    greedy: bool = True

    def __post_init__(self):
        if self.test_problems < 0 or self.ood_problems < 0:
            raise ValueError("demo: test_problems and ood_problems must be >= 0")


@dataclass(frozen=True)
class DemoRecipe:
    world: WorldConfig
    sft: SFTConfig
    sample: SampleConfig
    demo: DemoConfig

    @classmethod
    def from_dict(cls, recipe: dict[str, Any]) -> DemoRecipe:
        check_stages(recipe, STAGES)
        return cls(
            world=build(WorldConfig, recipe.get("world"), "world"),
            sft=build(SFTConfig, recipe.get("sft"), "sft"),
            sample=build(SampleConfig, recipe.get("sample"), "sample"),
            demo=build(DemoConfig, recipe.get("demo"), "demo"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {name: asdict(getattr(self, name)) for name in STAGES}


class Timer:
    """Wall time per stage, kept in ``timings.json`` across resumed runs."""

    def __init__(self, path: Path):
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def run(self, name: str, fn, *args, done: bool = False, **kwargs):
        """Run a stage; its time is added unless ``done`` says it only reads finished output."""
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        if not done:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
            atomic_write_json(self.path, self.times)
        return result


def _claim_run_dir(run_dir: Path, recipe: DemoRecipe) -> None:
    resolved = recipe.to_dict()
    saved = run_dir / "recipe.yaml"
    if saved.exists():
        old = yaml.safe_load(saved.read_text())
        changed = [
            k
            for k in STAGES
            if json.dumps(old.get(k), sort_keys=True) != json.dumps(resolved[k], sort_keys=True)
        ]
        if changed:
            raise ValueError(
                f"{run_dir} was made with a different recipe (stages: {', '.join(changed)}); "
                "use another --run-dir or delete it"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, yaml.safe_dump(resolved, sort_keys=False))


def world_files(run_dir: Path) -> dict[str, Path]:
    return {s: run_dir / "world" / f"{s}.jsonl" for s in SPLITS}


def stage_world(cfg: WorldConfig, run_dir: Path) -> dict[str, list[Problem]]:
    """Write ``world/{train,test,ood}.jsonl`` once; read them back afterwards."""
    files = world_files(run_dir)
    if not all(f.exists() for f in files.values()):
        world = make_world(cfg)
        for s, f in files.items():
            write_jsonl(f, world[s])
    return {s: read_jsonl(f, Problem) for s, f in files.items()}


def _evaluate_split(
    name: str, problems: list[Problem], generator: Path, recipe: DemoRecipe, run_dir: Path, timer: Timer
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if recipe.demo.greedy:
        greedy_cfg = build(SampleConfig, {**asdict(recipe.sample), "n": 1, "temperature": 0.0}, "sample")
        policy = build_policy(str(generator), greedy_cfg)
        sols = timer.run(
            f"sample_{name}_greedy",
            sample_problems,
            policy,
            problems,
            greedy_cfg,
            run_dir / f"samples_{name}_greedy.jsonl",
        )
        out["greedy_accuracy"] = accuracy_summary(sols, ks=())["accuracy"]
    policy = build_policy(str(generator), recipe.sample)
    sols = timer.run(
        f"sample_{name}", sample_problems, policy, problems, recipe.sample, run_dir / f"samples_{name}.jsonl"
    )
    ks = tuple(k for k in (1, 2, 4, 8, 16, 32, 64) if k <= recipe.sample.n)
    summary = accuracy_summary(sols, ks=ks)
    out.update(
        problems=summary["problems"],
        samples_per_problem=recipe.sample.n,
        temperature=recipe.sample.temperature,
        sampled_accuracy=summary["accuracy"],
        pass_at_k={k: summary[f"pass@{k}"] for k in ks},
        mean_tokens=sum(s.meta.get("n_tokens", 0) for s in sols) / max(1, len(sols)),
    )
    return out


def render_report(report: dict[str, Any]) -> str:
    """``report.md``: the generator's accuracy table per split, and stage timings."""
    lines = ["# prmkit demo report", "", f"Run directory: `{report['run_dir']}`", "", "## Generator", ""]
    for split, r in report["splits"].items():
        ks = list(r["pass_at_k"])
        lines += [
            f"### {split} split ({r['problems']} problems, {r['samples_per_problem']} samples each "
            f"at T={r['temperature']})",
            "",
            "| greedy (T=0) | sampled accuracy | " + " | ".join(f"pass@{k}" for k in ks) + " |",
            "|---|---|" + "---|" * len(ks),
            f"| {r.get('greedy_accuracy', float('nan')):.1%} | {r['sampled_accuracy']:.1%} | "
            + " | ".join(f"{r['pass_at_k'][k]:.1%}" for k in ks)
            + " |",
            "",
        ]
    lines += ["## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["timings"].items()]
    lines += [f"| total | {sum(report['timings'].values()):.1f} |", ""]
    return "\n".join(lines)


def run_demo(recipe_dict: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) the demo in ``run_dir``; returns the report."""
    recipe = DemoRecipe.from_dict(recipe_dict)
    run_dir = Path(run_dir)
    _claim_run_dir(run_dir, recipe)
    timer = Timer(run_dir / "timings.json")
    world = timer.run(
        "world",
        stage_world,
        recipe.world,
        run_dir,
        done=all(f.exists() for f in world_files(run_dir).values()),
    )
    gen_dir = run_dir / "generator"
    generator = timer.run(
        "sft", train_sft, recipe.sft, world["train"], gen_dir, done=(gen_dir / "config.json").exists()
    )
    splits = {"test": world["test"][: recipe.demo.test_problems or None]}
    if recipe.demo.ood_problems:
        splits["ood"] = world["ood"][: recipe.demo.ood_problems]
    results = {
        name: _evaluate_split(name, probs, generator, recipe, run_dir, timer)
        for name, probs in splits.items()
    }
    report = {"run_dir": str(run_dir), "recipe": recipe.to_dict(), "splits": results, "timings": timer.times}
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_text(run_dir / "report.md", render_report(report))
    return report
