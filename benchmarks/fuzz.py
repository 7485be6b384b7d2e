"""Fuzz drill: hostile input to every function that reads model text or a user's file.

Targets: the calculator, ``extract_answer``/``grade_answer`` for "gsm8k" and "math", the step splitter,
the JSONL readers (``read_jsonl``, ``read_scores``, ``open_appender``, with a write/read round trip) and
the PRM800K / Math-Shepherd / ProcessBench importers. Each example is drawn by hypothesis from a mix of
arbitrary Unicode, math-flavoured token soup, huge repetitions of hostile tokens (unclosed ``\\boxed{``,
comma chains, exponent towers, code payloads) and well-formed input with known answers, then checked for:

- no exception but the target's defined one (readers and importers: a DataError, a ValueError that
  names the file; ``split_steps``: ValueError for an unknown kind; the rest: none at all);
- at most 1 s per example (grade-math: math-verify's limit, ``MATH_TIMEOUT_S`` = 1 s, plus the restart of
  its worker after a comparison that ran past it, see ``run_one``);
- no ``eval``/``exec``/``compile`` call and no import of a system module while the target runs (the
  math-verify worker is audited from inside: every code it evaluates may name only sympy objects), and
  no payload ever touching its canary file;
- the properties that hold: calculator == ``Fraction`` arithmetic inside its limits, canonical gsm8k
  answers, reflexive/symmetric grading, ``split_steps(join_steps(steps)) == steps``, records read back
  equal to records written (also after a torn tail is repaired), importers inverting their writers.

Hypothesis runs each target with a fixed seed (``--seed``), generation only: a failure is counted and
the run goes on (``first_failure`` keeps one example per kind); ``tests/test_fuzz.py`` runs the same
targets at a few hundred examples, derandomized, and shrinks what fails. Prints ONE JSON line: per target
the examples run, failures by kind, the defined errors by type, the slowest example, how many took over
1 s, and the eval/import audit.

    python benchmarks/fuzz.py --examples 10000
"""

from __future__ import annotations

import argparse
import atexit
import builtins
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from prmkit import grading, grading_worker
from prmkit.calculator import MAX_DEPTH, MAX_EXPR_CHARS, MAX_MAGNITUDE, calculate, evaluate
from prmkit.data import from_math_shepherd, import_math_shepherd, load_prm800k_steps, to_math_shepherd
from prmkit.evaluate.processbench import load_predictions, load_processbench
from prmkit.grading import extract_answer, grade_answer, normalize_number
from prmkit.io import DataError, open_appender, read_jsonl, read_scores, write_jsonl
from prmkit.steps import join_steps, split_steps
from prmkit.types import Problem, Scores, Solution, StepLabels, solution_key

