"""Step-level critiques in natural language, written by the world's oracle.

Math-Minos (Gao et al. 2024) trains verifiers first to write a critique of each step, then to classify;
its critiques come from GPT-4 prompted with the step labels. Here the oracle writes them from the
computation graph and its own analysis, one short sentence per step, e.g.::

    Step 1 is correct: it finds Mia's pencils, 3*4=12.
    Step 2 is wrong (calculation error): 12+5 is 17, not 18.
    Step 3 is wrong (accumulative error): it builds on the wrong value 18 from step 2.
    Step 4 is wrong (accumulative error): the final answer 36 is the wrong value of step 3.
    The first error is in step 2.

Departure from Math-Minos: the critiques are templated and exact, not free-form; a verdict that does
not come from this oracle (say Monte-Carlo labels) is honoured, with a generic sentence where the
oracle's own analysis disagrees.
"""

from __future__ import annotations

from fractions import Fraction

from prmkit.calculator import format_number
from prmkit.types import Problem, Verdict
from prmkit.world.oracle import Graph, StepCheck, analyze

_LABEL = {
    "calculation": "calculation error",
    "logical": "logical error",
    "irrelevant": "irrelevant quantity",
    "accumulative": "accumulative error",
    "other": "other error",
}


def _f(x: Fraction | None) -> str:
    return "?" if x is None else format_number(x)


def _true_name(g: Graph, value: Fraction | None) -> str:
    """What a true value is in the story: the name of the node (or given) with that value."""
    for (_, v), name in zip(g.nodes, g.names, strict=True):
        if v == value:
            return name
    return "a number given in the problem"


def _correct(g: Graph, c: StepCheck, n: int) -> str:
    if c.final:
        return f"Step {n} is correct: the answer is {_f(c.value)}, {g.names[-1]}."
    if c.node is not None and c.node >= 0 and c.expr is not None:
        return f"Step {n} is correct: it finds {g.names[c.node]}, {c.expr}={_f(c.value)}."
    if c.node == -1:
        return f"Step {n} is correct: it restates {_f(c.value)} from the problem."
    return f"Step {n} is correct."


def _wrong(g: Graph, c: StepCheck, n: int, kind: str, next_node: int) -> str:
    head = f"Step {n} is wrong ({_LABEL.get(kind, kind)})"
    if c.error != kind:  # a verdict from elsewhere: say no more than it does
        return f"{head}."
    if kind == "calculation":
        return f"{head}: {c.expr} is {_f(c.value)}, not {_f(c.stated)}."
    if kind == "accumulative" and c.source is not None:
        if c.final:
            return f"{head}: the final answer {_f(c.value)} is the wrong value of step {c.source + 1}."
        return f"{head}: it builds on the wrong value {_f(c.culprit)} from step {c.source + 1}."
    if kind == "irrelevant":
        what = g.distract.get(c.culprit) if c.culprit is not None else None
        return f"{head}: {_f(c.culprit)} is {what or 'a distractor'} and is not needed."
    if kind == "logical" and c.final:
        return (
            f"{head}: {_f(c.value)} is {_true_name(g, c.value)}, but the question asks for "
            f"{g.names[-1]}, which is {_f(g.answer)}."
        )
    if kind == "logical":
        args, value = g.nodes[next_node]
        expr = g.ops[next_node].join(format_number(a) for a in args)
        want = f"{g.names[next_node]}, {expr}={format_number(value)}"
        return f"{head}: {c.expr}={_f(c.value)} does not follow from the problem; the next step finds {want}."
    if c.final:
        return (
            f"{head}: the final answer is missing."
            if c.value is None
            else (f"{head}: the final answer {_f(c.value)} does not come from the problem.")
        )
    return f"{head}: it does not state a computation that can be checked."


def critique_steps(problem: Problem, steps: list[str], verdict: Verdict) -> list[str]:
    """One critique sentence per step, following ``verdict`` (normally ``judge(problem, steps)``)."""
    if len(verdict.step_correct) != len(steps):
        raise ValueError(f"the verdict has {len(verdict.step_correct)} steps, the solution {len(steps)}")
    g, checks = Graph.of(problem), analyze(problem, steps)
    found: set[int] = set()  # nodes computed by correct steps so far
    out = []
    for i, (c, ok, kind) in enumerate(zip(checks, verdict.step_correct, verdict.error_types, strict=True)):
        next_node = next((j for j in range(len(g.nodes)) if j not in found), len(g.nodes) - 1)
        if ok:
            out.append(_correct(g, c, i + 1) if c.error is None else f"Step {i + 1} is correct.")
            if c.node is not None and c.node >= 0:
                found.add(c.node)
        else:
            out.append(_wrong(g, c, i + 1, kind or "other", next_node))
    return out


def critique_text(problem: Problem, steps: list[str], verdict: Verdict) -> str:
    """The step critiques, one per line, and a last line with the verdict on the whole solution."""
    lines = critique_steps(problem, steps, verdict)
    if verdict.first_error >= 0:
        lines.append(f"The first error is in step {verdict.first_error + 1}.")
    elif verdict.final_correct:
        lines.append("The solution is correct.")
    else:
        lines.append("Every step is correct, but the solution does not reach the final answer.")
    return "\n".join(lines)
