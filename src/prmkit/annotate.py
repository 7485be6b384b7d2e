"""Automatic process annotation (Math-Shepherd): step labels from Monte-Carlo completions.

For a solution's step prefix ``s_1..s_i``, a completer (any policy) samples N continuations; each is
graded against the gold answer with the one grader. The hard estimate HE_i is 1 when any reaches the
gold answer, the soft estimate SE_i the fraction that do (Wang et al. 2024, eq. 3-4).

Strategies (``AnnotateConfig.strategy``):

- ``per_step``: the paper's method, N completions from every step prefix.
- ``early_stop``: completions in rounds (1, 1, 2, 4, ... up to N); a prefix stops at its first correct
  completion. HE is unchanged; SE is kept only where all N were drawn (``meta.se_complete``).
- ``binary_search``: bisection for the first prefix with HE = 0 (OmegaPRM, Luo et al. 2024), each
  probe early-stopped, assuming a wrong step is never recovered from. Steps before it are labelled 1,
  the rest 0 (PRM800K's first-error convention); ``meta.probed`` says which prefixes were sampled.

Departures: the last step's label is the solution's own graded answer (no completion can change it),
and under ``binary_search`` a solution whose final answer is right is labelled all-positive without
probes (as OmegaPRM does). Completions of one prefix share its prefill in the ``hf`` backend. Each
record keeps the per-completion outcomes (``meta.outcomes``: 1/0 per completion, in draw order) and
token counts, so ``evaluate.annotation`` can replay smaller N and other strategies exactly.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from prmkit.grading import extract_answer, grade_answer
from prmkit.io import open_appender, read_jsonl, write_source
from prmkit.models import format_prompt
from prmkit.policy import Policy
from prmkit.sample import check_sampling, output_config
from prmkit.steps import SEPARATORS, join_steps
from prmkit.types import Problem, Solution, SolutionKey, StepLabels, index_problems, solution_key

ANNOTATION_STRATEGIES = ("per_step", "early_stop", "binary_search")


@dataclass(frozen=True)
class AnnotateConfig:
    strategy: str = "per_step"
    n: int = 8
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 160
    batch_size: int = 64
    calculator: bool = True
    backend: str = "hf"
    chunk: int = 16  # solutions annotated together (one batch of work, appended together)
    dedupe: bool = True
    seed: int = 0
    trust_remote_code: bool = False  # run Python code shipped with the completer (a hub model's auto_map)
    revision: str | None = None  # pin the completer's hub id to a branch, tag or commit

    def __post_init__(self):
        if self.strategy not in ANNOTATION_STRATEGIES:
            raise ValueError(
                f"annotate.strategy: unknown {self.strategy!r}; valid: {', '.join(ANNOTATION_STRATEGIES)}"
            )
        check_sampling(self, "annotate")


def early_stop_rounds(n: int) -> list[int]:
    """Completions drawn per round under early stopping: 1, 1, 2, 4, ... summing to n.

    >>> early_stop_rounds(8), early_stop_rounds(5), early_stop_rounds(1)
    ([1, 1, 2, 4], [1, 1, 2, 1], [1])
    """
    rounds, total = [], 0
    while total < n:
        k = min(max(1, total), n - total)
        rounds.append(k)
        total += k
    return rounds


@dataclass
class Probe:
    """Completions drawn from one step prefix: outcomes (1 = reached the gold answer) and tokens."""

    prompt: str
    gold: str
    kind: str
    outcomes: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    empty: int = 0

    @property
    def hard(self) -> int:
        return int(any(self.outcomes))


@dataclass
class Bisection:
    """The search for a solution's first bad prefix: ``lo`` is known good (-1: the question alone),
    ``hi`` known bad (at first the last step, whose answer is wrong). Done when they are adjacent."""

    lo: int
    hi: int

    @property
    def done(self) -> bool:
        return self.hi - self.lo <= 1

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2

    def update(self, good: bool) -> None:
        if good:
            self.lo = self.mid
        else:
            self.hi = self.mid


def prefix_prompt(question: str, steps: list[str], kind: str) -> str:
    """The text a completer continues from: the question prompt, the first steps, a step separator."""
    return format_prompt(question) + join_steps(steps, kind) + SEPARATORS.get(kind, "\n")


def run_probes(
    policy: Policy, probes: list[Probe], n: int, early_stop: bool, cfg: AnnotateConfig, seed: int
) -> None:
    """Draw up to ``n`` completions per probe, in early-stopping rounds or all at once."""
    rounds = early_stop_rounds(n) if early_stop else [n]
    for r, k in enumerate(rounds):
        live = [p for p in probes if not (early_stop and p.hard)]
        if not live:
            return
        rows = policy.generate(
            [p.prompt for p in live],
            n=k,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=seed * 7919 + r,
        )
        for p, completions in zip(live, rows, strict=True):
            for c in completions:
                text = c.text.strip()
                p.empty += not text
                ok = bool(text) and grade_answer(extract_answer(text, p.kind), p.gold, p.kind)
                p.outcomes.append(int(ok))
                p.tokens.append(c.n_tokens)


def final_correct(sol: Solution, problem: Problem) -> bool:
    """The solution's own answer graded against the gold (regraded: samples may come from elsewhere)."""
    return grade_answer(
        extract_answer(join_steps(sol.steps, problem.kind), problem.kind), problem.answer, problem.kind
    )


