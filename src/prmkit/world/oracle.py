"""The world's oracle: the true correctness and error type of every step of a solution.

A step is one line of a GSM8K-style solution. Its computations are its calculator annotations
``<<expr=result>>`` (with the number restated after ``>>``) or, when it has none, the equations
``a op b ... = c`` in its text; the operands are the numbers in ``expr``. Each computation is classified
by the first rule that applies, and a step takes the type of its first wrong computation:

1. ``other``: no computation (and no ``####``), or an expression or result that does not parse.
2. ``calculation``: the exact value of ``expr`` differs from the stated result, or the restated number
   after ``>>`` differs from the result inside the annotation.
3. ``accumulative``: an operand is a wrong value that an earlier wrong step stated (not a true value).
4. ``irrelevant``: an operand is a distractor's value (and not also a true value).
5. ``logical``: none of the above, yet the computation is not one of the graph's: two operands must be
   the arguments of a node whose value is the result, three or more must all lie in the support of a
   node whose value is the result, one operand must restate a true value. Made-up operands, a wrong
   operation and a right result from wrong operands all land here.
6. otherwise the step is correct; repeating a computation is fine.

True values are the non-distractor givens and the node values; a number that is both a distractor and
a true value counts as true. The final line ``#### N`` is correct iff N is the answer; otherwise it is
``accumulative`` when N is a wrong value stated earlier, ``logical`` when N is a true value that is not
the answer (stopped early or answered the wrong quantity), ``irrelevant`` when N is a distractor, else
``other``. ``final_correct`` is the project's GSM8K grader's verdict on the joined steps
(``prmkit.grading``: the last ``####`` line, else the last number), so a solution without ``####``
may still be final-correct; its last step is then judged as an ordinary step.

Departure from the papers: Math-Minos and ProcessBench label steps by people or GPT-4; here labels come
from the generating graph, so they are exact but only as fine as these rules (an unusual but valid
route, like computing a node through an algebraic detour, is judged ``logical``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction

from prmkit.calculator import evaluate, format_number
from prmkit.grading import extract_answer, grade_answer
from prmkit.types import Problem, Verdict

_ANN = re.compile(r"<<([^<>=]*)=([^<>]*)>>\s*\$?(-?\d[\d,]*(?:\.\d+)?)?")
_EQ = re.compile(
    r"((?:\d[\d,]*(?:\.\d+)?\s*[-+*/x×÷]\s*)+\d[\d,]*(?:\.\d+)?)\s*=\s*\$?(-?\d[\d,]*(?:\.\d+)?)"
)
_NUM = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_FINAL = re.compile(r"####\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)?")
_LINE = re.compile(r"\S+ = <<[^<>]*>>\d+")
INJECTABLE = ("calculation", "logical", "irrelevant", "other")


@dataclass(frozen=True)
class Graph:
    """A world problem's computation graph, read from ``Problem.meta`` (see ``world.generator``)."""

    true: frozenset[Fraction]
    distract: dict[Fraction, str]  # distractor value -> its name, only values that are not also true
    nodes: tuple[tuple[tuple[Fraction, ...], Fraction], ...]  # (argument values, value) per node
    support: tuple[frozenset[Fraction], ...]  # every value a node is computed from, transitively
    names: tuple[str, ...]  # node names
    ops: tuple[str, ...]  # node operations
    answer: Fraction

    @classmethod
    def of(cls, problem: Problem) -> Graph:
        meta = problem.meta
        if not meta.get("nodes") or "givens" not in meta:
            raise ValueError(f"problem {problem.id} has no world graph in its meta")
        vals = {f"g{i}": Fraction(g["value"]) for i, g in enumerate(meta["givens"])}
        vals |= {f"n{j}": Fraction(n["value"]) for j, n in enumerate(meta["nodes"])}
        support: list[frozenset[Fraction]] = []
        for n in meta["nodes"]:
            sup = {vals[a] for a in n["args"]}
            for a in n["args"]:
                sup |= support[int(a[1:])] if a[0] == "n" else set()
            support.append(frozenset(sup))
        true = frozenset(
            [vals[f"g{i}"] for i, g in enumerate(meta["givens"]) if not g["distractor"]]
            + [vals[f"n{j}"] for j in range(len(meta["nodes"]))]
        )
        distract = {vals[f"g{i}"]: g["name"] for i, g in enumerate(meta["givens"]) if g["distractor"]}
        nodes = tuple((tuple(vals[a] for a in n["args"]), vals[f"n{j}"]) for j, n in enumerate(meta["nodes"]))
        names = tuple(n.get("name", f"quantity {j + 1}") for j, n in enumerate(meta["nodes"]))
        answer = Fraction(meta["nodes"][-1]["value"])
        ops = tuple(n["op"] for n in meta["nodes"])
        distract = {v: s for v, s in distract.items() if v not in true}
        return cls(true, distract, nodes, tuple(support), names, ops, answer)

    def match(self, operands: list[Fraction], result: Fraction) -> int | None:
        """The node this computation computes (-1: it restates a true given), or None."""
        if len(operands) == 1:
            hits = [j for j, (_, v) in enumerate(self.nodes) if v == result]
            return (hits[0] if hits else -1) if operands[0] == result and result in self.true else None
        for j, ((args, v), sup) in enumerate(zip(self.nodes, self.support, strict=True)):
            if v == result and (
                sorted(args) == sorted(operands) if len(operands) == 2 else set(operands) <= sup
            ):
                return j
        return None


