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
which leave every finished output valid and only add runs (and ``demo.workers``, which changes no output).

Every stage is a job (``jobs.py``) that waits only for the jobs whose files it reads: with
``demo.workers: 2`` the verifiers' own LM (``demo.verifier_init: verifier_lm``) trains beside SFT, the
verifiers train while the test pools are sampled, and the scores, search and the RL runs share the two
processes as their verifiers become ready; every number is the one a single process gives.

The PRM learns from the annotated pool solutions; the ORM and the value verifier from every graded
pool sample (``demo.orm_data: pool``), since outcome labels cost nothing but grading (Cobbe et al.
train their verifiers on 100 samples per problem). ``orm_data: labels`` gives the ORM exactly the
PRM's solutions instead, for a comparison at equal data (Lightman et al.'s small-scale setting).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from prmkit.annotate import AnnotateConfig, annotate
from prmkit.config import check_stages, stage_config
from prmkit.io import atomic_write_json, atomic_write_text, read_jsonl, read_scores, write_jsonl
from prmkit.jobs import Job, Timer, finished
from prmkit.policy.sft import SFTConfig, VerifierLMConfig, train_sft
from prmkit.reward.model import META_FILE
from prmkit.reward.train import RewardConfig
from prmkit.reward.value import ValueConfig
from prmkit.rl.compare import RLConfig
from prmkit.rl.grpo import GRPOConfig
from prmkit.rl.ppo import PPOConfig
from prmkit.rl.rft import RFTConfig
from prmkit.sample import (
    SampleConfig,
    accuracy_summary,
    build_policy,
    greedy_accuracy,
    read_samples,
    sample_problems,
)
from prmkit.search import SearchConfig
from prmkit.types import Problem, Solution, StepLabels, index_problems
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
# demo.verifier_init: what every trained verifier starts from (a verifier's own ``init`` wins): the
# generator, or the LM of the ``verifier_lm`` stage, trained as its own job beside the first stages
VERIFIER_INITS = ("generator", "verifier_lm")


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
    verifier_init: str = "generator"  # VERIFIER_INITS
    audit_solutions: int = 100  # world only: pool solutions annotated per_step to audit the labels
    audit_n: int = 16  # completions per step in the audit
    verifiers: tuple[str, ...] = ("prm", "orm", "value", "likelihood")
    groups: int = 3  # resampled draws per N in the best-of-N curves (the papers use 3)
    score_batch_size: int = 32
    # CPU threads for the whole demo (0 = torch's default, the machine's cores). Fixed, the numbers repeat
    # to the digit on any machine; and tiny models gain nothing from a second thread, which on a loaded
    # 2-core machine mostly waits (docs/benchmarks.md)
    torch_threads: int = 0
    # processes that run independent jobs side by side (the verifiers' training and the test pools' sampling,
    # the scores, the RL runs and search), each on torch_threads threads (0: the cores over the workers).
    # Every job seeds itself, so the numbers are the same for any count; only the wall time changes
    workers: int = 1

    def __post_init__(self):
        if min(self.test_problems, self.ood_problems, self.label_solutions, self.audit_solutions,
               self.torch_threads) < 0:  # fmt: skip
            raise ValueError("demo: problem and solution counts and torch_threads must be >= 0")
        if self.workers < 1:
            raise ValueError(
                f"demo.workers: {self.workers}; it must be >= 1 (1: every stage in this process)"
            )
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
        for name, valid in (("orm_data", VERIFIER_DATA), ("prm_data", VERIFIER_DATA),
                            ("verifier_init", VERIFIER_INITS)):  # fmt: skip
            if getattr(self, name) not in valid:
                raise ValueError(f"demo.{name}: unknown {getattr(self, name)!r}; valid: {', '.join(valid)}")

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
    verifier_lm: VerifierLMConfig
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


APPENDABLE = {"rl": "methods", "demo": "verifiers"}  # lists whose new items only add runs or scores
SPEED_ONLY = {"demo": ("workers",)}  # fields that change how fast a run goes, never its outputs


def _only_added(stage: str, old: dict | None, new: dict) -> bool:
    """Whether a stage's change only adds work: a stage the saved recipe predates (read by no finished
    output), fields it predates at their default values, or items appended to ``rl.methods`` (more RL
    runs) or ``demo.verifiers`` (more scores), with every other field the same; ``SPEED_ONLY`` fields
    may change freely."""
    if old is None:
        return True
    speed = SPEED_ONLY.get(stage, ())
    old = {k: v for k, v in old.items() if k not in speed}
    new = {
        k: v for k, v in json.loads(json.dumps(new)).items() if k not in speed
    }  # lists, as YAML reads back
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