def _label_record(sol: Solution, probes: dict[int, Probe], final: int, cfg: AnnotateConfig) -> StepLabels:
    """Assemble a StepLabels record from the probes drawn for one solution."""
    n_steps = len(sol.steps)
    hard: list[int | None] = [None] * n_steps
    soft: list[float | None] = [None] * n_steps
    complete = [False] * n_steps
    for i, p in probes.items():
        hard[i] = p.hard
        complete[i] = len(p.outcomes) == cfg.n
        if complete[i]:
            soft[i] = sum(p.outcomes) / cfg.n
    hard[-1], soft[-1], complete[-1] = final, float(final), True
    if cfg.strategy == "binary_search":  # fill in by the no-recovery assumption
        first = next((i for i in range(n_steps) if hard[i] == 0), n_steps)
        hard = [int(i < first) for i in range(n_steps)]
    first_error = next((i for i, h in enumerate(hard) if h == 0), -1)
    empty = sum(p.empty for p in probes.values())
    if probes and empty == sum(len(p.outcomes) for p in probes.values()):
        return _skip(sol, "completer returned empty text for every completion")
    meta = {
        "strategy": cfg.strategy,
        "n": cfg.n,
        "n_completions": [len(probes[i].outcomes) if i in probes else 0 for i in range(n_steps)],
        "tokens": sum(sum(p.tokens) for p in probes.values()),
        "probed": [i in probes for i in range(n_steps)],
        "se_complete": complete,
        "first_error": first_error,
        "outcomes": [probes[i].outcomes if i in probes else [] for i in range(n_steps)],
        "completion_tokens": [probes[i].tokens if i in probes else [] for i in range(n_steps)],
    }
    if empty:
        meta["empty_completions"] = empty
    return StepLabels(
        sol.problem_id,
        sol.sample_id,
        list(sol.steps),
        hard,
        soft,
        source="mc",
        final_correct=bool(final),
        meta=meta,
    )


