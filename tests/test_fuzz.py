"""The fuzz drill's targets (``benchmarks/fuzz.py``) at a few hundred examples, derandomized, and one
regression test per bug the drill (or reading its targets) found, each holding its minimal example."""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from prmkit.calculator import calculate
from prmkit.data import import_math_shepherd, load_prm800k_steps
from prmkit.evaluate.processbench import load_predictions, load_processbench
from prmkit.grading import extract_answer, grade_answer, last_boxed, normalize_number
from prmkit.io import DataError, open_appender, read_jsonl, read_scores, repair_tail, write_jsonl
from prmkit.steps import join_steps, split_steps


def _load_drill():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("prmkit_fuzz_drill", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz = _load_drill()

# About 450 examples in all; each target's examples take milliseconds (grade-math: tens).
BUDGET = {
    "calculator": 100,
    "grade-gsm8k": 100,
    "grade-math": 40,
    "steps": 100,
    "jsonl-readers": 60,
    "importers": 60,
}


@pytest.mark.parametrize("name", list(BUDGET))
def test_drill_target(name):
    target, timed = fuzz.TARGETS[name], name != "grade-math"  # the drill measures grade-math's time
    fuzz.warm_up(target, time_worker=False)
    for example in target.fixed:
        assert fuzz.run_one(target, example, timed=timed) == [], example

    @settings(
        max_examples=BUDGET[name],
        deadline=1000 if timed else None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(target.strategy)
    def run(example):
        assert fuzz.run_one(target, example, timed=timed) == []

    run()


def test_math_verify_evaluates_only_sympy_names():
    """math-verify (sympy's parse_expr) evals text; what model text turns into names only sympy objects."""
    import sympy

    from prmkit.grading_worker import verify_in_worker

    for warm in ("1+1", "2^3", "1.5"):  # first uses import parts of sympy, which eval their own code
        verify_in_worker(warm, "2")
    allowed, names = set(dir(sympy)), set()
    real_eval = builtins.eval

    def spy(src, *args, **kwargs):
        with contextlib.suppress(SyntaxError):  # what does not parse runs nothing
            names.update(getattr(src, "co_names", ()) or compile(src, "<spy>", "eval").co_names)
        return real_eval(src, *args, **kwargs)

    builtins.eval = spy
    try:
        for payload in [*fuzz.PAYLOADS, "1 + 2", "(1+2)*3", "9**9", "x=1", "𝟏", "1 + 𝟏"]:
            verify_in_worker(payload, "3")
    finally:
        builtins.eval = real_eval
    assert names and names <= allowed, names - allowed
    assert not fuzz.CANARY.exists()


# ---- regressions: grading ----
# Time limits are on CPU time (time.process_time): wall time on a shared machine says little.


def test_numerals_past_int_conversion_limit_are_not_numbers():
    # Python's int() refuses 4300+ digits; extraction and grading raised ValueError on such text.
    assert extract_answer("1" * 4301, "gsm8k") is None
    assert extract_answer("#### 5\n" + "7" * 5000, "gsm8k") == "5"
    assert extract_answer("1/" + str(2**9000), "gsm8k") is None  # was a 9000-digit decimal expansion
    assert normalize_number("0." + "0" * 5000 + "1") is None
    assert grade_answer("1" * 5000, "2", "gsm8k") is False
    assert grade_answer("1" * 5000, "2", "math", timeout_s=1.0) is False
    assert extract_answer("1" * 100, "gsm8k") == "1" * 100  # long, but still a number


def test_unclosed_boxes_take_linear_time():
    # Each unclosed \boxed{ was matched by its own scan to the end: 8,000 took 30 s.
    t0 = time.process_time()
    assert last_boxed("\\boxed{" * 20_000) is None
    assert extract_answer("\\boxed{" * 20_000, "math") is None
    assert extract_answer("\\boxed{3} " + "\\boxed{" * 20_000, "gsm8k") == "3"
    assert time.process_time() - t0 < 1.0


def test_long_comma_chains_take_linear_time():
    # Every start inside "1,000,000,...,0000" re-read the rest of the chain: 20,000 groups took 31 s.
    t0 = time.process_time()
    assert extract_answer("1" + ",000" * 20_000 + "0", "gsm8k") == "0"
    assert time.process_time() - t0 < 1.0
    assert extract_answer("It costs 1,234,567.50 dollars", "gsm8k") == "1234567.5"
    assert extract_answer("1,000,0000", "gsm8k") == "0"  # not a thousands chain: three numbers


# ---- regressions: JSONL readers and writers ----


@pytest.mark.parametrize(
    "line,message",
    [
        (b"\xfa\n", r"x.jsonl:2: not UTF-8 text"),
        (b"[" * 100_000 + b"\n", r"x.jsonl:2: bad JSON \(nested too deeply\)"),
        (b'{"a": ' + b"1" * 4301 + b"}\n", r"x.jsonl:2: bad JSON \(Exceeds the limit"),
    ],
)
def test_reader_errors_are_located(tmp_path, line, message):
    # These raised UnicodeDecodeError, RecursionError and a ValueError that named no file.
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n' + line)
    with pytest.raises(DataError, match=message):
        read_jsonl(path)


def test_lone_surrogate_round_trips(tmp_path):
    # json.loads gives "\ud800" for an escaped lone surrogate; writing it back raised UnicodeEncodeError.
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"a": "\ud800", "b": "é"}])
    assert read_jsonl(path) == [{"a": "\ud800", "b": "é"}]
    writer, _ = open_appender(path, key=lambda r: r["a"])
    with writer:
        writer.write({"a": "x\udfff"})
    assert [r["a"] for r in read_jsonl(path)] == ["\ud800", "x\udfff"]