def sample_with(
    generator: Path | str, problems: list[Problem], cfg: SampleConfig, out: Path
) -> list[Solution]:
    """``sample_problems`` with the generator loaded here, as a job needs (it is sent paths, not models)."""
    return sample_problems(build_policy(str(generator), cfg), problems, cfg, out)


def _pool_args(recipe: DemoRecipe, generator: Path, train: list[Problem], run_dir: Path) -> tuple:
    return (
        generator,
        train[: recipe.demo.pool_problems],
        replace(recipe.sample, n=recipe.demo.pool_samples),
        run_dir / "samples_train.jsonl",
    )


def _pool(recipe: DemoRecipe, generator: Path, train: list[Problem], run_dir: Path) -> list[Solution]:
    """The train pool, read back from its finished file, first sample of every problem first: annotation
    takes many problems before many samples of one."""
    _, problems, _, out = _pool_args(recipe, generator, train, run_dir)
    return sorted(read_samples(out, problems), key=lambda s: s.sample_id)


def annotate_pool(
    recipe: DemoRecipe, generator: Path, train: list[Problem], run_dir: Path
) -> list[StepLabels]:
    """The PRM's Monte-Carlo step labels of the first ``demo.label_solutions`` pool solutions."""
    pool = _pool(recipe, generator, train, run_dir)
    policy = build_policy(str(generator), recipe.annotate)
    return annotate(
        policy,
        pool,
        train,
        recipe.annotate,
        run_dir / "labels.jsonl",
        limit=recipe.demo.label_solutions or None,
    )


def _labelled(key: str, demo: DemoConfig) -> bool:
    """Whether verifier ``key`` trains on the annotated labels (so its job waits for the annotation)."""
    return key == "prm" or (key == "orm" and demo.orm_data == "labels")


def _needs_labels(demo: DemoConfig) -> bool:
    return any(_labelled(k, demo) for k in demo.verifiers)


def verifier_data(
    key: str, demo: DemoConfig, pool: list[Solution], labels: list[StepLabels]
) -> list[StepLabels]:
    """The PRM's or the ORM's training records (``demo.prm_data``, ``demo.orm_data``)."""
    from prmkit.reward.train import outcome_labels, with_pool

    if key == "prm":
        return with_pool(labels, pool) if demo.prm_data == "pool" else labels
    return outcome_labels(pool) if demo.orm_data == "pool" else labels


def verifier_init(recipe: DemoRecipe, generator: Path, run_dir: Path) -> Path:
    """What the trained verifiers start from (``demo.verifier_init``): the generator or ``run_dir/verifier_lm``."""
    return generator if recipe.demo.verifier_init == "generator" else run_dir / "verifier_lm"


def train_verifier(
    key: str, recipe: DemoRecipe, generator: Path, train: list[Problem], run_dir: Path
) -> Path:
    """Train the recipe's ``prm``, ``orm`` or ``value`` verifier into ``run_dir/key`` (or return it
    finished) from ``verifier_init``, reading the pool and the labels back from their files."""
    from prmkit.reward.train import train_reward
    from prmkit.reward.value import train_value

    by_id = index_problems(train)
    pool = _pool(recipe, generator, train, run_dir)
    init = str(verifier_init(recipe, generator, run_dir))
    if key == "value":
        return train_value(recipe.value, pool, by_id, run_dir / key, default_init=init)
    labels = annotate_pool(recipe, generator, train, run_dir) if _labelled(key, recipe.demo) else []
    data = verifier_data(key, recipe.demo, pool, labels)
    return train_reward(getattr(recipe, key), data, by_id, run_dir / key, default_init=init)


def _trained(key: str, run_dir: Path) -> bool:
    return (run_dir / key / (META_FILE if key == "value" else "config.json")).exists()


