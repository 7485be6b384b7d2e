"""JSONL reading, appending with resume, and atomic whole-file writes.

Long stages append one record per finished unit of work and flush it, so a killed job loses at
most the line it was writing. On resume, ``open_appender`` repairs a torn last line (a write cut
off mid-record) by truncating it, and returns the keys already written so the stage can skip
them. Whole files (reports, configs) are written to a temporary file and renamed into place, so a
reader never sees half a file.

Every parse error names the file, the 1-based line and, for a record that does not fit its type,
the field.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
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
    with path.open("rb") as f:  # bytes, so a line that is not UTF-8 is reported with its number
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, lineno, f"not UTF-8 text ({e.reason} at byte {e.start + 1})") from None
            if not line.strip():
                continue
            obj = _parse_line(path, lineno, line)
            if not isinstance(obj, dict):
                raise DataError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _parse_line(path: Path, lineno: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(path, lineno, f"bad JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise DataError(path, lineno, "bad JSON (nested too deeply)") from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion: ..."
        raise DataError(path, lineno, f"bad JSON ({str(e).partition(':')[0]})") from None


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


def check_field(
    path: str | Path, lineno: int | None, obj: dict[str, Any], name: str, ok: bool, expected: str
) -> None:
    """Raise a located DataError unless ``ok``: the value of field ``name`` is not ``expected``."""
    if not ok:
        raise DataError(path, lineno, f"field '{name}' must be {expected}, got {obj[name]!r:.60}", name)


def is_number(x: Any) -> bool:
    """An int or float, not a bool (JSON's true is not a number here)."""
    return isinstance(x, int | float) and not isinstance(x, bool)


def read_scores(path: str | Path) -> dict[tuple[str, int], list[float]]:
    """A ``scores.jsonl`` (from ``prmkit score``) as step scores keyed by (problem_id, sample_id)."""
    out = {}
    for lineno, r in iter_jsonl(path):
        require_fields(path, lineno, r, "problem_id", "sample_id", "scores")
        check_field(path, lineno, r, "problem_id", isinstance(r["problem_id"], str), "a string")
        sid = r["sample_id"]
        check_field(
            path, lineno, r, "sample_id", isinstance(sid, int) and not isinstance(sid, bool), "an integer"
        )
        ok = isinstance(r["scores"], list) and all(map(is_number, r["scores"]))
        check_field(path, lineno, r, "scores", ok, "a list of numbers")
        out[(r["problem_id"], r["sample_id"])] = r["scores"]
    return out


def _dump(record: Record | dict[str, Any]) -> str:
    obj = record.to_dict() if isinstance(record, Record) else record
    line = json.dumps(obj, ensure_ascii=False)
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" read from JSON): write it escaped
            line = json.dumps(obj)
    return line


def repair_tail(path: str | Path) -> bool:
    """Truncate a torn last line (no trailing newline or not valid JSON). Returns True if it cut."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        # Read back from the end until the last line's start is in view. Chunks go in a list and only
        # the new chunk is searched: growing one bytes object cost quadratic time on a long torn line.
        chunks: list[bytes] = []
        pos, trailing = size, True  # trailing: all read so far is the final run of newlines
        while pos > 0:
            step = min(4096, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            chunks.append(chunk)
            if trailing:
                chunk = chunk.rstrip(b"\n")
                trailing = not chunk
            if b"\n" in chunk:
                break
        tail = b"".join(reversed(chunks))
        body = tail.rstrip(b"\n")
        cut = body.rfind(b"\n") + 1
        last = body[cut:]
        start = pos + cut
        ok = tail.endswith(b"\n")
        if ok:
            try:
                json.loads(last)
            except (ValueError, RecursionError):
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


def open_appender(path: str | Path, key: Callable[[dict[str, Any]], Any]) -> tuple[JsonlAppender, set[Any]]:
    """Resume an append-only JSONL output: repair a torn tail, return the appender and done keys."""
    path = Path(path)
    repair_tail(path)
    done: set[Any] = set()
    if path.exists():
        for lineno, obj in iter_jsonl(path):
            try:
                done.add(key(obj))
            except KeyError as e:
                raise DataError(path, lineno, f"missing field {e} (has: {', '.join(sorted(obj))})") from None
            except TypeError as e:  # an unhashable key: a list or object where a string or number belongs
                raise DataError(path, lineno, f"record key is not a string or number ({e})") from None
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