def annotate_chunk(
    policy: Policy, sols: list[Solution], problems: dict[str, Problem], cfg: AnnotateConfig, seed: int
) -> list[StepLabels]:
    """Label a chunk of (valid) solutions together, batching their probes into shared generate calls."""
    finals = {s.key: int(final_correct(s, problems[s.problem_id])) for s in sols}

    def probe(s: Solution, i: int) -> Probe:
        p = problems[s.problem_id]
        return Probe(prefix_prompt(p.question, s.steps[: i + 1], p.kind), p.answer, p.kind)

    drawn: dict[SolutionKey, dict[int, Probe]] = {s.key: {} for s in sols}
    if cfg.strategy in ("per_step", "early_stop"):
        for s in sols:
            drawn[s.key] = {i: probe(s, i) for i in range(len(s.steps) - 1)}
        all_probes = [p for d in drawn.values() for p in d.values()]
        run_probes(policy, all_probes, cfg.n, cfg.strategy == "early_stop", cfg, seed)
    else:  # bisect every wrong solution at once, one level per round of probes
        by_key = {s.key: s for s in sols}
        searches = {s.key: Bisection(-1, len(s.steps) - 1) for s in sols if not finals[s.key]}
        level = 0
        while active := {k: b for k, b in searches.items() if not b.done}:
            batch = {k: probe(by_key[k], b.mid) for k, b in active.items()}
            run_probes(policy, list(batch.values()), cfg.n, True, cfg, seed + 1000 * level)
            for k, p in batch.items():
                drawn[k][active[k].mid] = p
                active[k].update(bool(p.hard))
            level += 1
    return [_label_record(s, drawn[s.key], finals[s.key], cfg) for s in sols]


def _skip(sol: Solution, reason: str) -> StepLabels:
    n = len(sol.steps)
    return StepLabels(sol.problem_id, sol.sample_id, list(sol.steps), [None] * n, [None] * n, skipped=reason)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def select_solutions(sols: list[Solution], dedupe: bool) -> tuple[list[Solution], int]:
    """Solutions to annotate: duplicates (same text up to whitespace, per problem) removed."""
    if not dedupe:
        return sols, 0
    seen: dict[str, set[str]] = defaultdict(set)
    out = []
    for s in sols:
        key = _normal(s.text)
        if key not in seen[s.problem_id]:
            seen[s.problem_id].add(key)
            out.append(s)
    return out, len(sols) - len(out)


def annotate(
    policy: Policy,
    solutions: list[Solution],
    problems: list[Problem],
    cfg: AnnotateConfig,
    out_path: str | Path,
    limit: int | None = None,
    progress: bool = True,
) -> list[StepLabels]:
    """Annotate ``solutions`` into ``out_path`` (append per chunk, resume by solution key)."""
    by_id = index_problems(problems)
    todo, n_dupes = select_solutions(solutions, cfg.dedupe)
    todo = todo[:limit] if limit else todo
    # chunks have fixed bounds and one seed each, and a chunk's records go out in one write, so a
    # resumed run (which redoes a chunk whose write a kill cut short) labels exactly as an uninterrupted one
    position = {s.key: i for i, s in enumerate(todo)}
    starts = range(0, len(todo), cfg.chunk)
    units = [[s.key for s in todo[i : i + cfg.chunk]] for i in starts]
    writer, done = open_appender(
        out_path, key=solution_key, units=units,
        config=output_config(policy, cfg),
    )  # fmt: skip
    left = sum(s.key not in done for s in todo)
    if left:
        write_source(out_path, getattr(policy, "source", {}))
    bar = None
    if progress and left:
        from tqdm.auto import tqdm

        bar = tqdm(total=left, desc=f"annotating ({cfg.strategy}, N={cfg.n})", unit="solution")
    with writer:
        for start in starts:
            chunk = [s for s in todo[start : start + cfg.chunk] if s.key not in done]
            if not chunk:
                continue
            records, valid = {}, []
            for s in chunk:
                p = by_id.get(s.problem_id)
                if p is None:
                    records[s.key] = _skip(s, f"problem {s.problem_id} not found")
                elif not p.answer.strip():
                    records[s.key] = _skip(s, "problem has no gold answer")
                elif not s.steps:
                    records[s.key] = _skip(s, "solution has no steps")
                else:
                    valid.append(s)
            if valid:
                seed = cfg.seed * 1_000_003 + position[valid[0].key]
                labels = annotate_chunk(policy, valid, by_id, cfg, seed)
                records |= {s.key: r for s, r in zip(valid, labels, strict=True)}
            writer.write_many(records[s.key] for s in chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if n_dupes and progress:
        print(f"annotate: skipped {n_dupes} duplicate solutions")
    return read_jsonl(out_path, StepLabels)
