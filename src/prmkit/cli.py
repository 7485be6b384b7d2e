"""The ``prmkit`` command line: one subcommand per stage, each a thin layer over library functions.

Every command takes ``--recipe FILE`` (a YAML of per-stage overrides, see ``recipes/``) and any
number of ``--set stage.field=value``. Bad input ends with a one-line message naming the file,
line and field, and exit status 2.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="prmkit",
    help="Process supervision for LM math reasoning: world, sft, sample, annotate, export, eval, demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

RecipeOpt = Annotated[Path | None, typer.Option("--recipe", "-r", help="Recipe YAML of per-stage overrides.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a recipe field: stage.field=value (repeatable)."),
]
SourceOpt = Annotated[
    str,
    typer.Option(help="Problem source: world (run dir or JSONL), gsm8k, math500, jsonl (question/answer)."),
]
SplitOpt = Annotated[str, typer.Option(help="Split to read: train, test or ood (world); train/test (hub).")]
LimitOpt = Annotated[int | None, typer.Option(help="Use only the first N problems.")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Run Python code shipped with the model (its config's auto_map); off: such a model is refused.",
    ),
]

# the options `rl ppo` and `rl grpo` share (each reads its own stage: ppo.*, grpo.*)
PolicyOpt = Annotated[
    str, typer.Option(help="Policy to start from (usually the generator); the KL reference.")
]
TrainProblemsOpt = Annotated[
    str, typer.Option(help="Training problems: a world run dir, a JSONL path or a hub id.")
]
RLOutOpt = Annotated[Path, typer.Option(help="Output model directory (resumes from OUT.checkpoints).")]
RewardModelOpt = Annotated[
    str | None,
    typer.Option(help="PRM (process) or ORM (outcome) directory; overrides the stage's reward_model."),
]
EvalProblemsOpt = Annotated[
    str | None,
    typer.Option(
        help="Held-out problems for greedy accuracy (same --source); default: a world run dir's test split."
    ),
]
EvalSplitOpt = Annotated[str, typer.Option(help="Split of the held-out problems.")]
EvalLimitOpt = Annotated[
    int | None, typer.Option(help="Use N held-out problems; overrides the stage's eval_problems.")
]
RevisionOpt = Annotated[
    str | None,
    typer.Option(help="Pin a hub model id to a branch, tag or commit; the commit used is recorded."),
]

RayWorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        help="Run the model calls on N Ray workers (-1: as many as the cluster holds); recipe: ray.workers.",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(help="A running Ray cluster to join (auto, ray://HOST:10001); default: start a local one."),
]


def _fail(e: Exception) -> None:
    typer.secho(f"error: {e}", fg="red", err=True)
    raise typer.Exit(2)


def _command(group: typer.Typer, name: str | None = None):
    """Register a command of ``group`` whose bad input (a ValueError or OSError from the library: a file,
    line and field, or an option and its valid values) ends with that one line on stderr and exit 2."""

    def register(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (ValueError, OSError) as e:
                _fail(e)

        return group.command(name)(run)

    return register


def _configs(stages: tuple[str, ...], recipe: Path | None, sets: list[str] | None, **options) -> list:
    """The configs of ``stages``, the ones this command reads (``config.STAGES``), from --recipe and
    --set, with the command's own options on top (None: not given). A --set of another stage has no
    effect here, which is said."""
    from prmkit.config import load_recipe, stage_config

    loaded = load_recipe(recipe, sets)
    other = sorted({item.partition(".")[0] for item in sets or []} - set(stages))
    if other:
        typer.secho(
            f"warning: --set for stage {', '.join(other)} is not read by this command "
            f"(it reads {', '.join(stages)})",
            fg="yellow",
            err=True,
        )
    given = {k: v for k, v in options.items() if v is not None}
    return [stage_config(stage, loaded, **given) for stage in stages]


def _config(stage: str, recipe: Path | None, sets: list[str] | None, **options):
    return _configs((stage,), recipe, sets, **options)[0]


def _with_ray(stage: str, recipe, sets, workers: int | None, address: str | None, **options) -> tuple:
    """A sampling stage's config and the ``ray`` stage's, with the command's options on top."""
    from dataclasses import replace

    cfg, ray = _configs((stage, "ray"), recipe, sets)
    given = {k: v for k, v in options.items() if v is not None}
    ray_given = {k: v for k, v in (("workers", workers), ("address", address)) if v is not None}
    return replace(cfg, **given), replace(ray, **ray_given)


def _hub(trust_remote_code: bool, revision: str | None) -> dict:
    """--trust-remote-code / --revision as stage options (None where not given: the recipe's stands)."""
    return {"trust_remote_code": trust_remote_code or None, "revision": revision}


def _verifier_config(stage: str, recipe, sets, init: str | None, problems: str):
    """A verifier stage's config; the model it starts from is --init, else the recipe's, else the run
    directory's verifier LM (``demo.verifier_init: verifier_lm``), else its generator (the papers
    initialise verifiers from the generator's base model)."""
    from dataclasses import replace

    cfg = _config(stage, recipe, sets, init=init or None)
    for name in ("verifier_lm", "generator"):
        model = Path(problems) / name
        if not cfg.init and (model / "config.json").exists():
            cfg = replace(cfg, init=str(model))
    return cfg