def test_appender_key_errors_are_located(tmp_path):
    # A record without the key field raised KeyError, one with a list for a key TypeError.
    path = tmp_path / "out.jsonl"
    path.write_text("{}\n")
    with pytest.raises(DataError, match=r"out.jsonl:1: missing field 'problem_id'"):
        open_appender(path, key=lambda r: r["problem_id"])
    path.write_text('{"problem_id": []}\n')
    with pytest.raises(DataError, match=r"out.jsonl:1: record key is not a string or number"):
        open_appender(path, key=lambda r: (r["problem_id"], 0))


@pytest.mark.parametrize(
    "row,field",
    [
        ({"problem_id": [], "sample_id": 0, "scores": []}, "problem_id"),
        ({"problem_id": "p", "sample_id": True, "scores": []}, "sample_id"),
        ({"problem_id": "p", "sample_id": 0, "scores": "0.5"}, "scores"),
    ],
)
def test_read_scores_checks_types(tmp_path, row, field):
    # An unhashable problem_id raised TypeError; a string of scores went through as a "list".
    path = tmp_path / "scores.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=rf"scores.jsonl:1: Scores: field '{field}' has"):
        read_scores(path)


def test_repair_tail_is_linear_and_survives_deep_nesting(tmp_path):
    # The tail grew by re-concatenation (16 MB torn line: 10 s); a deep last line raised RecursionError.
    # (A torn line over io.MAX_LINE_BYTES is refused instead: tests/test_security.py.)
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a": 1}\n{"k": "' + b"x" * (15 << 20))
    t0 = time.process_time()
    assert repair_tail(path) and path.read_bytes() == b'{"a": 1}\n'
    assert time.process_time() - t0 < 1.0
    path.write_bytes(b'{"a": 1}\n' + b"[" * 100_000 + b"\n")
    assert repair_tail(path) and read_jsonl(path) == [{"a": 1}]


# ---- regressions: importers ----


def _jsonl(tmp_path, *rows) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_math_shepherd_non_string_fields_are_located(tmp_path):
    # {"input": 0} raised TypeError ("argument of type 'int' is not iterable").
    with pytest.raises(DataError, match=r"in.jsonl:1: field 'input' must be a string"):
        import_math_shepherd(_jsonl(tmp_path, {"input": 0, "label": ""}))


@pytest.mark.parametrize(
    "change,field",
    [
        ({"instruction": None}, "instruction"),  # AttributeError: 'NoneType' has no attribute 'encode'
        ({"responses": "ab"}, "responses"),  # silently read as the two steps "a" and "b"
        ({"next_response": 1}, "next_response"),
        ({"rating": []}, "rating"),  # TypeError: unhashable type: 'list'
        ({"rating": True}, "rating"),
    ],
)
def test_prm800k_field_types_are_checked(tmp_path, change, field):
    row = {"instruction": "q", "responses": ["s1"], "next_response": "s2", "rating": 1} | change
    with pytest.raises(DataError, match=rf"in.jsonl:1: field '{field}' must be"):
        load_prm800k_steps(_jsonl(tmp_path, row))


@pytest.mark.parametrize(
    "data,message",
    [
        (b'[{"id": "a", "problem": "q", "steps": 5, "label": -1}]', r"field 'steps' must be a list"),
        (b'[{"id": "a", "problem": "q", "steps": [1], "label": -1}]', r"field 'steps' must be a list"),
        (b'[{"id": [], "problem": "q", "steps": [], "label": -1}]', r"field 'id' must be"),
        (b'[{"id": "a", "problem": "q", "steps": ["s", "t"], "label": true}]', r"label True out of range"),
        (b'[{"id": "a",\n"problem": "\xfa"}]', r":2: not UTF-8 text"),
        (b"[" * 100_000, r"bad JSON: nested too deeply"),
        (b"[" + b"1" * 4301 + b"]", r"bad JSON: Exceeds the limit"),
    ],
)
def test_processbench_bad_files_are_located(tmp_path, data, message):
    # steps 5 raised TypeError (len of an int); the others UnicodeDecodeError, RecursionError, ValueError.
    path = tmp_path / "x.json"
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"x.json.*{message}"):
        load_processbench(path)


def test_processbench_predictions_refuse_booleans(tmp_path):
    with pytest.raises(DataError, match="first_error must be an integer"):
        load_predictions(_jsonl(tmp_path, {"id": "a", "first_error": True}))


# ---- properties worth stating by hand ----


def test_calculator_refuses_code_and_bombs_quickly():
    t0 = time.process_time()
    for expr in [
        "__import__('os')",
        "1**10**10**10",
        "99999!",
        "(" * 10_000 + "1" + ")" * 10_000,
        "9" * 10_000,
    ]:
        assert calculate(expr) is None
    assert time.process_time() - t0 < 0.1


def test_custom_separator_that_overlaps_itself_is_ambiguous():
    # Documented limit of join_steps: "a" + "aa" + "a" reads back as separators only.
    assert split_steps("a aaa", "sep:aa") == ["a", "a"]
    assert split_steps(join_steps(["a", "a"], "sep:aa"), "sep:aa") == []


def test_importers_hash_questions_with_lone_surrogates(tmp_path):
    # The question id hashed q.encode(): a lone surrogate (JSON "\ud800") raised UnicodeEncodeError.
    row = {"instruction": "\ud800", "responses": [], "next_response": "s", "rating": 1}
    problems, _ = load_prm800k_steps(_jsonl(tmp_path, row))
    assert problems[0].id.startswith("prm800k-")
    problems, _ = import_math_shepherd(
        _jsonl(tmp_path, {"input": "\udfff Step 1: a ки", "label": "\udfff Step 1: a +"})
    )
    assert problems[0].question == "\udfff"
