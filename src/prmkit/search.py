"""PRM-guided test-time search: best-of-N, step-level beam search and diverse verifier tree search.

Every strategy is ``fn(problems, config, policy, prm) -> list[SearchResult]`` in ``STRATEGIES`` (the
interface of Hugging Face's search-and-learn), and all three run on one step-wise engine:

- ``best_of_n``: ``n`` independent solutions, scored once when finished (``n`` PRM calls a problem);
- ``beam_search``: ``n`` beams in flight; each of the ``K = n / M`` kept beams is expanded by ``M``
  (``beam_width``) sampled next steps, every child is scored by the PRM as a prefix, the best ``K``
  are kept (Snell et al. 2024; search-and-learn's ``beam_search``);
- ``dvts``: diverse verifier tree search (Beeching et al. 2024): ``K = n / M`` independent subtrees,
  each expanding its one kept beam by ``M`` next steps and keeping its best, so one strong prefix cannot
  take over every beam.

A step ends at the step separator (``steps.SEPARATORS``: a line for GSM8K and the world): the step-level
strategies need a policy built with that stop string (``build_search_policy``). Best-of-N needs no stop
and samples whole solutions. A child whose step is the final answer (``####`` for gsm8k, ``\\boxed`` for
math) or that ended with EOS is finished; finished children leave the beam and all of them are
candidates at the end, where ``select`` (``verify.choose``: best_of_n, weighted_sc, majority) picks the
answer among them with the ``aggregation`` of their step scores.

Departures from search-and-learn: the first step expands the question once into ``n`` children (one
shared prefill) rather than ``n`` copies of the prompt; finished children that did not make the top K
still count as candidates (they cost their tokens already); there is no ``lookahead``. A beam whose
tokens reach ``max_new_tokens`` (checked after each step, so it may overshoot by one step) or that has
taken ``max_steps`` steps is finished as it stands, and graded as any text is.

Cost accounting per problem: ``tokens`` (sampled, the compute axis of the compute-matched comparison),
``prm_calls`` (prefixes scored; identical prefixes within a problem are scored once), and
``encoded_tokens`` (prompt tokens the policy prefilled, counted with its tokenizer when it has one).
Identical live prefixes are expanded in one request (``n`` = M x copies), so shared work is neither
sampled nor encoded twice; the ``hf`` backend still re-encodes each distinct prefix at every step (its
KV cache lives for one ``generate`` call), where ``vllm``'s prefix caching reuses it across steps.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prmkit.grading import extract_answer, grade_answer
from prmkit.models import format_prompt
from prmkit.steps import separator, split_steps
from prmkit.types import Problem
from prmkit.verify import AGGREGATIONS, Candidate, aggregate, choose

SELECTIONS = ("best_of_n", "weighted_sc", "majority")
STRATEGY_NAMES = ("best_of_n", "beam_search", "dvts")


@dataclass(frozen=True)
class SearchConfig:
    strategy: str = "beam_search"  # best_of_n, beam_search, dvts
    n: int = 8  # budget: candidates (best-of-N), beams in flight (beam search, DVTS: n / beam_width trees)
    beam_width: int = 4  # M: next steps sampled from each kept beam
    select: str = "best_of_n"  # the final pick among finished candidates: best_of_n, weighted_sc, majority
    aggregation: str = "last"  # a prefix's score from its step scores (search-and-learn's "last")
    temperature: float = 0.7
    top_p: float = 1.0
    step_tokens: int = 64  # most tokens of one step
    max_new_tokens: int = 256  # most tokens of a whole solution
    max_steps: int = 16
    backend: str = "hf"
    batch_size: int = 64
    score_batch_size: int = 64
    calculator: bool = True
    chunk: int = 16  # problems searched together and appended in one write
    seed: int = 0
    trust_remote_code: bool = False
    revision: str | None = None
    # the demo's compute-matched comparison (pipeline.search_job); compare_problems 0 switches it off
    compare_problems: int = 50
    compare_budgets: tuple[int, ...] = (4, 16)
    compare_seeds: int = 3
    compare_strategies: tuple[str, ...] = STRATEGY_NAMES

    def __post_init__(self):
        from prmkit.models import check_hub_fields
        from prmkit.policy import policy_names

        for name, value, valid in (
            ("strategy", self.strategy, STRATEGY_NAMES),
            ("select", self.select, SELECTIONS),
            ("aggregation", self.aggregation, AGGREGATIONS),
            ("backend", self.backend, tuple(policy_names())),
        ):
            if value not in valid:
                raise ValueError(f"search.{name}: unknown {value!r}; valid: {', '.join(valid)}")
        unknown = sorted(set(self.compare_strategies) - set(STRATEGY_NAMES))
        if unknown:
            raise ValueError(
                f"search.compare_strategies: unknown {unknown[0]!r}; valid: {', '.join(STRATEGY_NAMES)}"
            )
        counts = (self.n, self.beam_width, self.step_tokens, self.max_new_tokens, self.max_steps,
                  self.batch_size, self.score_batch_size, self.chunk, self.compare_seeds)  # fmt: skip
        if min(counts) < 1 or self.compare_problems < 0 or not all(b >= 1 for b in self.compare_budgets):
            raise ValueError("search: n, beam_width, token and step limits, batch sizes, chunk, compare_seeds "
                             "and compare_budgets must be >= 1 (compare_problems >= 0)")  # fmt: skip
        if self.strategy != "best_of_n":
            check_budget(self.n, self.beam_width, "search.n")
        if self.compare_problems and set(self.compare_strategies) - {"best_of_n"}:
            for n in self.compare_budgets:
                check_budget(n, self.beam_width, "search.compare_budgets")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("search: temperature must be >= 0 and top_p in (0, 1]")
        check_hub_fields(self, "search")


def check_budget(n: int, width: int, what: str) -> None:
    if n < width or n % width:
        raise ValueError(f"{what}: {n} is not a multiple of beam_width {width} (beams = budget / beam_width)")


@dataclass
class Beam:
    """A partial solution: the raw text so far (what the policy continues), its steps and their scores."""

    problem: int  # index into the problems being searched
    tree: int = 0  # subtree (DVTS), 0 for one beam
    text: str = ""
    steps: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    tokens: int = 0  # sampled along this beam's path
    finish: str = ""  # "" while live; eos, answer, length or steps once finished


@dataclass(frozen=True)
class SearchResult:
    """One problem's outcome: the pick, what it cost, and every finished candidate."""

    problem_id: str
    strategy: str
    answer: str | None
    correct: bool
    text: str
    tokens: int  # sampled tokens for this problem
    prm_calls: int  # prefixes (or solutions) scored
    encoded_tokens: int | None  # prompt tokens prefilled (None: the policy has no tokenizer to count them)
    seconds: float  # wall time, the chunk's divided among its problems
    candidates: list[dict[str, Any]]  # {text, answer, correct, scores, finish, tokens}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(children: list[Beam], keep: int, how: str) -> tuple[list[Beam], list[Beam]]:
    """One tree's selection after a step: (live beams to expand, finished candidates). The ``keep``
    best children by aggregated prefix score are selected (ties: the earlier child); the selected
    unfinished ones go on; every finished child is a candidate, selected or not.

    >>> kids = [Beam(0, scores=[0.9, s], finish=f) for s, f in ((0.2, ""), (0.8, "eos"), (0.6, ""), (0.7, ""))]
    >>> live, done = prune(kids, 2, "last")
    >>> [b.scores[-1] for b in live], [b.scores[-1] for b in done]
    ([0.7], [0.8])
    """
    ranked = sorted(range(len(children)), key=lambda i: (-aggregate(children[i].scores, how), i))
    live = [children[i] for i in ranked[:keep] if not children[i].finish]
    return live, [c for c in children if c.finish]