@_command(app)
def world(
    out: Annotated[
        Path, typer.Option(help="Run directory; problems go to OUT/world/{train,test,ood}.jsonl.")
    ],
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
):
    """Generate the synthetic GSM world (train/test/OOD problems in GSM8K format, with oracle graphs)."""
    from prmkit.pipeline import stage_world

    cfg = _config("world", recipe, set_)
    splits = stage_world(cfg, out)
    for name, problems in splits.items():
        typer.echo(f"{name}: {len(problems)} problems -> {out / 'world' / (name + '.jsonl')}")


@_command(app)
def sft(
    problems: Annotated[
        str, typer.Option(help="Training problems: a world run dir, a JSONL path or a hub id.")
    ],
    out: Annotated[Path, typer.Option(help="Output model directory (Hugging Face format).")],
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    limit: LimitOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
):
    """Fine-tune a generator on reference solutions (resumes from the last checkpoint if interrupted).

    The model is sft.model: a Hugging Face path or id (e.g. Qwen/Qwen2.5-Math-1.5B), or scratch:SIZE for a
    tiny Llama with a new digit-level tokenizer (sizes: test, small, demo).
    """
    from prmkit.data import load_problems
    from prmkit.policy.sft import train_sft

    cfg = _config("sft", recipe, set_)
    probs = load_problems(source, problems, split=split, limit=limit)
    path = train_sft(cfg, probs, out)
    typer.echo(f"generator -> {path}")


@_command(app)
def sample(
    model: Annotated[str, typer.Option(help="Generator: a model directory or hub id.")],
    problems: Annotated[str, typer.Option(help="Problems: a world run dir, a JSONL path or a hub id.")],
    out: Annotated[Path, typer.Option(help="samples.jsonl to write (appends and resumes).")],
    source: SourceOpt = "world",
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    trust_remote_code: TrustOpt = False,
    revision: RevisionOpt = None,
    ray_workers: RayWorkersOpt = None,
    ray_address: RayAddressOpt = None,
):
    """Sample N solutions per problem (calculator on by default), grade them, print accuracy and pass@k."""
    from prmkit.data import load_problems
    from prmkit.sample import accuracy_summary, build_policy, sample_problems

    cfg, ray = _with_ray(
        "sample", recipe, set_, ray_workers, ray_address, **_hub(trust_remote_code, revision)
    )
    probs = load_problems(source, problems, split=split, limit=limit)
    policy = build_policy(model, cfg, ray)
    try:
        sols = sample_problems(policy, probs, cfg, out)
    finally:
        policy.close()
    ks = tuple(k for k in (1, 4, 16, 64) if k <= cfg.n)
    typer.echo(json.dumps(accuracy_summary(sols, ks=ks)))