def verifier_jobs(recipe: DemoRecipe, generator: Path, train: list[Problem], run_dir: Path) -> list[Job]:
    """Train the verifiers' own LM (``demo.verifier_init: verifier_lm``), sample the train pool, annotate
    it, train the recipe's verifiers; none for the likelihood alone. The jobs that wait for nothing come
    first."""
    demo = recipe.demo
    keys = [k for k in ("prm", "value", "orm") if k in demo.verifiers]
    if not keys:
        return []
    args = (recipe, generator, train, run_dir)
    pool = _pool_args(*args)
    jobs, init_after = [], ()
    if demo.verifier_init == "verifier_lm":
        lm = verifier_init(recipe, generator, run_dir)
        done = (lm / "config.json").exists()
        jobs.append(Job("train_verifier_lm", train_sft, (recipe.verifier_lm, train, lm), done=done))
        init_after = ("train_verifier_lm",)
    jobs.append(Job("sample_train", sample_with, pool, done=finished(pool[3], len(pool[1]) * pool[2].n)))
    if _needs_labels(demo):
        jobs.append(Job("annotate", annotate_pool, args, after=("sample_train",)))
    for key in keys:
        after = ("annotate",) if _labelled(key, demo) else ("sample_train",)
        done = _trained(key, run_dir)
        jobs.append(Job(f"train_{key}", train_verifier, (key, *args), after=after + init_after, done=done))
    return jobs


def verifier_models(recipe: DemoRecipe, generator: Path, run_dir: Path) -> dict[str, Path | str]:
    """Report name -> what ``load_reward_model`` loads, for every verifier of the recipe (the trained ones
    once ``verifier_jobs`` ran); the likelihood needs no training: ``likelihood:GENERATOR``."""
    from prmkit.reward import LIKELIHOOD_PREFIX

    models: dict[str, Path | str] = {}
    for key in ("prm", "orm", "value", "likelihood"):  # the report's order
        if key in recipe.demo.verifiers:
            models[VERIFIERS[key]] = (
                f"{LIKELIHOOD_PREFIX}{generator}" if key == "likelihood" else run_dir / key
            )
    return models


def verifier_summary(recipe: DemoRecipe, results: dict[str, Any]) -> dict[str, Any]:
    """The pool, the labels and each verifier's number of training solutions, from the jobs' results."""
    demo = recipe.demo
    if "sample_train" not in results:
        return {}
    pool = sorted(results["sample_train"], key=lambda s: s.sample_id)
    labels = results.get("annotate", [])
    info: dict[str, Any] = {"pool": accuracy_summary(pool, ks=())}
    if "annotate" in results:
        done = [r for r in labels if not r.skipped]
        info["labels"] = {
            "solutions": len(done),
            "skipped": len(labels) - len(done),
            "strategy": recipe.annotate.strategy,
            "n": recipe.annotate.n,
            "tokens": sum(r.meta.get("tokens", 0) for r in done),
        }
    for key in ("prm", "orm"):
        if key in demo.verifiers:
            info[f"{key}_solutions"] = len(verifier_data(key, demo, pool, labels))
    if "value" in demo.verifiers:
        info["value_solutions"] = len(pool)
    return info


def audit_annotation(
    recipe: DemoRecipe, generator: Path, train: list[Problem], run_dir: Path
) -> list[StepLabels]:
    """World only: annotate the last ``demo.audit_solutions`` pool solutions per_step at ``audit_n`` (the
    end of the order the PRM's labels are taken in, so the audit does not repeat them)."""
    cfg = replace(recipe.annotate, strategy="per_step", n=recipe.demo.audit_n)
    audited = _pool(recipe, generator, train, run_dir)[-recipe.demo.audit_solutions :]
    return annotate(build_policy(str(generator), cfg), audited, train, cfg, run_dir / "labels_audit.jsonl")


def audit_report(recipe: DemoRecipe, records: list[StepLabels], train: list[Problem], run_dir: Path):
    """Replay every strategy and N of the audit against the oracle (``annotation_quality.png``)."""
    from prmkit.evaluate.annotation import annotation_quality, plot_quality

    rows = annotation_quality(
        records, train, ns=tuple(n for n in (1, 2, 4, 8, 16, 32, 64) if n <= recipe.demo.audit_n)
    )
    plot_quality(rows, run_dir / "annotation_quality.png")
    return rows


def sample_jobs(
    name: str, problems: list[Problem], n: int, generator: Path, recipe: DemoRecipe, run_dir: Path
) -> list[Job]:
    """A report split's samples: ``n`` per problem, and the greedy ones unless ``demo.greedy`` is off."""
    out = _samples_path(run_dir, name)
    cfg = replace(recipe.sample, n=n)
    jobs = [
        Job(
            f"sample_{name}",
            sample_with,
            (generator, problems, cfg, out),
            done=finished(out, len(problems) * n),
        )
    ]
    if recipe.demo.greedy:
        out = run_dir / f"samples_{name}_greedy.jsonl"
        args = (generator, problems, recipe.sample, out)
        jobs.append(Job(f"sample_{name}_greedy", greedy_accuracy, args, done=finished(out, len(problems))))
    return jobs


