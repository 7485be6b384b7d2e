"""JSONL reading, appending with resume, and atomic whole-file writes.

Long stages append the records of each finished unit of work (a chunk of problems, of solutions)
in one write and flush it, so a killed job loses at most the unit it was writing. On resume,
``open_appender`` repairs a torn last line (a write cut off mid-record) by truncating it, removes
the complete lines of a unit whose write the kill cut short (the unit is redone whole, so a stage
whose results depend on the unit's make-up reproduces an uninterrupted run), and returns the keys
already written so the stage can skip them. Whole files (reports, configs) are written to a temporary file and renamed into place, so a
reader never sees half a file.

Every parse error names the file, the 1-based line and, for a record that does not fit its type,
the field.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prmkit.types import Record, RecordError

R = TypeVar("R", bound=Record)


class DataError(ValueError):
    """Bad input data, located: ``path:line: field 'x': message``."""

    def __init__(self, path: str | Path, line: int | None, message: str, field: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        what = f"field '{field}': " if field and f"'{field}'" not in message else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.field = str(path), line, field


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad JSON raises a located DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, "file not found")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, lineno, f"bad JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_jsonl(path: str | Path, cls: type[R] | None = None) -> list[Any]:
    """All records of a JSONL file, as dicts or (with ``cls``) as validated records."""
    out = []
    for lineno, obj in iter_jsonl(path):
        if cls is None:
            out.append(obj)
            continue
        try:
            out.append(cls.from_dict(obj))
        except RecordError as e:
            raise DataError(path, lineno, str(e), e.field) from None
    return out


def require_fields(path: str | Path, lineno: int, obj: dict[str, Any], *fields: str) -> None:
    """Raise a located DataError for the first of ``fields`` missing from ``obj``."""
    for name in fields:
        if name not in obj:
            raise DataError(path, lineno, f"missing field '{name}' (has: {', '.join(sorted(obj))})", name)


def read_scores(path: str | Path) -> dict[tuple[str, int], list[float]]:
    """A ``scores.jsonl`` (from ``prmkit score``) as step scores keyed by (problem_id, sample_id)."""
    out = {}
    for lineno, r in iter_jsonl(path):
        require_fields(path, lineno, r, "problem_id", "sample_id", "scores")
        out[(r["problem_id"], r["sample_id"])] = r["scores"]
    return out


def _dump(record: Record | dict[str, Any]) -> str:
    obj = record.to_dict() if isinstance(record, Record) else record
    return json.dumps(obj, ensure_ascii=False)


def repair_tail(path: str | Path) -> bool:
    """Truncate a torn last line (no trailing newline or not valid JSON). Returns True if it cut."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        # find the start of the last line
        pos, chunk = size, 4096
        tail = b""
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            if tail.rstrip(b"\n").rfind(b"\n") >= 0:
                break
        body = tail.rstrip(b"\n")
        cut = body.rfind(b"\n") + 1
        last = body[cut:]
        start = pos + cut
        ok = tail.endswith(b"\n")
        if ok:
            try:
                json.loads(last)
            except ValueError:
                ok = False
        if ok:
            return False
        f.truncate(start)
        return True


class JsonlAppender:
    """Append records one per line, flushed and fsynced so a kill loses at most the current line."""

    def __init__(self, path: str | Path, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")
        self._fsync = fsync

    def write(self, record: Record | dict[str, Any]) -> None:
        self._f.write(_dump(record) + "\n")
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def write_many(self, records: Iterable[Record | dict[str, Any]]) -> None:
        self._f.write("".join(_dump(r) + "\n" for r in records))
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_lines(f, count: int) -> list[tuple[int, bytes]]:
    """Up to ``count`` last lines of a binary file that ends in a newline, as (offset, line), in order."""
    f.seek(0, os.SEEK_END)
    pos = f.tell()
    tail = b""
    while pos > 0 and tail.count(b"\n") <= count:
        step = min(1 << 16, pos)
        pos -= step
        f.seek(pos)
        tail = f.read(step) + tail
    lines = tail.split(b"\n")[:-1]  # the file ends in "\n": the last piece is empty
    if pos > 0:  # the first piece may be the end of an earlier line
        lines, pos = lines[1:], pos + len(lines[0]) + 1
    out, offset = [], pos
    for line in lines:
        out.append((offset, line))
        offset += len(line) + 1
    return out[-count:]


def _key_of(line: bytes, key: Callable[[dict[str, Any]], Hashable]) -> Hashable:
    """A line's record key, or None for a line that is not a record with that key (left to the reader)."""
    try:
        obj = json.loads(line)
        return key(obj) if isinstance(obj, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def drop_cut_unit(
    path: str | Path, key: Callable[[dict[str, Any]], Hashable], units: Iterable[Sequence[Hashable]]
) -> int:
    """Truncate the lines of a unit whose write was cut short; returns how many lines it removed.

    ``units`` are the groups of record keys a stage appends in one write each, in write order. A kill
    cuts a write between lines as well as inside one (the kernel stops a large write at a page
    boundary), so after ``repair_tail`` the file may end in the first lines of a unit. Those lines
    are removed only when they are exactly a proper prefix of one unit's keys, the signature of a
    cut write; anything else (a unit whose write finished, records of another configuration) is
    left alone. With units ``[[a, b, c], [d, e]]``, a file holding a, b, c, d loses d (``[d, e]``
    is redone); one holding a, b, c, or a, b, c, e, keeps every line.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    where = {k: unit for unit in map(list, units) for k in unit}
    with path.open("rb+") as f:
        last = _last_lines(f, 1)
        unit = where.get(_key_of(last[0][1], key)) if last else None
        if unit is None:
            return 0
        members = set(unit)
        tail: list[tuple[int, Hashable]] = []
        for offset, line in reversed(_last_lines(f, len(unit) + 1)):
            k = _key_of(line, key)
            if k not in members:
                break
            tail.insert(0, (offset, k))
        keys = [k for _, k in tail]
        if len(keys) >= len(unit) or keys != unit[: len(keys)]:
            return 0
        f.truncate(tail[0][0])
        return len(keys)


def open_appender(
    path: str | Path,
    key: Callable[[dict[str, Any]], Any],
    units: Iterable[Sequence[Hashable]] | None = None,
) -> tuple[JsonlAppender, set[Any]]:
    """Resume an append-only JSONL output: repair a torn tail, drop a cut unit (``units``: see
    ``drop_cut_unit``), return the appender and the keys done."""
    path = Path(path)
    repair_tail(path)
    if units is not None:
        drop_cut_unit(path, key, units)
    done: set[Any] = set()
    if path.exists():
        done = {key(obj) for _, obj in iter_jsonl(path)}
    return JsonlAppender(path), done


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole file via a temporary file and rename, so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> None:
    """Atomically write a whole JSONL file."""
    atomic_write_text(path, "".join(_dump(r) + "\n" for r in records))
