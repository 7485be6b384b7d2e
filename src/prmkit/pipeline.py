"""``prmkit demo``: the main job, chained in a run directory, each stage skipped once its output exists.

    problems (the world, or GSM8K/JSONL) -> sft (generator) -> sample the train pool -> annotate
    (Monte-Carlo step labels) -> train PRM / ORM / value verifier -> sample the test pool (greedy and
    N per problem) -> score with every verifier -> best-of-N curves -> report.md / report.json + plots

On the world, the oracle adds what real data cannot give: an audit of the annotation against the true
step labels (``annotation_quality.png``) and each verifier's step accuracy and first-error F1
(ProcessBench's metric) on the test pool. A killed demo resumes: finished stages are skipped and
sampling, annotation, training and scoring continue where they stopped. The resolved recipe is saved
in the run directory; rerunning with a different recipe there is refused rather than mixing outputs
of two configurations, with exceptions that mix nothing: RL methods appended to ``rl.methods``, verifiers
appended to ``demo.verifiers``, and stages or fields the saved recipe predates (at their defaults),
which leave every finished output valid and only add runs.

The PRM learns from the annotated pool solutions; the ORM and the value verifier from every graded
pool sample (``demo.orm_data: pool``), since outcome labels cost nothing but grading (Cobbe et al.
train their verifiers on 100 samples per problem). ``orm_data: labels`` gives the ORM exactly the
PRM's solutions instead, for a comparison at equal data (Lightman et al.'s small-scale setting).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from prmkit.annotate import AnnotateConfig, annotate
from prmkit.config import check_stages, stage_config
from prmkit.io import atomic_write_json, atomic_write_text, read_jsonl, read_scores, write_jsonl
from prmkit.policy.sft import SFTConfig, train_sft
from prmkit.reward.model import META_FILE
from prmkit.reward.train import RewardConfig
from prmkit.reward.value import ValueConfig
from prmkit.rl.compare import RLConfig
from prmkit.rl.grpo import GRPOConfig
from prmkit.rl.ppo import PPOConfig
from prmkit.rl.rft import RFTConfig
from prmkit.sample import SampleConfig, accuracy_summary, build_policy, greedy_accuracy, sample_problems
from prmkit.search import SearchConfig
from prmkit.types import Problem, Solution, index_problems
from prmkit.world import SPLITS, WorldConfig, make_world

# recipe name -> report name; "likelihood" is the generator's own mean token log-prob (no training,
# reward/likelihood.py), the baseline a trained verifier has to beat
VERIFIERS = {"prm": "PRM", "orm": "ORM", "value": "value", "likelihood": "likelihood"}
# how a verifier's step scores become a solution score: min (Math-Shepherd) and prod (Lightman et al.)
# for the PRM, and its last step's score (the estimate that the whole solution reaches the answer); an
# ORM and a value verifier are read at the last step (Cobbe et al.), and so is the likelihood (its last
# step holds the whole solution's mean)
REPORT_AGGREGATIONS = {
    "PRM": ["min", "prod", "last"],
    "ORM": ["last"],
    "value": ["last"],
    "likelihood": ["last"],
}
VERIFIER_DATA = ("pool", "labels")  # demo.orm_data and demo.prm_data


@dataclass(frozen=True)
class DataConfig:
    source: str = "world"  # world (made by the world stage), or a loader: gsm8k, jsonl, problems
    train: str = ""  # not world: training problems, a path or hub id (e.g. openai/gsm8k)
    test: str = ""  # not world: test problems, a path or hub id
    train_limit: int = 0  # use only the first N training problems (0 = all)

    def __post_init__(self):
        from prmkit.data import LOADERS

        if self.source != "world" and self.source not in LOADERS:
            raise ValueError(f"data.source: unknown {self.source!r}; valid: world, {', '.join(LOADERS)}")
        if self.source != "world" and not (self.train and self.test):
            raise ValueError(f"data: source {self.source} needs data.train and data.test (paths or hub ids)")
        if self.train_limit < 0:
            raise ValueError("data.train_limit must be >= 0")


@dataclass(frozen=True)
class DemoConfig:
    test_problems: int = 200  # test problems in the report (0 = all)
    ood_problems: int = 0  # world OOD problems given the same evaluation (0 = skip)
    ood_samples: int = 16  # samples per OOD problem (the test pool has sample.n)
    greedy: bool = True
    pool_problems: int = 2000  # training problems sampled for the verifiers' data
    pool_samples: int = 8  # samples per pool problem
    label_solutions: int = 2000  # pool solutions annotated for the PRM (0 = all)
    orm_data: str = "pool"  # the ORM's solutions: every graded pool sample, or the PRM's labelled ones
    # the PRM's solutions: the labelled ones, or those and every other graded pool sample with only its
    # last step labelled (by its graded answer, the Monte-Carlo label that needs no completion)
    prm_data: str = "labels"
    # how the PRM's step scores pick a solution in the report's verdicts and in RL + verification (every
    # aggregation of REPORT_AGGREGATIONS["PRM"] is reported); choose it on a dev split, never on the test split
    prm_aggregation: str = "min"
    audit_solutions: int = 100  # world only: pool solutions annotated per_step to audit the labels
    audit_n: int = 16  # completions per step in the audit
    verifiers: tuple[str, ...] = ("prm", "orm", "value", "likelihood")
    groups: int = 3  # resampled draws per N in the best-of-N curves (the papers use 3)
    score_batch_size: int = 32
    # CPU threads for the whole demo (0 = torch's default, the machine's cores). Fixed, the numbers repeat
    # to the digit on any machine; and tiny models gain nothing from a second thread, which on a loaded
    # 2-core machine mostly waits (docs/benchmarks.md)
    torch_threads: int = 0

    def __post_init__(self):
        if min(self.test_problems, self.ood_problems, self.label_solutions, self.audit_solutions,
               self.torch_threads) < 0:  # fmt: skip
            raise ValueError("demo: problem and solution counts and torch_threads must be >= 0")
        if min(self.ood_samples, self.pool_problems, self.pool_samples, self.audit_n, self.groups) < 1:
            raise ValueError(
                "demo: ood_samples, pool_problems, pool_samples, audit_n and groups must be >= 1"
            )
        if self.prm_aggregation not in REPORT_AGGREGATIONS["PRM"]:
            raise ValueError(
                f"demo.prm_aggregation: unknown {self.prm_aggregation!r}; valid: {', '.join(REPORT_AGGREGATIONS['PRM'])}"
            )
        unknown = sorted(set(self.verifiers) - set(VERIFIERS))
        if unknown:
            raise ValueError(f"demo.verifiers: unknown {', '.join(unknown)}; valid: {', '.join(VERIFIERS)}")
        for name in ("orm_data", "prm_data"):
            if getattr(self, name) not in VERIFIER_DATA:
                raise ValueError(
                    f"demo.{name}: unknown {getattr(self, name)!r}; valid: {', '.join(VERIFIER_DATA)}"
                )

    def aggregations(self, verifiers) -> dict[str, list[str]]:
        """Each report-named verifier's aggregations, the PRM's ``prm_aggregation`` first: weighted SC and
        top-K voting use a verifier's first.

        >>> DemoConfig(prm_aggregation="last").aggregations(["PRM", "ORM"])
        {'PRM': ['last', 'min', 'prod'], 'ORM': ['last']}
        """
        first = {"PRM": self.prm_aggregation}
        return {v: sorted(REPORT_AGGREGATIONS[v], key=lambda a: a != first.get(v)) for v in verifiers}


PER_RUN = ("reward", "reward_model")  # PPO and GRPO fields that rl.methods sets for each run


@dataclass(frozen=True)
class DemoRecipe:
    """Every stage the demo runs (``config.STAGES`` but ``critique``, which the demo does not train)."""

    data: DataConfig
    world: WorldConfig
    sft: SFTConfig
    sample: SampleConfig
    annotate: AnnotateConfig
    prm: RewardConfig
    orm: RewardConfig
    value: ValueConfig
    demo: DemoConfig
    ppo: PPOConfig
    rft: RFTConfig
    rl: RLConfig
    grpo: GRPOConfig
    search: SearchConfig

    @classmethod
    def stages(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, recipe: dict[str, Any]) -> DemoRecipe:
        check_stages(recipe)
        for stage in ("ppo", "grpo"):  # each run's reward comes from rl.methods
            for name in PER_RUN:
                if name in (recipe.get(stage) or {}):
                    raise ValueError(
                        f"{stage}.{name} is set per run by rl.methods (process, outcome, answer)"
                    )
        for stage in set(recipe) - set(cls.stages()):
            stage_config(stage, recipe)  # a stage the demo does not run is still checked
        configs = {
            stage: stage_config(stage, recipe) for stage in cls.stages() if stage not in ("ppo", "grpo")
        }
        configs["ppo"] = stage_config("ppo", recipe, reward="answer")
        configs["grpo"] = stage_config("grpo", recipe, reward="answer")
        missing = sorted(configs["rl"].verifiers() - set(configs["demo"].verifiers))
        if missing:
            raise ValueError(
                f"rl.methods need the verifier(s) {', '.join(missing)}: add them to demo.verifiers"
            )
        return cls(**configs)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe, which ``from_dict`` reads back (PPO's and GRPO's reward fields are per run:
        left out)."""
        out = {name: asdict(getattr(self, name)) for name in self.stages()}
        for name in PER_RUN:
            del out["ppo"][name], out["grpo"][name]
        return out


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