TIME_LIMIT_S = 1.0
# Files go to memory where there is a tmpfs: the readers' examples write a file each.
SCRATCH = Path(tempfile.mkdtemp(prefix="prmkit-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)
CANARY = SCRATCH / "CANARY"  # every code payload below tries to create this file

# ------------------------------------------------------------------------------------------ strategies

PAYLOADS = [
    f"__import__('pathlib').Path({str(CANARY)!r}).touch()",
    f"open({str(CANARY)!r}, 'w')",
    f"exec(\"open({str(CANARY)!r}, 'w')\")",
    f"eval(compile(\"open({str(CANARY)!r}, 'w')\", 'x', 'exec'))",
    "__import__('os').system('true')",
    "().__class__.__bases__[0].__subclasses__()",
    "lambda: 1",
    "__builtins__",
]
TOKENS = [
    *"0123456789+-*/=^_{}()[]\\$.,:;!#%&|<>' \n\t",
    "x", "y", "n", "a", "1,000", ",000", ".5", "-", "\u2212", "°", "²", "½", "١", "𝟏", "\u00a0", "\u2028",
    "\\boxed{", "\\boxed", "\\fbox{", "\\boxed ", "}", "####", "#### ", "\n#### ", "The answer is ", "answer is: ",
    "A: ", "# Answer\n\n", "\\frac{", "\\dfrac", "\\frac12", "\\sqrt{", "\\left(", "\\right)", "\\text{ cm}",
    "\\text{", "\\mbox{", "\\pi", "\\infty", "\\circ", "^\\circ", "\\%", "\\$", "$$", "\\(", "\\)", "\\[",
    "\\]", "<<", ">>", "**", "9**9**9", "1**10**10**10", "10^{10^{10}}", "99999!", "\\begin{pmatrix}",
    "&", "\\\\", "\\end{pmatrix}", "\\sum_{n=1}^{10^9}", "\\int_0^\\infty", "e^{-x^2}", "ки", "Step 1: ",
    "\n\n", "\r\n", " \n \n", "\\u0000", "\ud800", "NaN", "1e999", "2**100", "x×3", "÷", *PAYLOADS,
]  # fmt: skip
token = st.sampled_from(TOKENS)
token_soup = st.lists(st.one_of(token, token, st.text(max_size=4)), max_size=40).map("".join)
# Repetitions up to ~100k characters: far past any sampled solution, short enough for 10,000 examples.
hostile = st.builds(
    lambda parts, head, n: head + "".join(parts) * n,
    st.lists(token, min_size=1, max_size=3),
    st.text(max_size=8),
    st.integers(1, 6000),
).map(lambda s: s[:100_000])
any_text = st.one_of(st.text(max_size=300), token_soup, token_soup, hostile)


literal = st.tuples(
    st.one_of(st.integers(0, 10**6), st.integers(0, 10**13)), st.sampled_from(["", "", ".5", ".25", ".125"]), st.booleans()
)  # fmt: skip
expression_tree = st.recursive(
    literal, lambda kids: st.tuples(kids, st.sampled_from("+-*/"), kids), max_leaves=24
)


def render(tree: tuple, top: bool = True) -> tuple[str, Fraction | None]:
    """A fully parenthesised expression and its value under the calculator's limits (None if outside)."""
    if isinstance(tree[0], tuple):  # (left, op, right); a literal is (n, decimals, negative)
        (a, va), op, (b, vb) = render(tree[0], False), tree[1], render(tree[2], False)
        text = f"{a}{op}{b}" if top else f"({a}{op}{b})"
        if va is None or vb is None or (op == "/" and vb == 0):
            return text, None
        v = va + vb if op == "+" else va - vb if op == "-" else va * vb if op == "*" else va / vb
        return text, (v if abs(v) <= MAX_MAGNITUDE and v.denominator <= 10**6 else None)
    n, dec, negative = tree
    text = f"{n}{dec}"
    value = None if len(text.replace(".", "")) > 12 else Fraction(text)
    return (f"-{text}", None if value is None else -value) if negative else (text, value)


arithmetic = expression_tree.map(render)


def _paren_depth(expr: str) -> int:
    depth = deepest = 0
    for c in expr:
        depth += (c == "(") - (c == ")")
        deepest = max(deepest, depth)
    return deepest


# --------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """What to draw and how to check one example.

    ``check`` raises AssertionError when a property fails, catches the exception types that are the
    target's defined answer to bad input (and checks them), and lets anything else escape: a failure.
    """

    name: str
    strategy: st.SearchStrategy
    check: Callable[[Any], list[str] | None]  # returns the defined errors it met, by type name
    time_limit_s: float = TIME_LIMIT_S
    fixed: tuple[Any, ...] = ()  # examples always run first (the known-hostile cases)


def check_calculator(example: tuple[str, Fraction | None | bool]) -> None:
    """``(expr, value)``: value the exact result, None where the calculator must refuse, False for
    hostile text (any answer but a crash, and code-shaped text refused)."""
    expr, value = example
    result = calculate(expr)
    assert result is None or isinstance(result, str), result
    if value is False:  # hostile text: anything but a crash is fine, except code-shaped text must fail
        if any(k in expr for k in ("import", "lambda", "**", "!", "open(")):
            assert result is None, f"calculator accepted {expr!r}"
        return
    if len(expr) > MAX_EXPR_CHARS or _paren_depth(expr) > MAX_DEPTH:
        value = None
    assert evaluate(expr) == value, f"{expr!r}: {evaluate(expr)} != {value}"


CALCULATOR = Target(
    "calculator",
    st.one_of(arithmetic, any_text.map(lambda s: (s, False)), st.text(max_size=70).map(lambda s: (s, False))),
    check_calculator,
    fixed=tuple(
        (s, False)
        for s in [
            "__import__('os')",
            "1**10**10**10",
            "9**9**9**9",
            "2**100",
            "99999!",
            "(10**10)!",
            "(" * 30 + "1" + ")" * 30,
            "(" * 100_000,
            "-" * 63 + "1",
            "1" + "0" * 100_000,
            "1/3" * 21,
            "999999999999*999999999999",
            "1e999",
            "0x10",
            "1_000",
            "lambda: 1",
            "open('x')",
        ]
    ),  # fmt: skip
)


def check_gsm8k(example: tuple[str, str]) -> None:
    text, gold = example
    answer = extract_answer(text, "gsm8k")
    assert answer is None or (isinstance(answer, str) and normalize_number(answer) == answer), answer
    graded = grade_answer(answer, gold, "gsm8k")
    assert isinstance(graded, bool)
    assert grade_answer(text, gold, "gsm8k") == grade_answer(gold, text, "gsm8k")  # symmetric
    if text.strip():
        assert grade_answer(text, text, "gsm8k"), "not reflexive"


@st.composite
def gsm8k_marked(draw: st.DrawFn) -> tuple[str, str]:
    """A solution ending in ``#### N`` (N with thousands commas): extraction must give N."""
    body = draw(st.one_of(st.text(max_size=200), token_soup)).replace("#", "")
    n = draw(st.integers(-(10**15), 10**15))
    return f"{body}\n#### {n:,}", str(n)


def check_gsm8k_marked(example: tuple[str, str]) -> None:
    text, n = example
    assert extract_answer(text, "gsm8k") == n, (text[-40:], extract_answer(text, "gsm8k"))
    assert grade_answer(extract_answer(text, "gsm8k"), n, "gsm8k")


def _check_tagged(example: tuple[str, Any]) -> None:
    kind, payload = example
    (check_gsm8k_marked if kind == "marked" else check_gsm8k)(payload)


GSM8K = Target(
    "grade-gsm8k",
    st.one_of(
        st.tuples(st.just("any"), st.tuples(any_text, st.one_of(any_text, st.integers().map(str)))),
        st.tuples(st.just("marked"), gsm8k_marked()),
    ),
    _check_tagged,
)

MATH_TIMEOUT_S = 1.0  # the drill's per-comparison limit for math-verify (the library default is 5 s)
# A math-verify comparison past its limit kills the worker; the next comparison waits for a new one to
# import sympy. So a math example may take MATH_TIMEOUT_S plus this (measured in warm_up).
WORKER_START_S = [0.0]


def check_math(example: tuple[str, str]) -> None:
    text, gold = example
    answer = extract_answer(text, "math")
    assert answer is None or isinstance(answer, str), answer
    assert isinstance(grade_answer(answer, gold, "math", timeout_s=MATH_TIMEOUT_S), bool)
    if answer is not None and grading._normalize_latex(answer):
        assert grade_answer(answer, answer, "math", timeout_s=MATH_TIMEOUT_S), "not reflexive"


math_answer = st.one_of(
    st.integers().map(str),
    st.fractions().map(lambda f: f"\\frac{{{f.numerator}}}{{{f.denominator}}}"),
    st.lists(st.sampled_from(TOKENS[:60]), max_size=8).map("".join),
    st.text(max_size=20),
)
MATH = Target(
    "grade-math",
    st.tuples(
        st.one_of(any_text, math_answer.map(lambda a: f"So the answer is $\\boxed{{{a}}}$.")),
        st.one_of(math_answer, any_text.map(lambda s: s[:200])),
    ),
    check_math,
    time_limit_s=MATH_TIMEOUT_S,
)

# Custom separators the round trip holds for: no proper prefix is also a suffix (or only whitespace).
SEPARATOR_KINDS = ["gsm8k", "math", "sep: ки\\n", "sep:\\n\\n", "sep:<step>", "sep: ", "sep:\\t", "sep:;"]


def check_steps(example: tuple[str, str]) -> list[str] | None:
    text, kind = example
    valid = kind in ("gsm8k", "math") or (kind.startswith("sep:") and len(kind) > 4)
    try:
        steps = split_steps(text, kind)
    except ValueError:
        assert not valid, f"split_steps refused a valid kind {kind!r}"
        return ["ValueError"]
    assert all(isinstance(s, str) and s and s == s.strip() for s in steps), steps
    if kind in SEPARATOR_KINDS:
        again = split_steps(join_steps(steps, kind), kind)
        assert again == steps, f"round trip: {steps!r} -> {again!r}"


STEPS = Target(
    "steps",
    st.tuples(any_text, st.one_of(st.sampled_from(SEPARATOR_KINDS), st.text(max_size=6))),
    check_steps,
)

# ---- files ----

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_value = st.recursive(
    json_scalar, lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=12
)  # fmt: skip
# Lone surrogates ("\ud800") are legal in JSON text and come back from json.loads, so records may hold them.
record_text = st.one_of(
    st.text(max_size=60), token_soup, st.text(st.characters(categories=["Cs", "L", "N"]), max_size=10)
)
problems = st.builds(
    Problem, id=record_text, question=record_text, answer=record_text, solution=st.none() | record_text,
    source=st.text(max_size=8), kind=st.sampled_from(["gsm8k", "math"]), split=st.text(max_size=8),
    meta=st.dictionaries(st.text(max_size=8), json_value, max_size=3),
)  # fmt: skip
solutions = st.builds(
    Solution, problem_id=record_text, sample_id=st.integers(-(2**63), 2**63), text=record_text,
    steps=st.lists(record_text, max_size=5), answer=st.none() | record_text, correct=st.none() | st.booleans(),
    meta=st.dictionaries(st.text(max_size=8), json_value, max_size=3),
)  # fmt: skip
step_labels = st.builds(
    StepLabels, problem_id=record_text, sample_id=st.integers(0, 10**6), steps=st.lists(record_text, max_size=5),
    hard=st.lists(st.sampled_from([0, 1, None]), max_size=5),
    soft=st.lists(st.none() | st.floats(0, 1), max_size=5),
)  # fmt: skip


def _mutate(obj: Any, draw: st.DrawFn) -> Any:
    """A record with one field dropped, retyped or added, or the record itself."""
    if not isinstance(obj, dict) or not obj or draw(st.integers(0, 3)) == 0:
        return obj
    obj, key = dict(obj), draw(st.sampled_from(sorted(obj)))
    how = draw(st.sampled_from(["drop", "retype", "add"]))
    if how == "drop":
        del obj[key]
    elif how == "retype":
        obj[key] = draw(json_value)
    else:
        obj[draw(st.text(max_size=6))] = draw(json_value)
    return obj


@st.composite
def jsonl_bytes(draw: st.DrawFn, rows: st.SearchStrategy) -> bytes:
    """A JSONL file: rows (some mutated), garbage lines, odd bytes, deep nesting, a torn tail."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["row", "row", "row", "value", "text", "bytes", "deep", "bigint"]))
        if kind == "row":
            row = json.dumps(_mutate(draw(rows), draw), ensure_ascii=draw(st.booleans()))
            lines.append(row.encode("utf-8", "surrogatepass"))  # a lone surrogate: bytes that are not UTF-8
        elif kind == "value":
            lines.append(json.dumps(draw(json_value)).encode())
        elif kind == "text":
            lines.append(draw(any_text).encode("utf-8", "surrogatepass"))
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=40)))
        elif kind == "deep":
            lines.append(b'{"a": ' + b"[" * draw(st.integers(900, 200_000)))
        else:
            lines.append(b'{"sample_id": ' + b"7" * draw(st.integers(4000, 20_000)) + b"}")
    data = b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n", b"\n\n"]))
    return data[: draw(st.integers(0, len(data)))] if draw(st.integers(0, 4)) == 0 else data


SCORE_ROW = st.fixed_dictionaries(
    {"problem_id": st.text(max_size=10), "sample_id": st.integers(0, 99), "scores": st.lists(st.floats(0, 1), max_size=4)}
)  # fmt: skip
ANY_ROW = st.one_of(problems.map(Problem.to_dict), solutions.map(Solution.to_dict), SCORE_ROW)


def _located(e: BaseException, path: Path) -> None:
    assert str(e).startswith(str(path)), f"error does not name the file: {e}"


def _write(data: bytes, name: str) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def check_readers(example: tuple[str, Any]) -> list[str] | None:
    kind, payload = example
    errors = []
    if kind == "bytes":
        path = _write(payload, "in.jsonl")
        for read in (read_jsonl, lambda p: read_jsonl(p, Problem), lambda p: read_jsonl(p, Solution),
                     lambda p: read_jsonl(p, StepLabels), read_scores):  # fmt: skip
            try:
                read(path)
            except DataError as e:
                _located(e, path)
                errors.append(type(e).__name__)
        try:
            writer, _ = open_appender(path, key=solution_key)
            writer.close()
        except DataError as e:
            _located(e, path)
            errors.append(type(e).__name__)
        return errors
    records, torn = payload  # round trip: written records read back equal, also after a torn tail
    cls = type(records[0]) if records else Problem
    path = SCRATCH / "rt.jsonl"
    write_jsonl(path, records)
    assert read_jsonl(path, cls) == records
    path.unlink()
    writer, done = open_appender(path, key=lambda r: r.get("id", r.get("problem_id")))
    with writer:
        writer.write_many(records)
    with path.open("ab") as f:
        f.write(torn)
    writer, done = open_appender(path, key=lambda r: json.dumps(r, sort_keys=True))
    writer.close()
    assert read_jsonl(path, cls) == records
    assert done == {json.dumps(r.to_dict(), sort_keys=True) for r in records}
    return None


@st.composite
def round_trip(draw: st.DrawFn) -> tuple[list, bytes]:
    records = draw(
        st.one_of(
            st.lists(problems, max_size=4), st.lists(solutions, max_size=4), st.lists(step_labels, max_size=4)
        )
    )
    line = json.dumps(draw(ANY_ROW), ensure_ascii=False).encode("utf-8", "surrogatepass")
    return records, line[: draw(st.integers(0, max(len(line) - 1, 0)))]  # a proper prefix: never valid JSON


READERS = Target(
    "jsonl-readers",
    st.one_of(
        st.tuples(st.just("bytes"), jsonl_bytes(ANY_ROW)), st.tuples(st.just("round-trip"), round_trip())
    ),
    check_readers,
)

# ---- importers ----

PRM800K_ROW = st.fixed_dictionaries(
    {"instruction": record_text, "responses": st.lists(record_text, max_size=4), "next_response": record_text,
     "rating": st.sampled_from([1, 0, -1, None])},
    optional={"is_solution": st.booleans()},
)  # fmt: skip
plain = st.text(st.characters(codec="ascii", exclude_characters="#"), max_size=30)
shepherd_step = plain.map(str.strip).filter(lambda s: s and "Step " not in s)


@st.composite
def shepherd_record(draw: st.DrawFn) -> tuple[dict, tuple]:
    question = draw(plain.map(str.strip).filter(lambda s: "Step 1" not in s))
    steps = draw(st.lists(shepherd_step, min_size=1, max_size=5))
    labels = draw(st.lists(st.integers(0, 1), min_size=len(steps), max_size=len(steps)))
    return to_math_shepherd(question, steps, labels), (question, steps, labels)


PROCESSBENCH_SAMPLE = st.builds(
    lambda i, q, steps, k: {"id": i, "problem": q, "steps": steps, "label": k % (len(steps) + 1) - 1},
    st.one_of(st.text(max_size=8), st.integers()), record_text, st.lists(record_text, max_size=5), st.integers(0, 10),
)  # fmt: skip


@st.composite
def importer_input(draw: st.DrawFn) -> tuple[str, bytes, Any]:
    fmt = draw(st.sampled_from(["prm800k", "math-shepherd", "processbench", "predictions"]))
    if fmt == "math-shepherd" and draw(st.booleans()):  # well formed: must import to what was exported
        pairs = draw(st.lists(shepherd_record(), min_size=1, max_size=4))
        return fmt, b"".join(json.dumps(r).encode() + b"\n" for r, _ in pairs), [p for _, p in pairs]
    if fmt == "processbench":
        samples = draw(st.lists(PROCESSBENCH_SAMPLE, max_size=4))
        if draw(st.booleans()):
            return fmt, json.dumps(samples).encode(), samples
        mutated = [_mutate(s, draw) for s in samples] if draw(st.booleans()) else draw(json_value)
        return fmt, json.dumps(mutated).encode(), None
    rows = {
        "prm800k": PRM800K_ROW,
        "predictions": st.fixed_dictionaries({"id": st.text(max_size=5), "first_error": st.integers(-1, 5)}),
    }
    rows = rows.get(
        fmt, st.fixed_dictionaries({"input": record_text, "label": record_text, "task": st.just("GSM8K")})
    )
    return fmt, draw(jsonl_bytes(rows)), None


def check_importers(example: tuple[str, bytes, Any]) -> list[str] | None:
    fmt, data, want = example
    path = _write(data, "import.json" if fmt == "processbench" else "import.jsonl")
    try:
        if fmt == "prm800k":
            problems_, labels = load_prm800k_steps(path)
            assert all(len(lab.steps) == len(lab.hard) == len(lab.soft) for lab in labels)
        elif fmt == "math-shepherd":
            problems_, labels = import_math_shepherd(path)
            if want is not None:
                got = [
                    (p.question, lab.steps, lab.hard)
                    for lab in labels
                    for p in problems_
                    if p.id == lab.problem_id
                ]
                assert got == [(q, s, y) for q, s, y in want], (got, want)
                assert [from_math_shepherd(json.loads(line)) for line in data.splitlines()] == want
        elif fmt == "processbench":
            samples = load_processbench(path)
            assert want is None or samples == want
        else:
            load_predictions(path)
    except DataError as e:
        assert want is None, f"well-formed {fmt} input refused: {e}"
        _located(e, path)
        return [type(e).__name__]
    return None


IMPORTERS = Target("importers", importer_input(), check_importers)

TARGETS = {t.name: t for t in (CALCULATOR, GSM8K, MATH, STEPS, READERS, IMPORTERS)}

# ------------------------------------------------------------------------------------------ the audit

_SYSTEM_MODULES = {"os", "subprocess", "shutil", "socket", "ctypes", "pty", "builtins", "importlib", "posix", "sys"}  # fmt: skip


def _import_machinery(name: str, args: tuple) -> bool:
    """The import system compiling or running a module's own file (a codec imported lazily, say)."""
    if name == "exec" and isinstance(args[0], types.CodeType):
        return args[0].co_name == "<module>" and os.path.isfile(args[0].co_filename)
    return name == "compile" and len(args) > 1 and str(args[1]).endswith(".py") and os.path.isfile(args[1])


@contextlib.contextmanager
def code_audit() -> Iterator[list[str]]:
    """Record every eval/exec/compile call and every import of a system module while the block runs."""
    seen: list[str] = []
    originals = {name: getattr(builtins, name) for name in ("eval", "exec", "compile", "__import__")}

    def spy(name: str) -> Callable[..., Any]:
        real = originals[name]

        def call(*args: Any, **kwargs: Any) -> Any:
            if name != "__import__":
                if not _import_machinery(name, args):
                    seen.append(f"{name}({str(getattr(args[0], 'co_filename', args[0]))[-80:]!r})")
            elif args[0].partition(".")[0] in _SYSTEM_MODULES and args[0] != "os.path":
                seen.append(f"import {args[0]}")
            return real(*args, **kwargs)

        return call

    for name in originals:
        setattr(builtins, name, spy(name))
    try:
        yield seen
    finally:
        for name, real in originals.items():
            setattr(builtins, name, real)


# The math-verify worker runs this first: it logs the names in every code object it evaluates, so the
# drill can check that model text only ever reaches sympy's parser as arithmetic.
WORKER_AUDIT = """
import ast as _ast, builtins as _b, json as _json, logging as _logging, os as _os, types as _types
import math_verify as _mv  # imported and exercised once before the spies: import-time code is not model text
_logging.disable(_logging.CRITICAL)
for _p, _g in (("x+1", "1+x"), ("2^3", "8"), ("1.5", "3/2"), ("\\\\frac{1}{2}", "0.5"), ("5\\\\%", "1,000")):
    _mv.verify(_mv.parse("$%s$" % _p, parsing_timeout=None), _mv.parse("$%s$" % _g, parsing_timeout=None), timeout_seconds=None)
_audit = open(_os.environ["PRMKIT_FUZZ_AUDIT"], "a", buffering=1)
_compile = _b.compile
def _names(src):
    if isinstance(src, _types.CodeType):
        out = set(src.co_names)
        for c in src.co_consts:
            if isinstance(c, _types.CodeType):
                out |= _names(c)
        return out
    tree = src if isinstance(src, _ast.AST) else _compile(src, "<audit>", "exec", _ast.PyCF_ONLY_AST)
    return {n.id for n in _ast.walk(tree) if isinstance(n, _ast.Name)} | {
        n.attr for n in _ast.walk(tree) if isinstance(n, _ast.Attribute)}
def _spy(name, real):
    def call(src, *a, **k):
        flags = (a[2] if len(a) > 2 else k.get("flags", 0)) if name == "compile" else 0
        where = str(a[0] if name == "compile" and a else getattr(src, "co_filename", ""))
        # a parse tree runs nothing; a module's own file is the import system (sympy imports lazily)
        if not flags & _ast.PyCF_ONLY_AST and not (where.endswith(".py") and _os.path.isfile(where)):
            try:
                head = getattr(src, "co_filename", None) or str(src)[:80]
                _audit.write(_json.dumps([name, sorted(_names(src)), head]) + "\\n")
            except Exception as e:
                _audit.write(_json.dumps([name, ["<unparsed: %s>" % type(e).__name__], str(src)[:80]]) + "\\n")
        return real(src, *a, **k)
    return call
for _n in ("eval", "exec", "compile"):
    setattr(_b, _n, _spy(_n, getattr(_b, _n)))
"""


def worker_audit_summary(log: Path) -> dict[str, Any]:
    """What the worker evaluated: how many calls; names outside sympy's namespace (with what evaluated
    them); the ones that could run code (a builtin that sympy does not shadow, or a dunder); and sources
    that did not even parse (Python refuses them before running anything)."""
    import sympy

    allowed = set(dir(sympy))
    risky = {n for n in dir(builtins) if n[:1].islower() or n.startswith("__")} - allowed
    calls, outside, bad, unparsed = 0, Counter(), Counter(), Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            _, names, head = json.loads(line)
            calls += 1
            if names and names[0].startswith("<unparsed"):
                unparsed[f"{names[0]} {head[:40]!r}"] += 1
                continue
            extra = sorted(n for n in names if n not in allowed)
            if extra:
                outside[f"{' '.join(extra)[:40]} <- {head[-60:]}"] += 1
            bad.update(f"{n} <- {head[-60:]}" for n in extra if n in risky or n.startswith("__"))
    return {
        "worker_eval_calls": calls,
        "worker_names_outside_sympy": dict(outside.most_common(5)),
        "worker_unparsed_sources": dict(unparsed.most_common(5)),
        "worker_risky_names": dict(bad),
    }


# ---------------------------------------------------------------------------------------------- driver


@dataclass
class Stats:
    examples: int = 0
    failures: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # the defined ones, by type
    first_failure: dict[str, str] = field(default_factory=dict)
    max_s: float = 0.0
    over_limit: int = 0
    code_calls: int = 0
    worker_restarts: int = 0  # grade-math: comparisons that ran past MATH_TIMEOUT_S (or killed the worker)

    def summary(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "failures": dict(self.failures),
            "defined_errors": dict(self.errors),
            "max_s": round(self.max_s, 3),
            "over_time_limit": self.over_limit,
            "eval_exec_or_system_import_seen": self.code_calls,
            **({"math_verify_restarts": self.worker_restarts} if self.worker_restarts else {}),
            "first_failure": self.first_failure,
        }


def run_one(target: Target, example: Any, stats: Stats | None = None, timed: bool = True) -> list[str]:
    """Check one example; returns its failures (kind: detail) and updates ``stats``.

    ``timed=False``: no failure for time (the test suite's grade-math: a worker restart takes seconds
    on a busy machine, and the drill measures it).
    """
    failures = []
    worker = grading_worker.WORKER._proc
    # No garbage collection while an example is timed: a full collection walks the drill's own heap
    # (hypothesis keeps every example's choices), took up to 2 s, and fell on whichever example
    # allocated the containers that triggered it.
    gc_enabled = gc.isenabled()
    gc.disable()
    with code_audit() as seen:
        t0 = time.perf_counter()
        try:
            for outcome in target.check(example) or ():
                if stats is not None:
                    stats.errors[outcome] += 1
        except AssertionError as e:
            failures.append(f"property: {str(e)[:300]}")
        except Exception as e:  # noqa: BLE001 - the drill's whole point
            failures.append(f"{type(e).__name__}: {str(e)[:300]}")
        elapsed = time.perf_counter() - t0
    if gc_enabled:
        gc.enable()
    if seen:
        failures.append(f"code: {seen[:3]}")
    if CANARY.exists():
        failures.append("canary: a payload ran")
        CANARY.unlink()
    # math: a comparison past MATH_TIMEOUT_S restarts the worker, which the next one waits for
    allowed = target.time_limit_s + (1.5 * WORKER_START_S[0] + 0.5 if target is MATH else 0.0)
    if timed and elapsed > allowed:
        failures.append(f"slow: {elapsed:.2f} s")
    if stats is not None:
        stats.examples += 1
        stats.worker_restarts += target is MATH and grading_worker.WORKER._proc is not worker
        stats.max_s = max(stats.max_s, elapsed)
        stats.over_limit += elapsed > TIME_LIMIT_S
        stats.code_calls += bool(seen)
        for f in failures:
            kind = f.partition(":")[0]
            stats.failures[kind] += 1
            stats.first_failure.setdefault(kind, f"{f[:200]} | example {repr(example)[:200]}")
    return failures


def warm_up(target: Target, time_worker: bool = True) -> None:
    """Fill lazy caches (type hints, regexes, the math-verify worker) outside the audit; with
    ``time_worker``, restart the math-verify worker and time its start (see ``run_one``)."""
    with contextlib.suppress(Exception):
        for example in target.fixed[:1]:
            target.check(example)
    if target is MATH and not time_worker:
        grade_answer("x+1", "1+x", "math", timeout_s=grading_worker.STARTUP_TIMEOUT_S)
    elif target is MATH:
        grading_worker.WORKER.close()
        t0 = time.perf_counter()
        grade_answer("x+1", "1+x", "math", timeout_s=grading_worker.STARTUP_TIMEOUT_S)
        WORKER_START_S[0] = time.perf_counter() - t0
    if target in (READERS, IMPORTERS):
        Problem.from_dict(Problem("a", "b", "c").to_dict())
        StepLabels.from_dict(StepLabels("a", 0, [], [], []).to_dict())
        Solution.from_dict(Solution("a", 0, "", []).to_dict())
        Scores.from_dict(Scores("a", 0, []).to_dict())
        import hashlib  # noqa: F401


def drive(target: Target, examples: int, seed_: int) -> Stats:
    stats = Stats()
    warm_up(target)
    for example in target.fixed:
        run_one(target, example, stats)

    @seed(seed_)
    @settings(
        max_examples=max(examples - len(target.fixed), 1),
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(target.strategy)
    def loop(example: Any) -> None:
        run_one(target, example, stats)

    loop()
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=10000, help="examples per target")
    ap.add_argument(
        "--math-examples", type=int, default=None, help="examples for grade-math (default: --examples)"
    )
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of: {', '.join(TARGETS)}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [n for n in args.targets.split(",") if n]
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        sys.exit(f"unknown target {unknown[0]!r}; valid: {', '.join(TARGETS)}")
    audit_log = SCRATCH / "worker-audit.jsonl"
    os.environ["PRMKIT_FUZZ_AUDIT"] = str(audit_log)
    grading_worker.WORKER.close()
    grading._WORKER_BOOT = WORKER_AUDIT + grading._WORKER_BOOT  # the next worker audits itself
    out: dict[str, Any] = {"bench": "fuzz", "seed": args.seed, "time_limit_s": TIME_LIMIT_S}
    t_all = time.perf_counter()
    for name in names:
        n = args.math_examples if name == "grade-math" and args.math_examples is not None else args.examples
        t0 = time.perf_counter()
        stats = drive(TARGETS[name], n, args.seed)
        out[name] = stats.summary() | {"wall_s": round(time.perf_counter() - t0, 1)}
        print(f"{name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
    if "grade-math" in names:
        out["grade-math"] |= {"math_timeout_s": MATH_TIMEOUT_S} | worker_audit_summary(audit_log)
    out["wall_s"] = round(time.perf_counter() - t_all, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
