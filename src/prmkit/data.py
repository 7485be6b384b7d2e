"""Problem loaders: GSM8K, MATH500, the synthetic world, and any JSONL with question/answer fields.

Every loader returns ``list[Problem]``. A path that exists is read locally (with located errors for
bad lines); otherwise a GSM8K or MATH500 source is taken as a ``datasets`` hub id, which needs a
network connection.

    >>> problems = load_problems("gsm8k", "../shared/data/gsm8k/test.jsonl", limit=2)  # doctest: +SKIP
    >>> problems[0].answer                                                            # doctest: +SKIP
    '18'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prmkit.io import DataError, iter_jsonl, read_jsonl, require_fields
from prmkit.types import Problem

GSM8K_HUB = "openai/gsm8k"
MATH500_HUB = "HuggingFaceH4/MATH-500"


def gsm8k_gold(solution: str) -> str:
    """The gold answer of a GSM8K reference solution: the text after ``####``, commas removed.

    >>> gsm8k_gold("She makes 9 * 2 = $<<9*2=18>>18.\\n#### 1,018")
    '1018'
    """
    if "####" not in solution:
        raise ValueError("no '####' answer line")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def _records(path_or_id: str, hub_default: str, split: str, config: str | None) -> Iterable[tuple[int, dict]]:
    path = Path(path_or_id)
    if path.exists():
        yield from iter_jsonl(path)
        return
    if path.suffix in (".jsonl", ".json") or path_or_id.startswith((".", "/")):
        raise DataError(path, None, "file not found")
    from datasets import load_dataset  # a hub id: needs the network

    ds = load_dataset(path_or_id or hub_default, config, split=split)
    yield from enumerate(ds, start=1)


def load_gsm8k(path_or_id: str = GSM8K_HUB, split: str = "test") -> list[Problem]:
    """GSM8K from its JSONL (``{question, answer}``) or from the hub (config "main")."""
    out = []
    for lineno, rec in _records(path_or_id, GSM8K_HUB, split, "main"):
        require_fields(path_or_id, lineno, rec, "question", "answer")
        try:
            gold = gsm8k_gold(rec["answer"])
        except ValueError as e:
            raise DataError(path_or_id, lineno, str(e), "answer") from None
        out.append(
            Problem(
                id=f"gsm8k-{split}-{lineno - 1:05d}",
                question=rec["question"],
                answer=gold,
                solution=rec["answer"],
                source="gsm8k",
                kind="gsm8k",
                split=split,
            )
        )
    return out


def load_math500(path_or_id: str = MATH500_HUB, split: str = "test") -> list[Problem]:
    """MATH500 (PRM800K's MATH test split) from its JSONL or the hub."""
    out = []
    for lineno, rec in _records(path_or_id, MATH500_HUB, split, None):
        require_fields(path_or_id, lineno, rec, "problem", "answer")
        out.append(
            Problem(
                id=rec.get("unique_id") or f"math500-{lineno - 1:03d}",
                question=rec["problem"],
                answer=str(rec["answer"]),
                solution=rec.get("solution"),
                source="math500",
                kind="math",
                split=split,
                meta={k: rec[k] for k in ("subject", "level") if k in rec},
            )
        )
    return out


def load_jsonl(
    path: str,
    split: str = "test",
    question_field: str = "question",
    answer_field: str = "answer",
    kind: str = "gsm8k",
    id_field: str | None = None,
) -> list[Problem]:
    """Any JSONL of problems. An answer holding a GSM8K solution (``#### N``) keeps it as solution."""
    out = []
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, question_field, answer_field)
        answer, solution = str(rec[answer_field]), None
        if "####" in answer:
            solution, answer = answer, gsm8k_gold(answer)
        pid = str(rec[id_field]) if id_field and id_field in rec else f"{Path(path).stem}-{lineno - 1:05d}"
        out.append(
            Problem(
                id=pid, question=rec[question_field], answer=answer, solution=solution, kind=kind, split=split
            )
        )
    return out


def load_world(path: str, split: str = "test") -> list[Problem]:
    """World problems from a run directory (``world/{split}.jsonl``) or a problems JSONL file."""
    p = Path(path)
    if p.is_dir():
        p = p / "world" / f"{split}.jsonl"
    return read_jsonl(p, Problem)


LOADERS: dict[str, Callable[..., list[Problem]]] = {
    "gsm8k": load_gsm8k,
    "math500": load_math500,
    "world": load_world,
    "jsonl": load_jsonl,
}


def load_problems(
    source: str, path: str, split: str = "test", limit: int | None = None, **kw: Any
) -> list[Problem]:
    """Problems from a named source ("gsm8k", "math500", "world", "jsonl") at a path or hub id."""
    if source not in LOADERS:
        raise ValueError(f"unknown problem source {source!r}; valid: {', '.join(LOADERS)}")
    problems = LOADERS[source](path, split=split, **kw)
    return problems[:limit] if limit else problems
