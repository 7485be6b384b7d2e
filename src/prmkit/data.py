"""Problem loaders: GSM8K, MATH500, the synthetic world, and any JSONL with question/answer fields.

Every loader returns ``list[Problem]``. A path that exists is read locally (with located errors for
bad lines); otherwise a GSM8K or MATH500 source is taken as a ``datasets`` hub id, which needs a
network connection.

    >>> problems = load_problems("gsm8k", "../shared/data/gsm8k/test.jsonl", limit=2)  # doctest: +SKIP
    >>> problems[0].answer                                                            # doctest: +SKIP
    '18'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prmkit.io import DataError, check_field, iter_jsonl, read_jsonl, require_fields
from prmkit.types import Problem, index_problems

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

    repo, _, revision = (path_or_id or hub_default).partition("@")  # "openai/gsm8k@<commit>" pins it
    ds = load_dataset(repo, config, split=split, revision=revision or None)
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
        if not p.exists():
            raise DataError(
                path, None, f"a run directory without {p.relative_to(path)}: make its world with "
                f"`prmkit world --out {path}` (or give a problems JSONL)"
            )  # fmt: skip
    return read_jsonl(p, Problem)


def load_records(path: str, split: str = "test") -> list[Problem]:
    """A JSONL of prmkit ``Problem`` records (what ``prmkit import`` and the world write)."""
    return read_jsonl(path, Problem)


LOADERS: dict[str, Callable[..., list[Problem]]] = {
    "gsm8k": load_gsm8k,
    "math500": load_math500,
    "world": load_world,
    "jsonl": load_jsonl,
    "problems": load_records,
}


def load_problems(
    source: str, path: str, split: str = "test", limit: int | None = None, **kw: Any
) -> list[Problem]:
    """Problems from a named source ("gsm8k", "math500", "world", "jsonl", "problems") at a path or hub id."""
    if source not in LOADERS:
        raise ValueError(f"unknown problem source {source!r}; valid: {', '.join(LOADERS)}")
    problems = LOADERS[source](path, split=split, **kw)
    return problems[:limit] if limit else problems


# ---- step-label formats: Math-Shepherd ("ки" tags, +/- labels) and TRL stepwise_supervision ----

SHEPHERD_TAG = "ки"
_FINAL_LINE = re.compile(r"^####\s*(.+)$")


def _merge_final(steps: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
    """Fold a trailing ``#### N`` step into the previous one as "The answer is: N" (Math-Shepherd)."""
    m = _FINAL_LINE.match(steps[-1]) if steps else None
    if m is None or len(steps) < 2:
        return steps, labels
    return steps[:-2] + [f"{steps[-2]} The answer is: {m.group(1)}"], labels[:-2] + [min(labels[-2:])]


def to_math_shepherd(question: str, steps: list[str], labels: list[int], task: str = "GSM8K") -> dict:
    """One Math-Shepherd record: ``Step k: ... ки`` per step, the label copy with ``+``/``-``.

    >>> to_math_shepherd("Q?", ["a = 1", "#### 1"], [1, 0])["label"]
    'Q? Step 1: a = 1 The answer is: 1 -'
    """
    steps, labels = _merge_final(steps, labels)
    body = [f"Step {i + 1}: {s}" for i, s in enumerate(steps)]
    tagged = "\n".join(f"{b} {SHEPHERD_TAG}" for b in body)
    marked = "\n".join(f"{b} {'+' if y else '-'}" for b, y in zip(body, labels, strict=True))
    return {"input": f"{question} {tagged}", "label": f"{question} {marked}", "task": task}


def from_math_shepherd(record: dict) -> tuple[str, list[str], list[int]]:
    """(question, steps, labels) of a Math-Shepherd record; the inverse of ``to_math_shepherd``."""
    text, label = record["input"], record["label"]
    for name, value in (("input", text), ("label", label)):
        if not isinstance(value, str):
            raise ValueError(f"field '{name}' must be a string, got {type(value).__name__}")
    if SHEPHERD_TAG not in text:
        raise ValueError(f"no '{SHEPHERD_TAG}' step tag in 'input'")
    parts = text.split(SHEPHERD_TAG)
    marks, pos = [], 0
    for part in parts[:-1]:  # the label string is the input with each tag replaced by + or -
        pos += len(part)
        if pos >= len(label) or label[pos] not in "+-":
            raise ValueError("'label' does not match 'input' with each tag replaced by + or -")
        marks.append(int(label[pos] == "+"))
        pos += 1
    first = re.search(r"Step 1\s*:", parts[0])
    question = parts[0][: first.start()].strip() if first else ""
    if first:
        parts[0] = parts[0][first.start() :]
    steps = [re.sub(r"^\s*Step \d+\s*:\s*", "", p).strip() for p in parts[:-1]]
    return question, steps, marks


def load_math_shepherd(path: str | Path) -> list[tuple[str, list[str], list[int]]]:
    """Read a Math-Shepherd JSONL (``{input, label, task}``) with located errors."""
    out = []
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, "input", "label")
        try:
            out.append(from_math_shepherd(rec))
        except ValueError as e:  # the message names the field
            raise DataError(path, lineno, str(e)) from None
    return out