def split_trees(n_children: int, trees: int) -> list[int]:
    """The tree of each of the ``n_children`` first steps of a problem, in equal consecutive shares.

    >>> split_trees(8, 2), split_trees(4, 4)
    ([0, 0, 0, 0, 1, 1, 1, 1], [0, 1, 2, 3])
    """
    if n_children % trees:
        raise ValueError(f"split_trees: {n_children} children do not split into {trees} trees")
    per = n_children // trees
    return [i // per for i in range(n_children)]


def finish_reason(step_finish: str, steps: list[str], kind: str) -> str:
    """Why a beam is finished after a step ("" if it is not): EOS, or its last step is the answer.

    >>> finish_reason("stop", ["a", "#### 5"], "gsm8k"), finish_reason("stop", ["a"], "gsm8k")
    ('answer', '')
    """
    if step_finish == "eos":
        return "eos"
    last = steps[-1] if steps else ""
    if (kind == "math" and "\\boxed" in last) or (kind != "math" and last.startswith("####")):
        return "answer"
    return ""


class _Budget:
    """Per-problem counters and the PRM cache (identical prefixes of a problem are scored once)."""

    def __init__(self, n: int):
        self.tokens, self.prm_calls, self.encoded = [0] * n, [0] * n, [0] * n
        self.cache: dict[tuple[int, tuple[str, ...]], list[float]] = {}


def _expand(policy, problems, beams, width, cfg, max_new, seed, budget, counts_prompt) -> list[list[Beam]]:
    """``width`` children per beam; identical (problem, text) beams share one request of width x copies,
    and requests of equal size share one ``generate`` call. (Merging identical prefixes saved 22-39 % of the
    prompt tokens encoded on the world at no cost in wall time, though it can add calls.)"""
    sep = separator(problems[0].kind)
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, b in enumerate(beams):
        groups[(b.problem, b.text)].append(i)
    by_size: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for key, members in groups.items():
        by_size[width * len(members)].append(key)
    out: list[list[Beam]] = [[] for _ in beams]
    for call, (size, keys) in enumerate(sorted(by_size.items())):
        texts = [beams[groups[k][0]].text for k in keys]
        prompts = [
            format_prompt(problems[p].question) + text for (p, _), text in zip(keys, texts, strict=True)
        ]
        rows = policy.generate(prompts, n=size, temperature=cfg.temperature, top_p=cfg.top_p,
                               max_new_tokens=max_new, seed=(seed * 101 + call) % 2**63)  # fmt: skip
        for key, text, prompt, row in zip(keys, texts, prompts, rows, strict=True):
            p = key[0]
            budget.encoded[p] += counts_prompt(prompt)
            for j, c in enumerate(row):
                parent = beams[groups[key][j // width]]
                new_text = text + c.text + (sep if c.finish_reason == "stop" else "")
                steps = split_steps(new_text, problems[p].kind)
                child = Beam(p, parent.tree, new_text, steps, [], parent.tokens + c.n_tokens)
                child.finish = finish_reason(c.finish_reason, steps, problems[p].kind)
                if not child.finish and child.tokens >= cfg.max_new_tokens:
                    child.finish = "length"
                budget.tokens[p] += c.n_tokens
                out[groups[key][j // width]].append(child)
    return out


def _score(prm, problems, beams: list[Beam], cfg, budget: _Budget) -> None:
    """Fill each beam's step scores; a prefix already scored for its problem costs no PRM call."""
    todo: dict[tuple[int, tuple[str, ...]], None] = {}
    for b in beams:
        key = (b.problem, tuple(b.steps))
        if b.steps and key not in budget.cache:
            todo[key] = None
    if todo:
        keys = list(todo)
        rows = prm.score([problems[p].question for p, _ in keys], [list(s) for _, s in keys],
                         batch_size=cfg.score_batch_size)  # fmt: skip
        for (p, s), row in zip(keys, rows, strict=True):
            budget.cache[(p, s)] = row
            budget.prm_calls[p] += 1
    for b in beams:
        b.scores = list(budget.cache[(b.problem, tuple(b.steps))]) if b.steps else []


def tree_search(
    problems: list[Problem], cfg: SearchConfig, policy, prm, trees: int, keep: int, width: int, seed: int = 0
) -> list[SearchResult]:
    """The engine: per problem, ``trees`` independent trees that each keep ``keep`` beams and expand
    each by ``width`` next steps (best-of-N: n trees of 1 x 1; beam search: 1 tree of n/M x M; DVTS:
    n/M trees of 1 x M). Only when a tree has a choice (``width`` > 1) are unfinished prefixes scored."""
    t0 = time.perf_counter()
    budget = _Budget(len(problems))
    tok = getattr(policy, "tokenizer", None)
    counts_prompt = (lambda s: len(tok(s, add_special_tokens=True)["input_ids"])) if tok else (lambda s: 0)
    stepwise = width > 1 or keep > 1
    max_new = min(cfg.step_tokens, cfg.max_new_tokens) if stepwise else cfg.max_new_tokens
    roots = [Beam(p) for p in range(len(problems))]
    first = _expand(
        policy, problems, roots, trees * keep * width, cfg, max_new, seed * 1009, budget, counts_prompt
    )
    finished: list[list[Beam]] = [[] for _ in problems]
    live: list[Beam] = []
    for kids in first:
        for child, tree in zip(kids, split_trees(len(kids), trees), strict=True):
            child.tree = tree
    children = first
    for step in range(cfg.max_steps):
        flat = [c for kids in children for c in kids]
        _score(prm, problems, flat if width > 1 else [c for c in flat if c.finish], cfg, budget)
        per_tree: dict[tuple[int, int], list[Beam]] = defaultdict(list)
        for c in flat:
            per_tree[(c.problem, c.tree)].append(c)
        live = []
        for (p, _), kids in per_tree.items():
            go, done = prune(kids, keep, cfg.aggregation)
            live += go
            finished[p] += done
        if not live or step == cfg.max_steps - 1:
            break
        children = _expand(
            policy, problems, live, width, cfg, max_new, seed * 1009 + step + 1, budget, counts_prompt
        )
    for b in live:  # out of steps: finished as they stand
        b.finish = "steps"
    _score(prm, problems, [b for b in live if not b.scores], cfg, budget)
    for b in live:
        finished[b.problem].append(b)
    seconds = (time.perf_counter() - t0) / max(1, len(problems))
    return [_result(p, finished[i], cfg, budget, i, seconds, tok is not None) for i, p in enumerate(problems)]


def _result(problem: Problem, beams: list[Beam], cfg, budget: _Budget, i: int, seconds: float, counted: bool):
    kind = problem.kind
    cands = []
    for b in beams:
        answer = extract_answer(b.text, kind)
        cands.append({"text": b.text.strip(), "answer": answer, "correct": grade_answer(answer, problem.answer, kind),
                      "scores": b.scores, "finish": b.finish, "tokens": b.tokens})  # fmt: skip
    pick = cands[choose(candidates(cands), cfg.select, kind, cfg.aggregation)] if cands else None
    return SearchResult(
        problem_id=problem.id, strategy=cfg.strategy, answer=pick["answer"] if pick else None,
        correct=bool(pick and pick["correct"]), text=pick["text"] if pick else "", tokens=budget.tokens[i],
        prm_calls=budget.prm_calls[i], encoded_tokens=budget.encoded[i] if counted else None,
        seconds=seconds, candidates=cands,
    )  # fmt: skip


def candidates(records: list[dict[str, Any]]) -> list[Candidate]:
    """``verify.Candidate``s of a result's stored candidates (to re-select them another way)."""
    return [Candidate(c["answer"], bool(c["correct"]), c["scores"]) for c in records]


def best_of_n(problems, cfg: SearchConfig, policy, prm, seed: int | None = None) -> list[SearchResult]:
    return tree_search(
        problems, cfg, policy, prm, trees=cfg.n, keep=1, width=1, seed=cfg.seed if seed is None else seed
    )


def beam_search(problems, cfg: SearchConfig, policy, prm, seed: int | None = None) -> list[SearchResult]:
    return tree_search(
        problems,
        cfg,
        policy,
        prm,
        trees=1,
        keep=cfg.n // cfg.beam_width,
        width=cfg.beam_width,
        seed=cfg.seed if seed is None else seed,
    )


def dvts(problems, cfg: SearchConfig, policy, prm, seed: int | None = None) -> list[SearchResult]:
    return tree_search(
        problems,
        cfg,
        policy,
        prm,
        trees=cfg.n // cfg.beam_width,
        keep=1,
        width=cfg.beam_width,
        seed=cfg.seed if seed is None else seed,
    )


STRATEGIES: dict[str, Callable[..., list[SearchResult]]] = {
    "best_of_n": best_of_n,
    "beam_search": beam_search,
    "dvts": dvts,
}


def build_search_policy(model: str, cfg: SearchConfig, kind: str):
    """The policy a search config names for problems of ``kind``: stopping at the step separator for
    the step-level strategies, sampling whole solutions for best-of-N."""
    from prmkit.policy import make_policy

    stop = () if cfg.strategy == "best_of_n" else (separator(kind),)
    return make_policy(cfg.backend, model, calculator=cfg.calculator, batch_size=cfg.batch_size,
                       max_new_tokens=cfg.max_new_tokens, stop=stop, trust_remote_code=cfg.trust_remote_code,
                       revision=cfg.revision)  # fmt: skip


def check_policy(policy, cfg: SearchConfig, kind: str) -> None:
    """A step-level strategy needs a policy that stops at the separator (where the policy says its stops)."""

    stop = getattr(policy, "stop", None)
    if cfg.strategy != "best_of_n" and stop is not None and separator(kind) not in stop:
        raise ValueError(
            f"search.strategy {cfg.strategy}: the policy must stop at the step separator {separator(kind)!r} "
            "(build it with search.build_search_policy)"
        )


def output_config(policy, prm, cfg: SearchConfig) -> dict[str, Any]:
    """What determines the records of a search: its settings but speed knobs and the demo's comparison
    fields, and the policy's and the PRM's models."""
    skip = {"batch_size", "score_batch_size"} | {k for k in asdict(cfg) if k.startswith("compare_")}
    fields_ = {k: v for k, v in asdict(cfg).items() if k not in skip}
    return {**fields_, "model": getattr(policy, "source", {}), "prm": getattr(prm, "source", {})}


def search_problems(
    policy, prm, problems: list[Problem], cfg: SearchConfig, out_path: str | Path, progress: bool = True
) -> list[dict[str, Any]]:
    """Search every problem with ``cfg.strategy`` into ``out_path`` (one JSON record per problem,
    appended ``chunk`` problems at a time, resuming), and return the records of ``problems``. The file is
    claimed for the settings and models (``io.claim_output``)."""
    from prmkit.io import iter_jsonl, open_appender

    if not problems:
        raise ValueError("search: no problems")
    kinds = {p.kind for p in problems}
    if len(kinds) > 1:
        raise ValueError(f"search: the problems mix answer kinds {sorted(kinds)}; search them separately")
    check_policy(policy, cfg, problems[0].kind)
    starts = range(0, len(problems), cfg.chunk)
    units = [[p.id for p in problems[s : s + cfg.chunk]] for s in starts]
    writer, done = open_appender(out_path, key=lambda r: r["problem_id"], units=units,
                                 config=output_config(policy, prm, cfg))  # fmt: skip
    todo = sum(p.id not in done for p in problems)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=todo, desc=f"{cfg.strategy} n={cfg.n}", unit="problem")
    fn = STRATEGIES[cfg.strategy]
    with writer:
        for start in starts:
            chunk = [p for p in problems[start : start + cfg.chunk] if p.id not in done]
            if not chunk:
                continue
            results = fn(
                chunk, cfg, policy, prm, seed=cfg.seed * 1_000_003 + start
            )  # the chunk's, on resume too
            writer.write_many(r.to_dict() for r in results)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    wanted = {p.id for p in problems}
    return [r for _, r in iter_jsonl(out_path) if r["problem_id"] in wanted]


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, tokens, PRM calls and seconds per problem of a search's records."""
    if not records:
        raise ValueError("search summary: no records")
    n = len(records)
    return {
        "problems": n,
        "accuracy": sum(r["correct"] for r in records) / n,
        "tokens_per_problem": sum(r["tokens"] for r in records) / n,
        "prm_calls_per_problem": sum(r["prm_calls"] for r in records) / n,
        "seconds_per_problem": sum(r["seconds"] for r in records) / n,
    }