@_command(app)
def search(
    model: Annotated[str, typer.Option(help="Generator (the policy): a model directory or hub id.")],
    prm: Annotated[
        str, typer.Option(help="Process reward model that scores every prefix: a directory or hub id.")
    ],
    problems: Annotated[str, typer.Option(help="Problems: a world run dir, a JSONL path or a hub id.")],
    out: Annotated[
        Path | None,
        typer.Option(help="results.jsonl to write (one record per problem; appends and resumes)."),
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            help="Instead of one run: every search.compare_strategies x compare_budgets x compare_seeds "
            "into this folder, with search.png and the compute-matched table."
        ),
    ] = None,
    source: SourceOpt = "world",
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    trust_remote_code: TrustOpt = False,
    revision: RevisionOpt = None,
):
    """PRM-guided test-time search: the policy writes one step at a time (stopping at the step separator),
    the PRM scores each prefix, the search keeps the best.

    search.strategy: best_of_n (n whole solutions, the best by the PRM), beam_search (n beams; each of
    the n/beam_width kept beams is expanded by beam_width next steps, the best n/beam_width children by
    PRM prefix score are kept), dvts (n/beam_width independent subtrees, each keeping its best child).
    search.select picks the final answer among finished candidates (best_of_n, weighted_sc, majority) with
    search.aggregation of their step scores. Prints accuracy, sampled tokens and PRM calls per problem.
    """
    from prmkit.data import load_problems
    from prmkit.reward import load_reward_model
    from prmkit.search import build_search_policy, search_problems, summary

    if (out is None) == (compare is None):
        raise ValueError("search: give --out FILE (one run) or --compare DIR (the comparison), not both")
    cfg = _config("search", recipe, set_, **_hub(trust_remote_code, revision))
    probs = load_problems(source, problems, split=split, limit=limit)
    if not probs:
        raise ValueError(f"{problems}: no problems")
    scorer = load_reward_model(prm, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    if compare is not None:
        from prmkit.evaluate.search import run_comparison

        result = run_comparison(model, scorer, probs, cfg, compare, compare / "search.png", progress=True)
        typer.echo(result["table"])
        typer.echo(f"-> {compare / 'search.png'}")
        return
    policy = build_search_policy(model, cfg, probs[0].kind)
    try:
        records = search_problems(policy, scorer, probs, cfg, out)
    finally:
        policy.close()
    typer.echo(json.dumps({"strategy": cfg.strategy, "n": cfg.n, **summary(records)}))


@_command(app)
def annotate(
    model: Annotated[
        str, typer.Option(help="Completer: a model directory or hub id (usually the generator).")
    ],
    samples: Annotated[Path, typer.Option(help="samples.jsonl of the solutions to label.")],
    problems: Annotated[str, typer.Option(help="Their problems: a world run dir, a JSONL path or a hub id.")],
    out: Annotated[Path, typer.Option(help="labels.jsonl to write (appends and resumes).")],
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    limit: Annotated[
        int | None, typer.Option(help="Annotate only the first N solutions (after duplicates are removed).")
    ] = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    trust_remote_code: TrustOpt = False,
    revision: RevisionOpt = None,
    ray_workers: RayWorkersOpt = None,
    ray_address: RayAddressOpt = None,
):
    """Label every step by Monte-Carlo completions (Math-Shepherd hard/soft estimates).

    annotate.strategy: per_step (the paper), early_stop (stop a prefix at its first correct completion),
    binary_search (bisect for the first step with HE=0); annotate.n completions per prefix.
    """
    from prmkit.annotate import annotate as run_annotate
    from prmkit.data import load_problems
    from prmkit.io import read_jsonl
    from prmkit.sample import build_policy
    from prmkit.types import Solution

    cfg, ray = _with_ray(
        "annotate", recipe, set_, ray_workers, ray_address, **_hub(trust_remote_code, revision)
    )
    probs = load_problems(source, problems, split=split)
    sols = read_jsonl(samples, Solution)
    policy = build_policy(model, cfg, ray)
    try:
        labels = run_annotate(policy, sols, probs, cfg, out, limit=limit)
    finally:
        policy.close()
    done = [r for r in labels if not r.skipped]
    tokens = sum(r.meta.get("tokens", 0) for r in done)
    typer.echo(
        f"{len(done)} solutions labelled ({len(labels) - len(done)} skipped), {tokens} tokens -> {out}"
    )


@_command(app)
def export(
    labels: Annotated[Path, typer.Option(help="labels.jsonl from prmkit annotate.")],
    problems: Annotated[str, typer.Option(help="Their problems: a world run dir, a JSONL path or a hub id.")],
    out: Annotated[Path, typer.Option(help="Output: a JSONL file (math-shepherd) or a directory (trl).")],
    fmt: Annotated[
        str, typer.Option("--format", help="math-shepherd, or trl (stepwise_supervision dataset).")
    ] = "trl",
    label: Annotated[
        str, typer.Option(help="Which estimate becomes the label: hard, or soft (> 0.5).")
    ] = "hard",
    source: SourceOpt = "world",
    split: SplitOpt = "train",
):
    """Export step labels to Math-Shepherd's format or TRL's stepwise_supervision (a datasets dataset)."""
    from prmkit.data import export_labels, load_problems
    from prmkit.io import read_jsonl
    from prmkit.types import StepLabels

    n = export_labels(
        read_jsonl(labels, StepLabels), load_problems(source, problems, split=split), out, fmt, label
    )
    typer.echo(f"{n} labelled solutions -> {out}")


eval_app = typer.Typer(
    help="Evaluate a stage against the truth: annotation, verifier, best-of-N, ProcessBench; average demo runs over seeds.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


@_command(eval_app, "annotation")
def eval_annotation(
    labels: Annotated[Path, typer.Option(help="labels.jsonl from a per_step run (keeps every outcome).")],
    problems: Annotated[str, typer.Option(help="The world problems: a run dir or a problems JSONL.")],
    out_dir: Annotated[Path, typer.Option(help="Where annotation_quality.{md,json,png} go.")],
    split: SplitOpt = "train",
    ns: Annotated[str, typer.Option(help="Comma-separated N values to evaluate.")] = "1,2,4,8,16",
):
    """Hard/soft estimate quality against the world oracle, for each strategy and N (replayed exactly)."""
    from prmkit.data import load_problems
    from prmkit.evaluate.annotation import annotation_quality, plot_quality, render_table
    from prmkit.io import atomic_write_json, atomic_write_text, read_jsonl
    from prmkit.types import StepLabels

    rows = annotation_quality(
        read_jsonl(labels, StepLabels),
        load_problems("world", problems, split=split),
        tuple(int(x) for x in ns.split(",")),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    table = render_table(rows)
    atomic_write_json(out_dir / "annotation_quality.json", rows)
    atomic_write_text(out_dir / "annotation_quality.md", table + "\n")
    plot_quality(rows, out_dir / "annotation_quality.png")
    typer.echo(table)


train_app = typer.Typer(
    help="Train reward models on step labels: prm (a score per step) or orm (one score per solution).",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


def _train_reward(
    kind: str,
    labels: Path | None,
    problems: str,
    source: str,
    split: str,
    init: str | None,
    out: Path,
    recipe: Path | None,
    set_: list[str] | None,
    prm_scores: Path | None = None,
    samples: Path | None = None,
) -> None:
    from prmkit.data import load_problems
    from prmkit.io import read_jsonl, read_scores
    from prmkit.reward.train import outcome_labels, prm_supervised, train_reward, with_pool
    from prmkit.types import Solution, StepLabels, index_problems

    cfg = _verifier_config(kind, recipe, set_, init, problems)
    probs = index_problems(load_problems(source, problems, split=split))
    if labels is None and samples is None:
        raise ValueError(
            "give --labels (annotated solutions) or --samples (graded samples), or, for a prm, both"
        )
    if kind == "orm" and labels is not None and samples is not None:
        raise ValueError("orm: give either --labels or --samples, not both")
    if labels is None:
        records = outcome_labels(read_jsonl(samples, Solution))
    else:
        records = read_jsonl(labels, StepLabels)
        if samples is not None:
            records = with_pool(records, read_jsonl(samples, Solution))
    if prm_scores is not None:
        records = prm_supervised(records, read_scores(prm_scores))
    path = train_reward(cfg, records, probs, out)
    typer.echo(f"{kind} -> {path}")


LabelsOpt = Annotated[Path, typer.Option(help="labels.jsonl from prmkit annotate (StepLabels).")]
InitOpt = Annotated[
    str | None,
    typer.Option(
        help="Model to start from; default: the stage's init, else the run directory's verifier_lm "
        "(demo.verifier_init), else its generator."
    ),
]
RewardOutOpt = Annotated[Path, typer.Option(help="Output model directory (resumes from checkpoints).")]
ProblemsOpt = Annotated[str, typer.Option(help="Their problems: a world run dir, a JSONL path or a hub id.")]


@_command(train_app, "prm")
def train_prm(
    labels: LabelsOpt,
    problems: ProblemsOpt,
    out: RewardOutOpt,
    init: InitOpt = None,
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    samples: Annotated[
        Path | None,
        typer.Option(
            help="Graded samples.jsonl too: each one not in --labels is added with only its last step "
            "labelled, by its graded answer (the demo's demo.prm_data=pool)."
        ),
    ] = None,
):
    """Train a process reward model: P("+") at every step tag, against hard or soft labels.

    prm.label: hard (Math-Shepherd HE) or soft (SE, trained on the fractions); prm.first_error_only
    supervises steps up to the first bad one (PRM800K); prm.step_weight < 1 weighs every step but the
    last less in the loss (0: the last step only).
    """
    _train_reward("prm", labels, problems, source, split, init, out, recipe, set_, samples=samples)


@_command(train_app, "orm")
def train_orm(
    problems: ProblemsOpt,
    out: RewardOutOpt,
    init: InitOpt = None,
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    labels: Annotated[
        Path | None, typer.Option(help="labels.jsonl from prmkit annotate (StepLabels).")
    ] = None,
    samples: Annotated[
        Path | None, typer.Option(help="Or graded samples.jsonl: every sample labelled by its answer alone.")
    ] = None,
    prm_scores: Annotated[
        Path | None,
        typer.Option(
            help="scores.jsonl of a PRM: its solution score (min over steps) becomes the soft target."
        ),
    ] = None,
):
    """Train an outcome reward model: one target (the solution's correctness) at the last step tag.

    The solutions come from --labels (annotated) or --samples (any graded samples: an ORM needs no step
    labels, so it can learn from every sample, as Cobbe et al.'s verifiers do). With --prm-scores the
    target is a PRM's judgement instead of the graded answer (Lightman et al.'s ORM supervised by a
    large PRM)."""
    _train_reward("orm", labels, problems, source, split, init, out, recipe, set_, prm_scores, samples)


SamplesOpt = Annotated[Path, typer.Option(help="samples.jsonl of graded solutions (Solution.correct).")]


@_command(train_app, "value")
def train_value_cmd(
    samples: SamplesOpt,
    problems: ProblemsOpt,
    out: RewardOutOpt,
    init: Annotated[str | None, typer.Option(help="Model to start from; overrides value.init.")] = None,
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
):
    """Train a token-level value verifier (Cobbe et al. 2021): P(correct) at every solution token.

    Paper defaults: value.head=token (value.head=last = the solution-level verifier), value.lm_coef=1.0
    (auxiliary language-modelling loss), value.resid_dropout=0.2. Score with the value at each step's end.
    """
    from prmkit.data import load_problems
    from prmkit.io import read_jsonl
    from prmkit.reward.value import train_value
    from prmkit.types import Solution, index_problems

    cfg = _verifier_config("value", recipe, set_, init, problems)
    probs = index_problems(load_problems(source, problems, split=split))
    path = train_value(cfg, read_jsonl(samples, Solution), probs, out)
    typer.echo(f"value -> {path}")


@_command(train_app, "critique")
def train_critique_cmd(
    samples: SamplesOpt,
    problems: ProblemsOpt,
    out: RewardOutOpt,
    init: Annotated[str | None, typer.Option(help="Model to start from; overrides critique.init.")] = None,
    critiques: Annotated[
        Path | None,
        typer.Option(help="JSONL of {problem_id, sample_id, critique}; default: the world oracle's."),
    ] = None,
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
):
    """Math-Minos stage 1: fine-tune an LM to write step-level critiques (loss on the critique only).

    Stage 2 is ordinary ORM/PRM training from this output: prmkit train orm/prm --init OUT. Critiques
    come from the world oracle, or from --critiques for other problems.
    """
    from prmkit.data import load_problems
    from prmkit.io import read_jsonl
    from prmkit.reward.critique import load_critiques, train_critique
    from prmkit.types import Solution, index_problems

    cfg = _verifier_config("critique", recipe, set_, init, problems)
    probs = index_problems(load_problems(source, problems, split=split))
    given = load_critiques(critiques) if critiques else None
    path = train_critique(cfg, read_jsonl(samples, Solution), probs, out, given)
    typer.echo(f"critique model -> {path}")


@_command(app)
def score(
    model: Annotated[
        str,
        typer.Option(
            help="Reward model: a directory from prmkit train, or a hub id; likelihood:GENERATOR scores by"
            " the generator's own mean token log-prob (no training)."
        ),
    ],
    samples: Annotated[Path, typer.Option(help="samples.jsonl of the solutions to score.")],
    problems: ProblemsOpt,
    out: Annotated[Path, typer.Option(help="scores.jsonl to write (appends and resumes).")],
    source: SourceOpt = "world",
    split: SplitOpt = "test",
    batch_size: Annotated[int, typer.Option(help="Solutions per forward pass.")] = 16,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="A released PRM's format: prmkit, math-shepherd, qwen-prm, trl."),
    ] = None,
    trust_remote_code: TrustOpt = False,
    revision: RevisionOpt = None,
    ray_workers: RayWorkersOpt = None,
    ray_address: RayAddressOpt = None,
    backend: Annotated[
        str, typer.Option(help="hf, or vllm (a PRM/ORM on vLLM's engine: pip install 'prmkit[vllm]').")
    ] = "hf",
):
    """Score every step of every solution in one forward pass each: {problem_id, sample_id, scores}.

    A PRM gives P(good) per step; an ORM repeats its solution score at every step; a value verifier gives
    its value at each step's last token. Steps cut by the model's context length score NaN. Models trained
    by prmkit know their format; a released PRM needs --format (e.g. math-shepherd for
    peiyi9979/math-shepherd-mistral-7b-prm, qwen-prm for Qwen/Qwen2.5-Math-PRM-7B, which also needs
    --trust-remote-code: its reward head is Python code shipped in the repository). Where the model came
    from (a path, or a hub id and its commit) goes to OUT's .meta.json.
    """
    from prmkit.data import load_problems
    from prmkit.distributed import RayConfig
    from prmkit.io import read_jsonl
    from prmkit.reward import score_solutions
    from prmkit.types import Solution, index_problems

    ray = RayConfig(workers=ray_workers or 0, address=ray_address)
    probs = index_problems(load_problems(source, problems, split=split))
    sols = read_jsonl(samples, Solution)
    kw = {"format": fmt} if fmt else {}
    new, old = score_solutions(
        model, sols, probs, out, batch_size, origin=str(samples), trust_remote_code=trust_remote_code,
        revision=revision, ray=ray, backend=backend, **kw,
    )  # fmt: skip
    typer.echo(f"{new} solutions scored ({old} already done) -> {out}")


@_command(app, "serve")
def serve_cmd(
    model: Annotated[str, typer.Option(help="Reward model: a PRM, ORM or value directory, or a hub id.")],
    host: Annotated[str, typer.Option(help="Address to bind; other than 127.0.0.1 opens it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: a free one, printed at start).")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="PRMKIT_API_KEY", help="Require 'Authorization: Bearer KEY' on every route but /health."),
    ] = None,
    aggregation: Annotated[str, typer.Option(help="Step scores -> one reward: min, prod, last, mean.")] = "min",
    steps: Annotated[str, typer.Option(help="How texts split into steps: gsm8k (lines), math, sep:<s>.")] = "gsm8k",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="A released PRM's format: prmkit, math-shepherd, qwen-prm, trl."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Solutions per forward pass.")] = 16,
    max_batch: Annotated[int, typer.Option(help="Solutions of concurrent requests gathered per score call.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="How long a batch waits for more requests.")] = 5.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 past it).")] = 4 * 2**20,
    max_solutions: Annotated[int, typer.Option(help="Solutions (or queries) per request.")] = 256,
    max_steps: Annotated[int, typer.Option(help="Steps per solution.")] = 128,
    max_chars: Annotated[int, typer.Option(help="Characters per solution (question + steps, or a query).")] = 20_000,
    max_tokens: Annotated[int | None, typer.Option(help="Tokens per formatted solution (default: the model's context).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a request may wait for its scores (504 past it).")] = 60.0,
    response_marker: Annotated[str, typer.Option(help="/get_reward without prompts: the response follows the last one.")] = "\nAnswer:\n",
    question_regex: Annotated[str | None, typer.Option(help="/get_reward: group 1 of this regex in the prompt is the question.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's choice).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
):  # fmt: skip
    """Serve a reward model over HTTP: POST /score (per-step scores + an aggregated score), POST /get_reward
    (OpenRLHF's --remote_rm_url protocol), GET /health. Concurrent requests are batched into shared
    forward passes. See the README's "Serving a PRM" for request examples and the verl recipe.
    """
    try:
        from prmkit.serve import ServeConfig, run_server
    except ModuleNotFoundError as e:
        raise ValueError(f"prmkit serve needs {e.name}: pip install 'prmkit[serve]'") from None
    cfg = ServeConfig(
        aggregation=aggregation, steps=steps, batch_size=batch_size, max_batch=max_batch,
        max_wait_ms=max_wait_ms, max_body_bytes=max_body_bytes, max_solutions=max_solutions,
        max_steps=max_steps, max_chars=max_chars, max_tokens=max_tokens, timeout_s=timeout,
        api_key=api_key, response_marker=response_marker.replace("\\n", "\n"), question_regex=question_regex,
    )  # fmt: skip
    run_server(model, cfg, host, port, log_level, threads, **({"format": fmt} if fmt else {}))


@_command(eval_app, "verifier")
def eval_verifier(
    scores: Annotated[Path, typer.Option(help="scores.jsonl from prmkit score.")],
    samples: Annotated[Path, typer.Option(help="The scored samples.jsonl.")],
    problems: Annotated[str, typer.Option(help="The world problems: a run dir or a problems JSONL.")],
    split: SplitOpt = "test",
    threshold: Annotated[float, typer.Option(help="A step is judged good when its score is >= this.")] = 0.5,
):
    """A verifier against the world oracle: step accuracy, first-error F1, final-answer judgement accuracy."""
    from prmkit.data import load_problems
    from prmkit.evaluate.verifier import verifier_quality
    from prmkit.io import read_jsonl, read_scores
    from prmkit.types import Solution, index_problems

    probs = index_problems(load_problems("world", problems, split=split))
    result = verifier_quality(read_scores(scores), read_jsonl(samples, Solution), probs, threshold)
    typer.echo(json.dumps(result))


@_command(eval_app, "verifier-curve")
def eval_verifier_curve(
    labels: Annotated[Path, typer.Option(help="labels.jsonl of the training problems.")],
    problems: Annotated[str, typer.Option(help="The world run dir (train and test splits).")],
    samples: Annotated[Path, typer.Option(help="Test samples.jsonl to score.")],
    init: Annotated[str, typer.Option(help="Model the verifiers start from (usually the generator).")],
    out_dir: Annotated[Path, typer.Option(help="Where the models and verifier_curve.{json,md} go.")],
    fractions: Annotated[
        str, typer.Option(help="Comma-separated fractions of the labelled problems.")
    ] = "0.25,0.5,1",
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
):
    """PRM vs ORM trained on growing fractions of the labels, measured on the test pool against the oracle
    (step accuracy, first-error F1, final-answer judgement, best-of-N by min score)."""
    from prmkit.data import load_problems
    from prmkit.evaluate.report import curve_table
    from prmkit.evaluate.verifier import data_quantity_curve
    from prmkit.io import atomic_write_json, atomic_write_text, read_jsonl
    from prmkit.types import Solution, StepLabels, index_problems

    configs = dict(zip(("prm", "orm"), _configs(("prm", "orm"), recipe, set_), strict=True))
    rows = data_quantity_curve(
        read_jsonl(labels, StepLabels),
        index_problems(load_problems("world", problems, split="train")),
        read_jsonl(samples, Solution),
        index_problems(load_problems("world", problems, split="test")),
        init,
        out_dir,
        tuple(float(f) for f in fractions.split(",")),
        configs=configs,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "verifier_curve.json", rows)
    table = curve_table(rows)
    atomic_write_text(out_dir / "verifier_curve.md", table + "\n")
    typer.echo(table)


@_command(eval_app, "bon")
def eval_bon(
    samples: Annotated[Path, typer.Option(help="samples.jsonl: the pool, N_max samples per problem.")],
    problems: Annotated[str, typer.Option(help="Their problems: a world run dir, a JSONL path or a hub id.")],
    out_dir: Annotated[Path, typer.Option(help="Where bon.{json,md,png} and auc.json go.")],
    scores: Annotated[
        list[str] | None,
        typer.Option(help="NAME=scores.jsonl of a verifier (repeatable), e.g. prm=runs/w/scores_prm.jsonl."),
    ] = None,
    aggregations: Annotated[
        str, typer.Option(help="Step-score aggregations for best-of-N: min,prod,last,mean.")
    ] = "min",
    source: SourceOpt = "world",
    split: SplitOpt = "test",
    groups: Annotated[int, typer.Option(help="Resampled draws per N (the papers use 3).")] = 3,
    top_k: Annotated[int, typer.Option(help="K of top-K voting.")] = 3,
):
    """Best-of-N curves: majority voting, best-of-N and weighted self-consistency per verifier, top-K
    voting, and pass@N, for N = 1, 2, 4, ... N_max, averaged over resampled draws with 95 % intervals;
    and each verifier's within-problem AUC (how often a right sample outscores a wrong one of its problem)."""
    from prmkit.data import load_problems
    from prmkit.evaluate.bon import auc_rows, bon_report, plot_bon
    from prmkit.evaluate.report import auc_table
    from prmkit.io import atomic_write_json, atomic_write_text, read_jsonl, read_scores
    from prmkit.types import Solution, index_problems

    probs = index_problems(load_problems(source, problems, split=split))
    tables: dict[str, dict] = {}
    for item in scores or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--scores {item!r}: expected NAME=PATH")
        tables[name] = read_scores(path)
    sols, aggs = read_jsonl(samples, Solution), aggregations.split(",")
    rows, table = bon_report(sols, probs, tables, aggs, groups=groups, top_k=top_k)
    aucs = auc_rows(sols, tables, dict.fromkeys(tables, aggs))
    table += "\n\n" + "\n".join(
        auc_table({"pool": {"within_problem_auc": aucs, "problems": len({s.problem_id for s in sols})}})
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "bon.json", rows)
    atomic_write_json(out_dir / "auc.json", aucs)
    atomic_write_text(out_dir / "bon.md", table + "\n")
    plot_bon(rows, out_dir / "bon.png")
    typer.echo(table)


@_command(eval_app, "seeds")
def eval_seeds(
    runs: Annotated[
        list[Path], typer.Argument(help="Demo run directories (or their report.json), one per run seed.")
    ],
    out_dir: Annotated[Path, typer.Option(help="Where seeds.{json,md} and bon_seeds.png go.")] = Path(
        "runs/seeds"
    ),
):
    """Average whole demo runs (`prmkit demo --seed S`, one run directory each) into one report: every
    best-of-N row, within-problem AUC, RL and search number as the mean over runs with its 95 % t
    interval over runs, and the papers' orderings judged against those intervals."""
    from prmkit.evaluate.seeds import write_seeds

    write_seeds(runs, out_dir)
    typer.echo((out_dir / "seeds.md").read_text())


@_command(eval_app, "processbench")
def eval_processbench(
    data: Annotated[
        list[Path], typer.Option(help="ProcessBench JSON files, or a directory of them (repeatable).")
    ],
    model: Annotated[
        str | None, typer.Option(help="A PRM directory or hub id to score the steps with.")
    ] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Or a JSONL of {id, first_error} to evaluate.")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="A released PRM's format: prmkit, math-shepherd, qwen-prm, trl."),
    ] = None,
    threshold: Annotated[float, typer.Option(help="A step is wrong when its score is below this.")] = 0.5,
    pick_threshold: Annotated[
        bool, typer.Option(help="Pick the threshold on half of each subset; report on the other half.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Use N samples per file, spread evenly (files are ordered by label).")
    ] = None,
    trust_remote_code: TrustOpt = False,
    revision: RevisionOpt = None,
):
    """ProcessBench: accuracy on erroneous and on correct samples and their harmonic mean (F1), per subset
    and averaged."""
    from prmkit.evaluate.processbench import load_predictions, run_processbench

    files = sorted(f for d in data for f in ([*d.glob("*.json")] if d.is_dir() else [d]))
    if not files:
        raise ValueError(f"no ProcessBench .json files in {', '.join(map(str, data))}")
    rm = None
    if model:
        from prmkit.reward import load_reward_model

        kw = {"format": fmt} if fmt else {}
        rm = load_reward_model(model, trust_remote_code=trust_remote_code, revision=revision, **kw)
    preds = load_predictions(predictions) if predictions else None
    results = run_processbench(files, rm, preds, None if pick_threshold else threshold, limit)
    if rm is not None:
        results["model"] = rm.source
    typer.echo(json.dumps(results))


@_command(app, "import")
def import_labels(
    fmt: Annotated[str, typer.Argument(help="prm800k (stepwise rows) or math-shepherd (ки-tagged).")],
    input: Annotated[Path, typer.Option(help="The file to import (JSONL, or Parquet for prm800k).")],
    out_dir: Annotated[Path, typer.Option(help="Where problems.jsonl and labels.jsonl go.")],
    neutral: Annotated[
        str, typer.Option(help="prm800k: a neutral (0) rating is positive, negative or skip.")
    ] = "positive",
):
    """Turn step labels from elsewhere into prmkit's problems.jsonl + labels.jsonl, ready for
    `prmkit train prm --labels OUT/labels.jsonl --problems OUT/problems.jsonl --source problems`."""
    from prmkit.data import IMPORTERS
    from prmkit.io import write_jsonl

    if fmt not in IMPORTERS:
        raise ValueError(f"unknown import format {fmt!r}; valid: {', '.join(IMPORTERS)}")
    problems, labels = IMPORTERS[fmt](input, neutral=neutral)
    write_jsonl(out_dir / "problems.jsonl", problems)
    write_jsonl(out_dir / "labels.jsonl", labels)
    typer.echo(f"{len(problems)} problems, {len(labels)} labelled solutions -> {out_dir}")


@_command(app)
def demo(
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="Recipe YAML.")] = Path("recipes/world.yaml"),
    run_dir: Annotated[Path, typer.Option(help="Run directory (resumes if it exists).")] = Path("runs/world"),
    set_: SetOpt = None,
    seed: Annotated[
        int,
        typer.Option(
            help="Run seed, added to every stage's seed (world, sft, sampling, annotation, verifiers, RL, "
            "search): one independent run per seed, each in its own --run-dir; `prmkit eval seeds` "
            "averages their reports.",
        ),
    ] = 0,
):
    """Run the main job: problems -> sft -> sample a train pool -> annotate -> train PRM, ORM, value verifier
    -> sample the test pool -> score -> best-of-N curves -> RL (RFT, outcome and process PPO) -> report.md,
    report.json and plots. Resumable: finished stages are skipped.

    The default recipe is the synthetic world (recipes/world.yaml, 16-24 min on a quiet 2-core CPU, two workers);
    recipes/world-quick.yaml is a one-minute smoke run, recipes/gsm8k.yaml the real-data version for a GPU.
    """
    from prmkit.config import load_recipe
    from prmkit.pipeline import reseed, run_demo

    report = run_demo(reseed(load_recipe(recipe, set_), seed), run_dir)
    typer.echo((run_dir / "report.md").read_text())
    total = sum(report["timings"].values())
    typer.echo(
        f"report: {run_dir / 'report.md'} ({report['wall_seconds']:.0f} s wall, {total:.0f} s of stage time)"
    )