def _samples_path(run_dir: Path, split: str) -> Path:
    return run_dir / f"samples_{split}.jsonl"


def _scores_path(run_dir: Path, split: str, verifier: str) -> Path:
    return run_dir / f"scores_{split}_{verifier.lower()}.jsonl"


def score_samples(model: Path | str, samples: Path, problems: list[Problem], out: Path, batch_size: int):
    """A verifier's scores of a split's samples, read back from their finished file, into ``out`` (a job)."""
    from prmkit.reward import score_solutions

    sols = read_samples(samples, problems)
    return score_solutions(model, sols, index_problems(problems), out, batch_size)


def score_jobs(
    name: str,
    problems: list[Problem],
    n: int,
    models: dict[str, Path | str],
    trained_by: dict[str, str],
    recipe: DemoRecipe,
    run_dir: Path,
) -> list[Job]:
    """Every verifier's scores of a split's samples, one job each, after the samples and the job that
    trains the verifier (``trained_by``; the likelihood has none)."""
    jobs, samples = [], _samples_path(run_dir, name)
    for v, model in models.items():
        out = _scores_path(run_dir, name, v)
        jobs.append(
            Job(
                f"score_{name}_{v.lower()}",
                score_samples,
                (model, samples, problems, out, recipe.demo.score_batch_size),
                after=(f"sample_{name}", *([trained_by[v]] if v in trained_by else [])),
                done=finished(out, len(problems) * n),
            )
        )
    return jobs


def evaluate_split(
    name: str, problems: list[Problem], n: int, sols: list[Solution], greedy: float | None,
    models: dict[str, Path | str], recipe: DemoRecipe, run_dir: Path, timer: Timer, oracle: bool,
) -> dict[str, Any]:  # fmt: skip
    """Greedy and sampled accuracy, pass@k, best-of-N curves by every verifier's scores (``bon[_name].png``),
    each verifier's within-problem AUC and, with the oracle, its step-level quality (not the
    likelihood's: a threshold of 0.5 on a mean token probability means nothing)."""
    from prmkit.evaluate.bon import auc_rows, bon_report, plot_bon
    from prmkit.evaluate.verifier import verifier_quality

    demo = recipe.demo
    out: dict[str, Any] = {} if greedy is None else {"greedy_accuracy": greedy}
    ks = tuple(k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n)
    summary = accuracy_summary(sols, ks=ks)
    out.update(
        problems=summary["problems"],
        samples_per_problem=n,
        temperature=recipe.sample.temperature,
        sampled_accuracy=summary["accuracy"],
        pass_at_k={k: summary[f"pass@{k}"] for k in ks},
        mean_tokens=sum(s.meta.get("n_tokens", 0) for s in sols) / max(1, len(sols)),
    )
    by_id = index_problems(problems)
    scores = {v: read_scores(_scores_path(run_dir, name, v)) for v in models}
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


def search_prm(
    generator: Path, prm_path: Path | str, problems: list[Problem], cfg: SearchConfig, out: Path, png: Path
):
    """``evaluate.search.run_comparison`` with the PRM loaded here (a job)."""
    from prmkit.evaluate.search import run_comparison
    from prmkit.reward import load_reward_model

    return run_comparison(generator, load_reward_model(str(prm_path)), problems, cfg, out, png)


