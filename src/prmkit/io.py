"""JSONL reading, appending with resume, and atomic whole-file writes.

Long stages append the records of each finished unit of work (a chunk of problems, of solutions)
in one write and flush it, so a killed job loses at most the unit it was writing. On resume,
``open_appender`` repairs a torn last line (a write cut off mid-record) by truncating it, removes
the complete lines of a unit whose write the kill cut short (the unit is redone whole, so a stage
whose results depend on the unit's make-up reproduces an uninterrupted run), and returns the keys
already written so the stage can skip them. Whole files (reports, configs) are written to a temporary file and renamed into place, so a
reader never sees half a file.

Every parse error names the file, the 1-based line and, for a record that does not fit its type,
the field. Input files are data from anywhere, so reading is bounded: a line longer than
``MAX_LINE_BYTES`` or a file of more than ``MAX_RECORDS`` records is refused with a located error after
reading at most one line's limit of it (a 2 GB single-line file costs 16 MiB, not 2 GB); whole-file
JSON is refused above ``MAX_JSON_BYTES``. Every reader takes its own limits as arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prmkit.types import Record, RecordError, Scores, SolutionKey

R = TypeVar("R", bound=Record)

# Defaults, read at call time (a test or a caller may change them): a record is a few KB (a long
# solution with its steps); a line of 16 MiB is no record, and 10 million records is 100 times the
# largest file prmkit writes.
MAX_LINE_BYTES = 16 << 20
MAX_RECORDS = 10_000_000
MAX_JSON_BYTES = 256 << 20  # a whole-file JSON (ProcessBench subsets are a few MB)


class DataError(ValueError):
    """Bad input data, located: ``path:line: field 'x': message``."""

    def __init__(self, path: str | Path, line: int | None, message: str, field: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        what = f"field '{field}': " if field and f"'{field}'" not in message else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.field = str(path), line, field


def iter_jsonl(
    path: str | Path, max_line_bytes: int | None = None, max_records: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad JSON, a line longer than
    ``max_line_bytes`` (default ``MAX_LINE_BYTES``) or more than ``max_records`` records (default
    ``MAX_RECORDS``) raise a located DataError. Lines are read in pieces of at most the limit."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, "file not found")
    limit = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    most = MAX_RECORDS if max_records is None else max_records
    records = 0
    with path.open("rb") as f:
        lineno = 0
        while raw := f.readline(limit + 1):  # never more than limit + 1 bytes of one line in memory
            lineno += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                raise DataError(path, lineno, f"line longer than {limit} bytes")
            if not raw.strip():
                continue
            records += 1
            if records > most:
                raise DataError(path, lineno, f"more than {most} records")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, lineno, f"not UTF-8 text ({e.reason} at byte {e.start + 1})") from None
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


def check_size(path: str | Path, max_bytes: int | None = None) -> Path:
    """``path``, if it is no larger than ``max_bytes`` (default ``MAX_JSON_BYTES``): for readers of a
    whole JSON file, which must hold all of it in memory."""
    path = Path(path)
    limit = MAX_JSON_BYTES if max_bytes is None else max_bytes
    if not path.exists():
        raise DataError(path, None, "file not found")
    size = path.stat().st_size
    if size > limit:
        raise DataError(path, None, f"file of {size} bytes is larger than the {limit} bytes read whole")
    return path


def read_jsonl(
    path: str | Path,
    cls: type[R] | None = None,
    max_line_bytes: int | None = None,
    max_records: int | None = None,
) -> list[Any]:
    """All records of a JSONL file, as dicts or (with ``cls``) as validated records (limits as ``iter_jsonl``)."""
    out = []
    for lineno, obj in iter_jsonl(path, max_line_bytes, max_records):
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


def read_scores(
    path: str | Path, max_line_bytes: int | None = None, max_records: int | None = None
) -> dict[SolutionKey, list[float]]:
    """A ``scores.jsonl`` (from ``prmkit score``, ``types.Scores`` records) as step scores by solution key."""
    return {r.key: r.scores for r in read_jsonl(path, Scores, max_line_bytes, max_records)}


def _dump(record: Record | dict[str, Any]) -> str:
    obj = record.to_dict() if isinstance(record, Record) else record
    line = json.dumps(obj, ensure_ascii=False)
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" read from JSON): write it escaped
            line = json.dumps(obj)
    return line


def repair_tail(path: str | Path, max_line_bytes: int | None = None) -> bool:
    """Truncate a torn last line (no trailing newline or not valid JSON). Returns True if it cut.
    A last line longer than ``max_line_bytes`` (default ``MAX_LINE_BYTES``) is an error, not torn: no
    prmkit writer leaves such a line, so it is not cut away unasked. Reading back is linear in its length."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    limit = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    chunk = 4096
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        end = size  # the end of the last line that is not empty
        while end > 0:
            f.seek(max(0, end - chunk))
            piece = f.read(min(chunk, end))
            kept = piece.rstrip(b"\n")
            end -= len(piece) - len(kept)
            if kept:
                break
        if end == 0:  # only newlines
            return False
        start, pieces = end, []  # the start of that line, and its pieces from the end
        while start > 0:
            f.seek(max(0, start - chunk))
            piece = f.read(min(chunk, start))
            cut = piece.rfind(b"\n") + 1
            pieces.append(piece[cut:])
            start -= len(piece) - cut
            if end - start > limit:
                raise DataError(path, None, f"last line longer than {limit} bytes")
            if cut:
                break
        ok = end < size  # a newline follows it
        if ok:
            try:
                json.loads(b"".join(reversed(pieces)))
            except (ValueError, RecursionError):
                ok = False
        if ok:
            return False
        f.truncate(start)
        return True