rl_app = typer.Typer(
    help="Reinforcement learning on a generator: ppo (step-by-step with a PRM, or outcome), grpo and rft.",
    no_args_is_help=True,
)
app.add_typer(rl_app, name="rl")


@_command(rl_app, "ppo")
def rl_ppo(
    policy: PolicyOpt,
    problems: TrainProblemsOpt,
    out: RLOutOpt,
    reward_model: RewardModelOpt = None,
    reward: Annotated[
        str | None,
        typer.Option(
            help="process (PRM score per step), outcome (final score) or answer (graded); ppo.reward."
        ),
    ] = None,
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    limit: LimitOpt = None,
    eval_problems: EvalProblemsOpt = None,
    eval_split: EvalSplitOpt = "test",
    eval_limit: EvalLimitOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
):
    """PPO on a generator (Math-Shepherd's step-by-step PPO): rewards at the end of every step from a PRM
    (--reward process), or one final reward from an ORM (outcome) or the graded answer (answer), minus a
    per-token KL penalty to the starting policy (ppo.kl_coef, paper 0.04).

    Per-iteration reward, KL, entropy, clip fraction, value loss and greedy accuracy go to
    OUT.checkpoints/metrics.jsonl (copied into OUT); a killed run resumes from its last checkpoint
    (ppo.save_every), with the settings it started with. OUT is an ordinary model directory: sample it
    with prmkit sample --model OUT.
    """
    from prmkit.rl import train_ppo

    cfg = _config("ppo", recipe, set_, reward_model=reward_model, reward=reward, eval_problems=eval_limit)
    _policy_rl("ppo", train_ppo, cfg, policy, problems, out, source, split, limit, eval_problems, eval_split)