def search_job(
    recipe: DemoRecipe, generator: Path, prm_path: Path | str, test: list[Problem], run_dir: Path,
    after: tuple[str, ...] = (),
) -> Job:  # fmt: skip
    """PRM-guided search on the first ``search.compare_problems`` test problems: every strategy, budget
    and seed into ``search/``, compared at equal sampled tokens (``search.png``). On seeds of its own, so
    the numbers before it are the same with or without it."""
    png = run_dir / "search.png"
    cfg = recipe.search
    return Job(
        "search", search_prm, (generator, prm_path, test[: cfg.compare_problems], cfg, run_dir / "search", png),
        after=after, done=png.exists(),
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
    """Run (or resume) the demo in ``run_dir`` on ``demo.torch_threads`` threads; returns the report. With
    ``demo.workers`` > 1 a script that calls it needs the ``if __name__ == "__main__":`` guard that
    spawned processes need (each worker imports the main module)."""
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


def _evaluated(recipe: DemoRecipe, splits: dict[str, list[Problem]]) -> dict[str, tuple[list[Problem], int]]:
    """The splits the demo samples, scores and reports, with their samples per problem."""
    return {
        name: (probs, recipe.sample.n if name == "test" else recipe.demo.ood_samples)
        for name, probs in splits.items()
        if name not in ("train", "held_out")
    }


def demo_jobs(recipe: DemoRecipe, splits: dict[str, list[Problem]], run_dir: Path) -> list[Job]:
    """Every stage after the world as a job, in the order a free worker takes them: SFT and the verifiers'
    LM (the longest job, when there is one; it reads no generator, so it trains beside SFT) and the train
    pool first (most jobs wait for them), then the test pools, the verifiers, search (the longest job
    after them), the scores and the RL runs."""
    from prmkit.rl.compare import rl_jobs

    demo = recipe.demo
    generator = run_dir / "generator"
    train, test = splits["train"], splits["test"]
    evaluated = _evaluated(recipe, splits)
    models = verifier_models(recipe, generator, run_dir)
    trained_by = {v: f"train_{v.lower()}" for v in models if v != "likelihood"}  # verifier -> its job
    trainers = verifier_jobs(recipe, generator, train, run_dir)
    jobs = [j for j in trainers if not j.after]
    jobs += [
        j
        for name, (probs, n) in evaluated.items()
        for j in sample_jobs(name, probs, n, generator, recipe, run_dir)
    ]
    jobs += [j for j in trainers if j.after]
    if recipe.data.source == "world" and demo.audit_solutions and trainers:  # it annotates pool solutions
        args = (recipe, generator, train, run_dir)
        jobs.append(Job("annotate_audit", audit_annotation, args, after=("sample_train",)))
    if recipe.search.compare_problems and "PRM" in models:
        jobs.append(search_job(recipe, generator, models["PRM"], test, run_dir, after=(trained_by["PRM"],)))
    jobs += [
        j
        for name, (probs, n) in evaluated.items()
        for j in score_jobs(name, probs, n, models, trained_by, recipe, run_dir)
    ]
    if recipe.rl.methods:
        jobs += rl_jobs(
            recipe.rl, recipe.ppo, recipe.rft, generator, train, test, splits["held_out"], models, recipe.sample,
            run_dir, grpo=recipe.grpo, prm_aggregation=demo.prm_aggregation,
            trained_by=trained_by,
        )  # fmt: skip
    sft = Job("sft", train_sft, (recipe.sft, train, generator), done=(generator / "config.json").exists())
    # the jobs that wait for no other job read the generator, but the verifiers' LM
    return [sft] + [
        j if j.after or j.name == "train_verifier_lm" else replace(j, after=("sft",)) for j in jobs
    ]


def _run_demo(recipe: DemoRecipe, run_dir: Path) -> dict[str, Any]:
    """Every stage as one group of jobs (``demo_jobs``), each started on one of ``demo.workers``
    processes once the jobs it reads from have finished; then the report."""
    from prmkit.evaluate.report import render_report
    from prmkit.rl.compare import rl_summary

    demo = recipe.demo
    threads = demo.torch_threads or max(1, (os.cpu_count() or 1) // demo.workers)
    timer = Timer(run_dir / "timings.json", workers=demo.workers, threads=threads)
    splits = stage_problems(recipe, run_dir, timer)
    oracle = recipe.data.source == "world"
    generator = run_dir / "generator"
    train, test = splits["train"], splits["test"]
    models = verifier_models(recipe, generator, run_dir)
    done = timer.run_all(demo_jobs(recipe, splits, run_dir))
    results = {
        name: evaluate_split(
            name,
            probs,
            n,
            done[f"sample_{name}"],
            done.get(f"sample_{name}_greedy"),
            models,
            recipe,
            run_dir,
            timer,
            oracle,
        )  # fmt: skip
        for name, (probs, n) in _evaluated(recipe, splits).items()
    }
    audit = "annotate_audit" in done
    report = {
        "run_dir": str(run_dir),
        "recipe": recipe.to_dict(),
        "verifiers": verifier_summary(recipe, done),
        "annotation_audit": audit_report(recipe, done["annotate_audit"], train, run_dir) if audit else None,
        "splits": results,
        "rl": None,
        "search": done.get("search"),
        "timings": timer.times,
        "wall_seconds": timer.wall,
    }
    if recipe.rl.methods:
        report["rl"] = rl_summary(
            recipe.rl, done, generator, test, recipe.sample, run_dir,
            sft_greedy=results["test"].get("greedy_accuracy"),
        )  # fmt: skip
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_text(run_dir / "report.md", render_report(report))
    return report
