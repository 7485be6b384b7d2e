"""The sampling stage: N solutions per problem into ``samples.jsonl``, graded, split into steps.

Problems are sampled in chunks of fixed bounds (``chunk`` problems from the start of the list, one
seed per chunk) and a finished chunk's solutions are appended in one write. A killed run resumes at
the first chunk without samples; a chunk whose write the kill cut short is removed and sampled again
whole, so a resumed run writes exactly what an uninterrupted one does.

Also the accuracy summary the papers report for a pool of samples: mean accuracy, and pass@k with
the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from math import comb
from pathlib import Path

from prmkit.grading import extract_answer, grade_answer
from prmkit.io import open_appender, read_jsonl, write_source
from prmkit.models import check_hub_fields, format_prompt
from prmkit.policy import Policy, make_policy, policy_names
from prmkit.steps import split_steps
from prmkit.types import Problem, Solution, solution_key


@dataclass(frozen=True)
class SampleConfig:
    backend: str = "hf"
    n: int = 16
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 64
    calculator: bool = True
    chunk: int = 64  # problems per append
    seed: int = 0
    trust_remote_code: bool = False  # run Python code shipped with the model (a hub model's auto_map)
    revision: str | None = None  # pin a hub model id to a branch, tag or commit

    def __post_init__(self):
        check_sampling(self, "sample")


def check_sampling(cfg, stage: str) -> None:
    """Validate the sampling fields a stage config shares with ``SampleConfig`` (backend, n, ...)."""
    if cfg.backend not in policy_names():
        raise ValueError(f"{stage}.backend: unknown {cfg.backend!r}; valid: {', '.join(policy_names())}")
    if min(cfg.n, cfg.batch_size, cfg.chunk, cfg.max_new_tokens) < 1:
        raise ValueError(f"{stage}: n, batch_size, chunk and max_new_tokens must be >= 1")
    if cfg.temperature < 0 or not 0 < cfg.top_p <= 1:
        raise ValueError(f"{stage}: temperature must be >= 0 and top_p in (0, 1]")
    check_hub_fields(cfg, stage)


def make_solution(problem: Problem, sample_id: int, text: str, meta: dict | None = None) -> Solution:
    """A graded, step-split solution record for one completion."""
    kind = problem.kind
    pred = extract_answer(text, kind)
    return Solution(
        problem_id=problem.id,
        sample_id=sample_id,
        text=text,
        steps=split_steps(text, kind),
        answer=pred,
        correct=grade_answer(pred, problem.answer, kind),
        meta=meta or {},
    )


def output_config(policy: Policy, cfg) -> dict:
    """What determines the records a sampling config writes: its fields but the batch size (a speed
    knob), and the policy's model (``source``; none for a model object in memory)."""
    fields = {k: v for k, v in asdict(cfg).items() if k != "batch_size"}
    return {**fields, "model": getattr(policy, "source", {})}


def build_policy(model: str, cfg, ray=None) -> Policy:
    """The policy a sampling config (``SampleConfig``, ``AnnotateConfig``) names, for a model path or id;
    with an enabled ``distributed.RayConfig``, one whose calls run sharded on Ray workers."""
    kwargs = dict(
        calculator=cfg.calculator,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        trust_remote_code=cfg.trust_remote_code,
        revision=cfg.revision,
    )
    if ray is not None and ray.enabled:
        from prmkit.distributed import RayPolicy

        return RayPolicy(cfg.backend, model, ray, **kwargs)
    return make_policy(cfg.backend, model, **kwargs)


def sample_problems(
    policy: Policy, problems: list[Problem], cfg: SampleConfig, out_path: str | Path, progress: bool = True
) -> list[Solution]:
    """Sample ``cfg.n`` solutions per problem into ``out_path`` (resuming), return all of them. The file
    is claimed for the model and the settings (``io.claim_output``): resuming it with others is refused."""
    starts = range(0, len(problems), cfg.chunk)
    units = [[(p.id, i) for p in problems[s : s + cfg.chunk] for i in range(cfg.n)] for s in starts]
    writer, done = open_appender(
        out_path,
        key=solution_key,
        units=units,
        config=output_config(policy, cfg),
    )
    done_problems = {pid for pid, _ in done}
    todo = sum(p.id not in done_problems for p in problems)
    if todo:
        write_source(out_path, getattr(policy, "source", {}))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=todo * cfg.n, desc=f"sampling {Path(out_path).name}", unit="sample")
    with writer:
        for start in starts:
            chunk = [p for p in problems[start : start + cfg.chunk] if p.id not in done_problems]
            if not chunk:
                continue
            rows = policy.generate(
                [format_prompt(p.question) for p in chunk],
                n=cfg.n,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_new_tokens=cfg.max_new_tokens,
                seed=cfg.seed * 1_000_003 + start,  # the chunk's, the same on resume
            )
            writer.write_many(
                make_solution(p, i, c.text, {"n_tokens": c.n_tokens, "finish": c.finish_reason})
                for p, completions in zip(chunk, rows, strict=True)
                for i, c in enumerate(completions)
            )
            if bar is not None:
                bar.update(len(chunk) * cfg.n)
    if bar is not None:
        bar.close()
    return read_samples(out_path, problems)


def read_samples(path: str | Path, problems: list[Problem]) -> list[Solution]:
    """The samples of ``problems`` in a samples file, in file order (what ``sample_problems`` returns)."""
    wanted = {p.id for p in problems}
    return [s for s in read_jsonl(path, Solution) if s.problem_id in wanted]


def greedy_accuracy(
    model: str | Path, problems: list[Problem], cfg: SampleConfig, out_path: str | Path
) -> float:
    """Accuracy of one greedy (T=0) solution per problem from ``model``, sampled into ``out_path`` (resumes)."""
    greedy = replace(cfg, n=1, temperature=0.0)
    solutions = sample_problems(build_policy(str(model), greedy), problems, greedy, out_path)
    return accuracy_summary(solutions, ks=())["accuracy"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def accuracy_summary(solutions: list[Solution], ks: tuple[int, ...] = (1, 4, 16)) -> dict[str, float]:
    """Mean accuracy over all samples and mean pass@k over problems (k up to the samples per problem)."""
    by_problem: dict[str, list[bool]] = defaultdict(list)
    for s in solutions:
        by_problem[s.problem_id].append(bool(s.correct))
    if not by_problem:
        raise ValueError("accuracy_summary: no solutions")
    n_min = min(len(v) for v in by_problem.values())
    out = {
        "problems": len(by_problem),
        "samples": len(solutions),
        "accuracy": sum(map(sum, by_problem.values())) / len(solutions),
    }
    for k in ks:
        if k <= n_min:
            out[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in by_problem.values()) / len(
                by_problem
            )
    return out