@dataclass(frozen=True)
class StepCheck:
    """What the oracle found in one step; ``error`` is None for a correct step."""

    error: str | None
    final: bool = False
    expr: str | None = None
    value: Fraction | None = None  # the exact value of expr, or the final answer N
    stated: Fraction | None = None  # the result the step writes (the wrong one, for a calculation error)
    culprit: Fraction | None = None  # the operand (or final value) the error is about
    source: int | None = None  # for accumulative: the step that stated the culprit
    node: int | None = None  # for a correct computation: the node it computes (-1: a given)


def _number(text: str | None) -> Fraction | None:
    return evaluate(text.replace(",", "")) if text else None


def _computations(step: str) -> list[tuple[str, str, str | None]]:
    anns = [(m[1], m[2], m[3]) for m in _ANN.finditer(step)]
    return anns or [(m[1], m[2], None) for m in _EQ.finditer(step)]


def _check(g: Graph, expr: str, result: str, restated: str | None, wrong: dict[Fraction, int]) -> StepCheck:
    value, stated, again = evaluate(expr), _number(result.strip()), _number(restated)
    if value is None or stated is None:
        return StepCheck("other", expr=expr)
    said = again if again is not None and again != stated else stated
    if value != stated or said != stated:
        shown = said if said != value else stated
        return StepCheck("calculation", expr=expr, value=value, stated=shown, culprit=shown)
    operands = [Fraction(x) for x in _NUM.findall(expr.replace(",", ""))]
    base = {"expr": expr, "value": value, "stated": stated}
    for o in operands:
        if o in wrong and o not in g.true:
            return StepCheck("accumulative", **base, culprit=o, source=wrong[o])
    for o in operands:
        if o in g.distract:
            return StepCheck("irrelevant", **base, culprit=o)
    node = g.match(operands, value) if all(o in g.true for o in operands) else None
    return StepCheck("logical" if node is None else None, **base, node=node)


def _final(g: Graph, m: re.Match[str], wrong: dict[Fraction, int]) -> StepCheck:
    n = _number(m[1])
    if n is None or n == g.answer:
        return StepCheck(None if n is not None else "other", final=True, value=n)
    if n in wrong and n not in g.true:
        return StepCheck("accumulative", final=True, value=n, culprit=n, source=wrong[n])
    kind = "logical" if n in g.true else "irrelevant" if n in g.distract else "other"
    return StepCheck(kind, final=True, value=n, culprit=n)


def analyze(problem: Problem, steps: list[str]) -> list[StepCheck]:
    """One ``StepCheck`` per step, in order (the wrong values of earlier steps carry forward)."""
    g = Graph.of(problem)
    wrong: dict[Fraction, int] = {}  # wrong values stated so far -> the step that stated them
    out: list[StepCheck] = []
    for i, step in enumerate(steps):
        if (m := _FINAL.search(step)) is not None:
            out.append(_final(g, m, wrong))
            continue
        checks = []
        for expr, result, restated in _computations(step):
            checks.append(c := _check(g, expr, result, restated, wrong))
            if c.error is not None:
                for v in {c.value, c.stated} - {None} - g.true:
                    wrong.setdefault(v, i)
        bad = [c for c in checks if c.error is not None]
        out.append(bad[0] if bad else checks[0] if checks else StepCheck("other"))
    return out


def judge(problem: Problem, steps: list[str]) -> Verdict:
    """The oracle's verdict on a solution's steps (see the module docstring for the rules).

    >>> from prmkit.world.generator import WorldConfig, generate_split
    >>> p = generate_split(WorldConfig(n_train=1), "train")[0]
    >>> judge(p, p.solution.split("\\n")).first_error
    -1
    """
    types = [c.error for c in analyze(problem, steps)]
    first = next((i for i, t in enumerate(types) if t is not None), -1)
    final_ok = grade_answer(extract_answer("\n".join(steps), "gsm8k"), problem.answer, "gsm8k")
    return Verdict([t is None for t in types], first, types, final_ok)