class JsonlAppender:
    """Append records one per line, flushed and fsynced so a kill loses at most the current line.

    The file is opened at the first write (or at a clean close, so a finished output exists even when
    empty), after ``before_first_write`` (e.g. the output's claim): a run that fails before it has a
    record to write leaves nothing behind."""

    def __init__(
        self, path: str | Path, fsync: bool = True, before_first_write: Callable[[], None] | None = None
    ):
        self.path = Path(path)
        self._f: Any = None
        self._fsync = fsync
        self._before = before_first_write

    def _file(self):
        if self._f is None:
            if self._before is not None:
                self._before()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = self.path.open("a", encoding="utf-8")
        return self._f

    def write(self, record: Record | dict[str, Any]) -> None:
        self.write_many([record])

    def write_many(self, records: Iterable[Record | dict[str, Any]]) -> None:
        text = "".join(_dump(r) + "\n" for r in records)
        f = self._file()
        f.write(text)
        f.flush()
        if self._fsync:
            os.fsync(f.fileno())

    def close(self) -> None:
        self._file().close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif self._f is not None:
            self._f.close()


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
    max_line_bytes: int | None = None,
    max_records: int | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[JsonlAppender, set[Any]]:
    """Resume an append-only JSONL output: repair a torn tail, drop a cut unit (``units``: see
    ``drop_cut_unit``), return the appender and the keys done (limits as ``iter_jsonl``). With
    ``config`` (what determines the records: model, settings), the output is claimed for it first
    (``claim_output``), so a rerun never mixes two configurations."""
    path = Path(path)
    if config is not None:
        claim_output(path, config, write=False)  # refused now; claimed when the first record is written
    repair_tail(path, max_line_bytes)
    if units is not None:
        drop_cut_unit(path, key, units)
    done: set[Any] = set()
    if path.exists():
        for lineno, obj in iter_jsonl(path, max_line_bytes, max_records):
            try:
                done.add(key(obj))
            except KeyError as e:
                raise DataError(path, lineno, f"missing field {e} (has: {', '.join(sorted(obj))})") from None
            except TypeError as e:  # an unhashable key: a list or object where a string or number belongs
                raise DataError(path, lineno, f"record key is not a string or number ({e})") from None
    claim = None if config is None else lambda: claim_output(path, config)
    return JsonlAppender(path, before_first_write=claim), done


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


def meta_path(out_path: str | Path) -> Path:
    """The metadata file beside an output JSONL: ``scores.jsonl`` -> ``scores.meta.json``."""
    return Path(out_path).with_suffix(".meta.json")


def _read_meta(out_path: str | Path) -> dict[str, Any]:
    meta = meta_path(out_path)
    try:
        return json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(
            meta, None, f"not the JSON prmkit writes ({e}); delete it with {Path(out_path).name}"
        ) from None