def to_stepwise_supervision(question: str, steps: list[str], labels: list[int]) -> dict:
    """TRL's ``stepwise_supervision`` row: ``{prompt, completions, labels}`` with boolean labels."""
    return {"prompt": question, "completions": list(steps), "labels": [bool(y) for y in labels]}


def export_labels(
    labels: list, problems: list[Problem], out: str | Path, fmt: str, label: str = "hard"
) -> int:
    """Write labelled solutions as Math-Shepherd JSONL or a TRL stepwise_supervision dataset directory."""
    from prmkit.io import write_jsonl

    if fmt not in ("math-shepherd", "trl") or label not in ("hard", "soft"):
        raise ValueError(f"export: format must be math-shepherd or trl (got {fmt!r}), label hard or soft")
    by_id = index_problems(problems)
    rows = []
    for r in labels:
        if r.skipped or r.problem_id not in by_id:
            continue
        values = r.hard if label == "hard" else [None if s is None else int(s > 0.5) for s in r.soft]
        if any(v is None for v in values):
            raise ValueError(f"{r.problem_id}/{r.sample_id}: some steps have no {label} label to export")
        q = by_id[r.problem_id].question
        rows.append(
            to_math_shepherd(q, r.steps, values)
            if fmt == "math-shepherd"
            else to_stepwise_supervision(q, r.steps, values)
        )
    if fmt == "math-shepherd":
        write_jsonl(out, rows)
    else:
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(out))
    return len(rows)


# ---- PRM800K human step labels (the stepwise-critic form: one row per rated step) ----

NEUTRAL_RULES = {"positive": 1, "negative": 0, "skip": None}


def _question_id(prefix: str, question: str) -> str:
    """A stable id from the question text.

    surrogatepass: JSON's "\\ud800" escape reads as a lone surrogate, which strict UTF-8 refuses to
    encode; valid text hashes as before.
    """
    import hashlib

    return prefix + hashlib.sha1(question.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def load_prm800k_steps(path: str | Path, neutral: str = "positive") -> tuple[list[Problem], list]:
    """PRM800K phase-1 rows ``{instruction, responses, next_response, rating, ...}`` as problems and
    one StepLabels per row: its previous steps (context, unlabelled) and its new step labelled by the
    row's rating (1 -> 1, -1 -> 0, 0 -> ``neutral``: "positive", "negative" or "skip"; unrated -> None).
    One label per row keeps each human rating supervised once, however many rows share a prefix.
    Reads JSONL or Parquet. The gold answer is not in these rows, so ``Problem.answer`` is empty: the
    records serve reward-model training, not grading.
    """
    from prmkit.types import StepLabels

    if neutral not in NEUTRAL_RULES:
        raise ValueError(f"neutral rule {neutral!r}; valid: {', '.join(NEUTRAL_RULES)}")
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = list(enumerate(pq.read_table(path).to_pylist(), start=1))
    else:
        rows = list(iter_jsonl(path))
    mapping = {1: 1, -1: 0, 0: NEUTRAL_RULES[neutral], None: None}
    problems: dict[str, Problem] = {}
    labels = []
    for lineno, r in rows:
        require_fields(path, lineno, r, "instruction", "responses", "next_response", "rating")
        check_field(path, lineno, r, "instruction", isinstance(r["instruction"], str), "a string")
        ok = isinstance(r["responses"], list) and all(isinstance(x, str) for x in r["responses"])
        check_field(path, lineno, r, "responses", ok, "a list of strings (the previous steps)")
        check_field(path, lineno, r, "next_response", isinstance(r["next_response"], str), "a string")
        rating = r["rating"]
        ok = rating is None or (type(rating) in (int, float) and rating in mapping)  # true is not 1
        check_field(path, lineno, r, "rating", ok, "1, 0, -1 or null")
        q = r["instruction"]
        pid = _question_id("prm800k-", q)
        problems.setdefault(pid, Problem(id=pid, question=q, answer="", source="prm800k", kind="math"))
        steps = [*r["responses"], r["next_response"]]
        label = mapping[r["rating"]]
        hard = [None] * (len(steps) - 1) + [label]
        soft = [None] * (len(steps) - 1) + [None if label is None else float(label)]
        meta = {"rating": r["rating"], "is_solution": bool(r.get("is_solution"))}
        labels.append(StepLabels(pid, lineno, steps, hard, soft, source="prm800k", meta=meta))
    return list(problems.values()), labels


def import_math_shepherd(path: str | Path, **_: object) -> tuple[list[Problem], list]:
    """A Math-Shepherd file as problems (no gold answer) and hard/soft StepLabels from its +/- marks."""
    from prmkit.types import StepLabels

    problems: dict[str, Problem] = {}
    labels = []
    for i, (q, steps, marks) in enumerate(load_math_shepherd(path)):
        pid = _question_id("ms-", q)
        problems.setdefault(pid, Problem(id=pid, question=q, answer="", source="math-shepherd"))
        labels.append(StepLabels(pid, i, steps, marks, [float(m) for m in marks], source="math-shepherd"))
    return list(problems.values()), labels


IMPORTERS: dict[str, Callable[..., tuple[list[Problem], list]]] = {
    "prm800k": load_prm800k_steps,
    "math-shepherd": import_math_shepherd,
}