def _rewrite(line: str, expr: str, result: Fraction, restated: Fraction | None = None) -> str:
    r = format_number(result)
    again = format_number(restated) if restated is not None else r
    return _LINE.sub(lambda _: f"{expr} = <<{expr}={r}>>{again}", line, count=1)


def corrupt(
    problem: Problem, error_type: str, rng: random.Random, step: int | None = None
) -> tuple[list[str], int]:
    """The reference steps with one injected error and the index of the step that has it.

    ``calculation`` writes a wrong result (a third of the time only the restated number is wrong, as
    after a right calculator call), ``logical`` uses a wrong operation, swapped operands or another
    true value as an operand, ``irrelevant`` swaps an operand for a distractor's value (the problem
    must have one), ``other`` replaces the step by a line without a computation. Later steps that use
    the wrong value are recomputed from it, so the oracle calls them ``accumulative``, and so is the
    changed ``####`` line; ``accumulative`` itself cannot be injected. ``step`` picks the (node) line,
    else one is drawn. Wrong values are kept positive integers that are no true or distractor value.
    """
    if error_type not in INJECTABLE:
        raise ValueError(f"cannot inject {error_type!r}; choose one of {', '.join(INJECTABLE)}")
    g, nodes, lines = Graph.of(problem), problem.meta["nodes"], (problem.solution or "").split("\n")
    if error_type == "irrelevant" and not g.distract:
        raise ValueError(f"problem {problem.id} has no distractor to inject")
    vals = {f"g{i}": gv["value"] for i, gv in enumerate(problem.meta["givens"])}
    vals |= {f"n{j}": n["value"] for j, n in enumerate(nodes)}
    pool = sorted(int(v) for v in g.true)
    taken = g.true | set(g.distract)
    for _ in range(200):
        i = rng.randrange(len(nodes)) if step is None else step
        out = list(lines)
        if error_type == "other":
            out[i] = rng.choice(
                ["Let us think about the story.", "We need to find the answer.", "Now we go on."]
            )
            return out, i
        (a, b), op, shown = (vals[r] for r in nodes[i]["args"]), nodes[i]["op"], None
        if error_type == "calculation":
            result = Fraction(
                nodes[i]["value"] + rng.choice([-1, 1]) * rng.choice([1, 1, 2, 2, 3, 4, 5, 6, 8, 10])
            )
            if rng.random() < 0.3:
                shown, result = result, Fraction(nodes[i]["value"])
        else:
            if error_type == "irrelevant":
                d = int(rng.choice(sorted(g.distract)))
                a, b = (d, b) if rng.random() < 0.5 else (a, d)
            elif (u := rng.random()) < 0.5:
                op = rng.choice([o for o in "+-*/" if o != op])
            elif u < 0.7:
                a, b = b, a
            else:
                a, b = (rng.choice(pool), b) if rng.random() < 0.5 else (a, rng.choice(pool))
            result = evaluate(f"{a}{op}{b}")
        wrong = shown if shown is not None else result
        if wrong is None or wrong in taken or wrong <= 0 or wrong.denominator != 1:
            continue
        out[i] = _rewrite(lines[i], f"{a}{op}{b}", result, shown)
        if _propagate(nodes, vals | {f"n{i}": int(wrong)}, out, i, taken):
            return out, i
    raise ValueError(
        f"could not inject a {error_type} error into {problem.id}" + f" at step {step}" * (step is not None)
    )


def _propagate(nodes: list[dict], vals: dict[str, int], out: list[str], start: int, taken: set) -> bool:
    """Recompute the lines after ``start`` from the wrong value in ``vals``; False when a value leaves
    the positive integers or lands on a true or distractor value (the labels would be ambiguous)."""
    for j in range(start + 1, len(nodes)):
        a, b = (vals[r] for r in nodes[j]["args"])
        if (a, b) == tuple(nodes[int(r[1:])]["value"] if r[0] == "n" else vals[r] for r in nodes[j]["args"]):
            continue
        value = evaluate(expr := f"{a}{nodes[j]['op']}{b}")
        if value is None or value <= 0 or value.denominator != 1 or value in taken:
            return False
        vals[f"n{j}"] = int(value)
        out[j] = _rewrite(out[j], expr, value)
    out[len(nodes)] = f"#### {vals[f'n{len(nodes) - 1}']}"
    return True