def _policy_rl(name, train, cfg, policy, problems, out, source, split, limit, eval_problems, eval_split):
    """``prmkit rl ppo`` / ``grpo`` after their config: load the problems, train, say where it went."""
    from prmkit.data import load_problems

    probs = load_problems(source, problems, split=split, limit=limit)
    if eval_problems is None and source == "world" and Path(problems).is_dir():
        eval_problems = problems
    evals = None
    if eval_problems is not None and cfg.eval_problems > 0:
        evals = load_problems(source, eval_problems, split=eval_split, limit=cfg.eval_problems)
    path = train(cfg, policy, probs, out, eval_problems=evals)
    summary = json.loads((path / "prmkit_rl.json").read_text(encoding="utf-8"))
    start, end = summary.get("greedy_accuracy_start"), summary.get("greedy_accuracy_end")
    acc = f", greedy accuracy {start:.1%} -> {end:.1%}" if start is not None and end is not None else ""
    typer.echo(f"{name} ({cfg.reward}) {summary['iterations']} iterations{acc} -> {path}")


@_command(rl_app, "grpo")
def rl_grpo(
    policy: PolicyOpt,
    problems: TrainProblemsOpt,
    out: RLOutOpt,
    reward_model: RewardModelOpt = None,
    reward: Annotated[
        str | None,
        typer.Option(
            help="process (PRM step scores normalised over the group's steps), outcome (final score) or "
            "answer (graded); grpo.reward."
        ),
    ] = None,
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    limit: LimitOpt = None,
    eval_problems: EvalProblemsOpt = None,
    eval_split: EvalSplitOpt = "test",
    eval_limit: EvalLimitOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
):
    """GRPO on a generator (DeepSeekMath): no critic; grpo.samples_per_problem samples per problem form a
    group and each is judged against the group. --reward outcome (ORM score) or answer (graded): the
    sample's reward minus the group mean, over the group std, on every token. --reward process (PRM): each
    step's score normalised over all steps of the group, a token's advantage the sum over the steps ending
    at or after it. Clipped as PPO, plus a k3 KL loss to the starting policy (grpo.kl_coef, paper 0.04).
    --set grpo.dynamic_sampling=true (DAPO) keeps only groups whose rewards differ and draws more
    problems, up to grpo.max_draws rounds an iteration, until the batch is full of them.

    Per-iteration reward, KL, entropy, clip fraction, the fraction of groups with equal rewards (no
    signal) and greedy accuracy go to OUT.checkpoints/metrics.jsonl (PPO's format, copied into OUT); a
    killed run resumes from its last checkpoint (grpo.save_every), with the settings it started with. OUT
    is an ordinary model directory.
    """
    from prmkit.rl import train_grpo

    cfg = _config("grpo", recipe, set_, reward_model=reward_model, reward=reward, eval_problems=eval_limit)
    _policy_rl(
        "grpo", train_grpo, cfg, policy, problems, out, source, split, limit, eval_problems, eval_split
    )


