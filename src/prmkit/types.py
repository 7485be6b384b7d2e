"""The records every stage reads and writes, as frozen dataclasses with a JSON round-trip.

Each record is one JSONL line. ``from_dict`` validates field presence and type and raises
``RecordError`` naming the missing or bad field, so the I/O layer can add the file and line.

    >>> p = Problem(id="w-1", question="Tom has 3 apples...", answer="7")
    >>> Problem.from_dict(p.to_dict()) == p
    True
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

SolutionKey = tuple[str, int]  # (problem_id, sample_id): the one key of a solution and its records


class RecordError(ValueError):
    """A record that does not fit its type; ``field`` names the offending key."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _check(value: Any, hint: Any) -> bool:
    """A shallow runtime check of ``value`` against a (resolved) type hint."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_check(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_check(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


class Record:
    """Mixin: JSON round-trip with field validation for the dataclasses below."""

    _hints: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Any) -> Self:
        if not isinstance(d, dict):
            raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
        hints = cls.__dict__.get("_hints")
        if hints is None:
            hints = typing.get_type_hints(cls)
            cls._hints = hints
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in d:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise RecordError(f"{cls.__name__}: missing field '{f.name}'", f.name)
                continue
            value = d[f.name]
            if not _check(value, hints[f.name]):
                raise RecordError(
                    f"{cls.__name__}: field '{f.name}' has {type(value).__name__} {value!r:.60}, "
                    f"expected {hints[f.name]}",
                    f.name,
                )
            kwargs[f.name] = value
        return cls(**kwargs)


def solution_key(record: Any) -> SolutionKey:
    """(problem_id, sample_id) of a record or of its JSON object (``io.open_appender``'s resume key).

    >>> solution_key({"problem_id": "w-1", "sample_id": 3}) == solution_key(Solution("w-1", 3, "", []))
    True
    """
    if isinstance(record, dict):
        return (record["problem_id"], record["sample_id"])
    return (record.problem_id, record.sample_id)


class Keyed:
    """Mixin: ``key`` = ``solution_key(self)``."""

    @property
    def key(self) -> SolutionKey:
        return solution_key(self)


@dataclass(frozen=True)
class Problem(Record):
    """A math problem with its gold final answer.

    ``answer`` is the final answer as a string ("18", "\\frac{1}{2}"); ``solution`` is a reference
    solution when one exists (GSM8K's annotated solution ending in ``#### N``); ``source`` says which
    loader produced it ("world", "gsm8k", "math500", "jsonl") and ``kind`` which grader applies.
    ``meta`` carries loader-specific data, e.g. the world's computation graph for its oracle.
    """

    id: str
    question: str
    answer: str
    solution: str | None = None
    source: str = "jsonl"
    kind: str = "gsm8k"
    split: str = "test"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Solution(Keyed, Record):
    """One sampled (or reference) solution to a problem, already split into steps.

    ``answer`` is what the grader extracted (None when nothing could be), ``correct`` the grade
    against the problem's gold answer.
    """

    problem_id: str
    sample_id: int
    text: str
    steps: list[str]
    answer: str | None = None
    correct: bool | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def index_problems(problems: Iterable[Problem]) -> dict[str, Problem]:
    """Problems by id (a repeated id: the last one wins, as a dict built by hand would)."""
    return {p.id: p for p in problems}


@dataclass(frozen=True)
class Verdict(Record):
    """The world oracle's judgement of a solution's steps.

    ``step_correct[i]`` is the local truth of step i (it states only true values of the problem and
    its own arithmetic is right); ``first_error`` is the index of the first wrong step or -1;
    ``error_types[i]`` is None for a correct step, else one of ``ERROR_TYPES``.
    """

    ERROR_TYPES: ClassVar[tuple[str, ...]] = (
        "calculation",
        "logical",
        "irrelevant",
        "accumulative",
        "other",
    )

    step_correct: list[bool]
    first_error: int
    error_types: list[str | None]
    final_correct: bool

    @property
    def error_type(self) -> str | None:
        """The type of the first error (what Math-Minos' taxonomy classifies), None if no error."""
        return None if self.first_error < 0 else self.error_types[self.first_error]


@dataclass(frozen=True)
class StepLabels(Keyed, Record):
    """Step labels of one solution: Monte-Carlo estimates or a human/oracle source.

    ``hard[i]`` is 1 when some completion from the prefix ending at step i reached the gold answer
    (Math-Shepherd's HE), ``soft[i]`` the fraction that did (SE), None where not measured.
    ``final_correct`` is the grader's verdict on the solution's own answer (None: not graded);
    ``skipped`` says why annotation left the solution unlabelled (None: labelled); ``target``, when set,
    is an ORM's target in [0, 1] in place of ``final_correct`` (a PRM's min step score,
    ``reward.train.prm_supervised``). Records of the older layout, with ``final_correct`` and ``skipped``
    inside ``meta``, read as the same record.
    """

    problem_id: str
    sample_id: int
    steps: list[str]
    hard: list[int | None]
    soft: list[float | None]
    source: str = "mc"
    final_correct: bool | None = None
    skipped: str | None = None
    target: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any) -> Self:
        meta = d.get("meta") if isinstance(d, dict) else None
        if isinstance(meta, dict) and any(k in meta and k not in d for k in ("final_correct", "skipped")):
            lifted = {k: meta[k] for k in ("final_correct", "skipped") if k in meta and k not in d}
            d = {**d, **lifted, "meta": {k: v for k, v in meta.items() if k not in lifted}}
        return super().from_dict(d)


@dataclass(frozen=True)
class Scores(Keyed, Record):
    """One line of ``scores.jsonl``: a verifier's score per step of one solution (``nan`` for a step
    cut by the model's context, ``[]`` for a step-less solution)."""

    problem_id: str
    sample_id: int
    scores: list[float]