APPENDABLE = {"rl": "methods", "demo": "verifiers"}  # lists whose new items only add runs or scores


def _only_added(stage: str, old: dict | None, new: dict) -> bool:
    """Whether a stage's change only adds work: a stage the saved recipe predates (read by no finished
    output), fields it predates at their default values, or items appended to ``rl.methods`` (more RL
    runs) or ``demo.verifiers`` (more scores), with every other field the same."""
    if old is None:
        return True
    new = json.loads(json.dumps(new))  # as the saved YAML reads back: tuples are lists
    default = json.loads(json.dumps(DemoRecipe.from_dict({}).to_dict()[stage]))
    old = {k: old.get(k, default[k]) for k in new} if set(old) <= set(new) else old
    key = APPENDABLE.get(stage)
    if key is None:
        return old == new
    items, new_items = list(old.get(key) or []), list(new.get(key) or [])
    rest = {k: v for k, v in old.items() if k != key}
    return new_items[: len(items)] == items and rest == {k: v for k, v in new.items() if k != key}


def _claim_run_dir(run_dir: Path, recipe: DemoRecipe) -> None:
    resolved = recipe.to_dict()
    saved = run_dir / "recipe.yaml"
    if saved.exists():
        old = yaml.safe_load(saved.read_text())
        # a stage the saved recipe lacks was added to prmkit since the run began: it has no output yet
        changed = [
            k
            for k in DemoRecipe.stages()
            if json.dumps(old.get(k), sort_keys=True) != json.dumps(resolved[k], sort_keys=True)
            and not _only_added(k, old.get(k), resolved[k])
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


def stage_problems(recipe: DemoRecipe, run_dir: Path, timer: Timer) -> dict[str, list[Problem]]:
    """Train, test (and, for the world, OOD) problems cut to the recipe's sizes, and the test split's
    remaining problems as ``held_out``."""
    data, demo = recipe.data, recipe.demo
    if data.source == "world":
        done = all(f.exists() for f in world_files(run_dir).values())
        splits = timer.run("world", stage_world, recipe.world, run_dir, done=done)
    else:
        from prmkit.data import load_problems

        splits = {
            "train": load_problems(data.source, data.train, split="train"),
            "test": load_problems(data.source, data.test, split="test"),
        }
    n_test = demo.test_problems or len(splits["test"])
    out = {
        "train": splits["train"][: data.train_limit or None],
        "test": splits["test"][:n_test],
        "held_out": splits["test"][n_test:],  # training curves (PPO); never reported as test
    }
    if demo.ood_problems and "ood" in splits:
        out["ood"] = splits["ood"][: demo.ood_problems]
    return out


def _sample(name: str, problems, generator: Path, cfg: SampleConfig, run_dir: Path, timer: Timer):
    return timer.run(
        f"sample_{name}",
        sample_problems,
        build_policy(str(generator), cfg),
        problems,
        cfg,
        run_dir / f"samples_{name}.jsonl",
    )


def stage_verifiers(
    recipe: DemoRecipe, generator: Path, train: list[Problem], run_dir: Path, timer: Timer
) -> tuple[dict[str, Path | str], dict[str, Any]]:
    """Sample the train pool, annotate it, train the recipe's verifiers; (name -> what
    ``load_reward_model`` loads, summary). The likelihood needs no pool: ``likelihood:GENERATOR``."""
    from prmkit.reward import LIKELIHOOD_PREFIX
    from prmkit.reward.train import outcome_labels, train_reward, with_pool
    from prmkit.reward.value import train_value

    demo = recipe.demo
    models: dict[str, Path | str] = {}
    likelihood = {"likelihood": f"{LIKELIHOOD_PREFIX}{generator}"} if "likelihood" in demo.verifiers else {}
    if set(demo.verifiers) <= {"likelihood"}:
        return likelihood, {}
    by_id = index_problems(train)
    pool_cfg = replace(recipe.sample, n=demo.pool_samples)
    pool = _sample("train", train[: demo.pool_problems], generator, pool_cfg, run_dir, timer)
    # annotate the first sample of every problem, then the second, ...: many problems before many samples
    pool = sorted(pool, key=lambda s: s.sample_id)
    info: dict[str, Any] = {"pool": accuracy_summary(pool, ks=())}
    labels = []
    if "prm" in demo.verifiers or demo.orm_data == "labels":
        policy = build_policy(str(generator), recipe.annotate)
        labels = timer.run(
            "annotate", annotate, policy, pool, train, recipe.annotate, run_dir / "labels.jsonl",
            limit=demo.label_solutions or None,
        )  # fmt: skip
        done = [r for r in labels if not r.skipped]
        info["labels"] = {
            "solutions": len(done),
            "skipped": len(labels) - len(done),
            "strategy": recipe.annotate.strategy,
            "n": recipe.annotate.n,
            "tokens": sum(r.meta.get("tokens", 0) for r in done),
        }
    data = {
        "prm": with_pool(labels, pool) if demo.prm_data == "pool" else labels,
        "orm": outcome_labels(pool) if demo.orm_data == "pool" else labels,
    }
    for key in ("prm", "orm"):
        if key in demo.verifiers:
            out = run_dir / key
            models[VERIFIERS[key]] = timer.run(
                f"train_{key}", train_reward, getattr(recipe, key), data[key], by_id, out,
                default_init=str(generator), done=(out / "config.json").exists(),
            )  # fmt: skip
            info[f"{key}_solutions"] = len(data[key])
    if "value" in demo.verifiers:
        out = run_dir / "value"
        models["value"] = timer.run(
            "train_value", train_value, recipe.value, pool, by_id, out,
            default_init=str(generator), done=(out / META_FILE).exists(),
        )  # fmt: skip
        info["value_solutions"] = len(pool)
    return models | likelihood, info


def stage_audit(recipe: DemoRecipe, generator: Path, train: list[Problem], run_dir: Path, timer: Timer):
    """World only: annotate some pool solutions per_step at ``audit_n`` and replay every strategy and N
    against the oracle (``annotation_quality.png``); None when switched off."""
    from prmkit.evaluate.annotation import annotation_quality, plot_quality

    demo = recipe.demo
    if not demo.audit_solutions:
        return None
    pool = read_jsonl(run_dir / "samples_train.jsonl", Solution)
    cfg = replace(recipe.annotate, strategy="per_step", n=demo.audit_n)
    # the end of the order the PRM's labels are taken in, so the audit does not repeat them
    audited = sorted(pool, key=lambda s: s.sample_id)[-demo.audit_solutions :]
    records = timer.run(
        "annotate_audit", annotate, build_policy(str(generator), cfg), audited, train, cfg,
        run_dir / "labels_audit.jsonl",
    )  # fmt: skip
    rows = annotation_quality(
        records, train, ns=tuple(n for n in (1, 2, 4, 8, 16, 32, 64) if n <= demo.audit_n)
    )
    plot_quality(rows, run_dir / "annotation_quality.png")
    return rows


def evaluate_split(
    name: str, problems: list[Problem], n: int, generator: Path, models: dict[str, Path | str],
    recipe: DemoRecipe, run_dir: Path, timer: Timer, oracle: bool,
) -> dict[str, Any]:  # fmt: skip
    """Greedy and sampled accuracy, pass@k, every verifier's scores, best-of-N curves (``bon[_name].png``),
    each verifier's within-problem AUC and, with the oracle, its step-level quality (not the
    likelihood's: a threshold of 0.5 on a mean token probability means nothing)."""
    from prmkit.evaluate.bon import auc_rows, bon_report, plot_bon
    from prmkit.evaluate.verifier import verifier_quality
    from prmkit.reward import score_solutions

    demo = recipe.demo
    out: dict[str, Any] = {}
    if demo.greedy:
        out["greedy_accuracy"] = timer.run(
            f"sample_{name}_greedy", greedy_accuracy, generator, problems, recipe.sample,
            run_dir / f"samples_{name}_greedy.jsonl",
        )  # fmt: skip
    cfg = replace(recipe.sample, n=n)
    sols = _sample(name, problems, generator, cfg, run_dir, timer)
    ks = tuple(k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n)
    summary = accuracy_summary(sols, ks=ks)
    out.update(
        problems=summary["problems"],
        samples_per_problem=n,
        temperature=cfg.temperature,
        sampled_accuracy=summary["accuracy"],
        pass_at_k={k: summary[f"pass@{k}"] for k in ks},
        mean_tokens=sum(s.meta.get("n_tokens", 0) for s in sols) / max(1, len(sols)),
    )
    by_id = index_problems(problems)
    scores = {}
    for vname, path in models.items():
        file = run_dir / f"scores_{name}_{vname.lower()}.jsonl"
        timer.run(
            f"score_{name}_{vname.lower()}", score_solutions, path, sols, by_id, file, demo.score_batch_size
        )
        scores[vname] = read_scores(file)
    rows, table = timer.run(
        f"bon_{name}", bon_report, sols, by_id, scores, demo.aggregations(scores), demo.groups
    )
    png = "bon.png" if name == "test" else f"bon_{name}.png"
    plot_bon(rows, run_dir / png, title=f"best-of-N, {name} split ({len(problems)} problems)")
    out |= {"bon": rows, "bon_table": table, "bon_png": png}
    if scores:
        out["within_problem_auc"] = auc_rows(sols, scores, demo.aggregations(scores))
    quality = {v: s for v, s in scores.items() if v != "likelihood"}
    if oracle and quality:
        out["verifier_quality"] = {v: verifier_quality(s, sols, by_id) for v, s in quality.items()}
    return out


def stage_search(
    recipe: DemoRecipe,
    generator: Path,
    prm_path: Path | str,
    test: list[Problem],
    run_dir: Path,
    timer: Timer,
) -> dict[str, Any]:
    """PRM-guided search on the first ``search.compare_problems`` test problems: every strategy, budget
    and seed into ``search/``, compared at equal sampled tokens (``search.png``). Runs after every other
    stage on seeds of its own, so the numbers before it are the same with or without it."""
    from prmkit.evaluate.search import run_comparison
    from prmkit.reward import load_reward_model

    cfg = recipe.search
    png = run_dir / "search.png"
    return timer.run(
        "search", run_comparison, generator, load_reward_model(str(prm_path)),
        test[: cfg.compare_problems], cfg, run_dir / "search", png, done=png.exists(),
    )  # fmt: skip


def reseed(recipe_dict: dict[str, Any], seed: int) -> dict[str, Any]:
    """The recipe with ``seed`` added to the seed of every stage that has one (the world, SFT, sampling,
    annotation, the verifiers, RL, search): one whole independent run of the demo per run seed, for
    results over seeds of world + generator + verifiers (``prmkit eval seeds``)."""
    recipe = DemoRecipe.from_dict(recipe_dict)
    out = {stage: dict(fields) for stage, fields in recipe_dict.items()}
    for stage in DemoRecipe.stages():
        cfg = getattr(recipe, stage)
        if hasattr(cfg, "seed"):
            out.setdefault(stage, {})["seed"] = cfg.seed + seed
    return out


def run_demo(recipe_dict: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) the demo in ``run_dir`` on ``demo.torch_threads`` threads; returns the report."""
    import torch

    recipe = DemoRecipe.from_dict(recipe_dict)
    run_dir = Path(run_dir)
    _claim_run_dir(run_dir, recipe)
    threads = torch.get_num_threads()
    if recipe.demo.torch_threads:
        torch.set_num_threads(recipe.demo.torch_threads)
    try:
        return _run_demo(recipe, run_dir)
    finally:
        torch.set_num_threads(threads)


def _run_demo(recipe: DemoRecipe, run_dir: Path) -> dict[str, Any]:
    from prmkit.evaluate.report import render_report

    timer = Timer(run_dir / "timings.json")
    splits = stage_problems(recipe, run_dir, timer)
    oracle = recipe.data.source == "world"
    gen_dir = run_dir / "generator"
    generator = timer.run(
        "sft", train_sft, recipe.sft, splits["train"], gen_dir, done=(gen_dir / "config.json").exists()
    )
    models, info = (
        stage_verifiers(recipe, generator, splits["train"], run_dir, timer)
        if recipe.demo.verifiers
        else ({}, {})
    )
    audit = stage_audit(recipe, generator, splits["train"], run_dir, timer) if oracle else None
    results = {
        name: evaluate_split(
            name,
            probs,
            recipe.sample.n if name == "test" else recipe.demo.ood_samples,
            generator,
            models,
            recipe,
            run_dir,
            timer,
            oracle,
        )  # fmt: skip
        for name, probs in splits.items()
        if name not in ("train", "held_out")
    }
    rl = None
    if recipe.rl.methods:
        from prmkit.rl.compare import run_rl

        rl = run_rl(
            recipe.rl, recipe.ppo, recipe.rft, generator, splits["train"], splits["test"], splits["held_out"],
            models, recipe.sample, run_dir, timer, sft_greedy=results["test"].get("greedy_accuracy"),
            grpo=recipe.grpo, prm_aggregation=recipe.demo.prm_aggregation,
        )  # fmt: skip
    search = None
    if recipe.search.compare_problems and "PRM" in models:
        search = stage_search(recipe, generator, models["PRM"], splits["test"], run_dir, timer)
    report = {
        "run_dir": str(run_dir),
        "recipe": recipe.to_dict(),
        "verifiers": info,
        "annotation_audit": audit,
        "splits": results,
        "rl": rl,
        "search": search,
        "timings": timer.times,
    }
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_text(run_dir / "report.md", render_report(report))
    return report