@_command(rl_app, "rft")
def rl_rft(
    generator: Annotated[
        str, typer.Option(help="Generator to sample from and fine-tune (a model directory).")
    ],
    problems: Annotated[
        str, typer.Option(help="Training problems: a world run dir, a JSONL path or a hub id.")
    ],
    out: Annotated[Path, typer.Option(help="Output model directory (resumes from OUT.checkpoints).")],
    source: SourceOpt = "world",
    split: SplitOpt = "train",
    limit: LimitOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
):
    """Rejection-sampling fine-tuning (Math-Shepherd's RL baseline): sample rft.k solutions per training
    problem at rft.temperature, keep the distinct correct ones (and the reference solution), fine-tune the
    generator on them. Sampling and fine-tuning both resume after a kill.
    """
    from prmkit.data import load_problems
    from prmkit.rl import train_rft

    cfg = _config("rft", recipe, set_)
    path = train_rft(cfg, generator, load_problems(source, problems, split=split, limit=limit), out)
    stats = json.loads((path / "prmkit_rl.json").read_text(encoding="utf-8"))
    typer.echo(
        f"rft: {stats.get('distinct_correct', 0)} distinct correct solutions of {stats.get('samples', 0)} "
        f"samples, {stats.get('examples', 0)} training examples -> {path}"
    )


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m prmkit.cli` (used under torchrun)
    main()