def _relative_paths(value: Any, base: str) -> Any:
    """``value`` with every absolute path in it made relative to ``base``."""
    if isinstance(value, dict):
        return {k: _relative_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative_paths(v, base) for v in value]
    return os.path.relpath(value, base) if isinstance(value, str) and os.path.isabs(value) else value


def fingerprint(values: list[Any] | bytes | memoryview, what: str, count: int | None = None) -> str:
    """A short identity of data for a claimed configuration: ``count`` (default: the list's length) and
    a digest of the JSON values, or of the bytes that serialise them (a memoryview: without a copy).

    >>> fingerprint(["a", "b"], "problems")
    '2 problems, sha256 3554d2b8a1e3'
    """
    if not isinstance(values, bytes | memoryview):
        count = len(values) if count is None else count
        values = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str).encode()
    return f"{count} {what}, sha256 {hashlib.sha256(values).hexdigest()[:12]}"


def claim_output(
    out_path: str | Path,
    config: dict[str, Any],
    write: bool = True,
    remedy: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Tie an appended output to the configuration that writes it, in ``meta_path(out_path)``: a rerun
    with another configuration is refused before anything is written, naming what changed and what to
    do (``remedy``; by default: another output path, or delete it) (``write`` False: only that check).
    A model recorded by its resolved path counts as the same model when it lies where it lay before
    relative to the output, so a run directory moved or copied whole still resumes; a field the claim
    predates counts as having been at its value in ``defaults``.

    >>> import shutil, tempfile
    >>> run = Path(tempfile.mkdtemp()) / "run"; out = run / "samples.jsonl"
    >>> def cfg(n, run): return {"n": n, "model": {"path": str(run / "generator")}, "scorer": str(run / "prm")}
    >>> claim_output(out, cfg(16, run)); claim_output(out, cfg(16, run))
    >>> claim_output(out, cfg(3, run))
    Traceback (most recent call last):
    ...
    ValueError: ...samples.jsonl was written with another configuration (n: 16, now 3); give another output path, or delete it and samples.meta.json
    >>> moved = shutil.move(run, run.with_name("moved")); claim_output(moved / "samples.jsonl", cfg(16, moved))
    >>> claim_output(moved / "samples.jsonl", cfg(16, moved / "rl"))
    Traceback (most recent call last):
    ...
    ValueError: ...samples.jsonl was written with another configuration (model: ...); give another output path, or delete it and samples.meta.json
    >>> out = moved / "samples.jsonl"; claim_output(out, {**cfg(16, moved), "new": 0}, defaults={"new": 0})
    >>> claim_output(out, {**cfg(16, moved), "new": 1}, defaults={"new": 0})
    Traceback (most recent call last):
    ...
    ValueError: ...samples.jsonl was written with another configuration (...new: 0, now 1...); give another output path, or delete it and samples.meta.json
    """
    config = json.loads(json.dumps(config))  # tuples -> lists, as read back
    meta = _read_meta(out_path)
    old = meta.get("config")
    if old is not None and defaults:
        old = {**json.loads(json.dumps({k: v for k, v in defaults.items() if k in config})), **old}
    here = str(Path(out_path).resolve().parent)
    if old is not None and old != config:
        if "dir" in meta and _relative_paths(old, meta["dir"]) == _relative_paths(config, here):
            return
        changed = ", ".join(
            f"{k}: {old.get(k)!r}, now {config.get(k)!r}"
            for k in sorted(set(old) | set(config))
            if old.get(k) != config.get(k)
        )
        remedy = remedy or f"give another output path, or delete it and {meta_path(out_path).name}"
        raise ValueError(f"{out_path} was written with another configuration ({changed}); {remedy}")
    if old is None and write:
        atomic_write_json(meta_path(out_path), {**meta, "config": config, "dir": here})


def write_source(out_path: str | Path, source: dict[str, Any], **extra: Any) -> None:
    """Record beside ``out_path`` which model wrote it (``models.model_source``: a local path, or a hub id
    and the commit it resolved to); nothing for a model given as an object."""
    if source:
        atomic_write_json(meta_path(out_path), {**_read_meta(out_path), "model": source, **extra})


def write_jsonl(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> None:
    """Atomically write a whole JSONL file."""
    atomic_write_text(path, "".join(_dump(r) + "\n" for r in records))
