import json

import pytest

from prmkit.io import (
    DataError,
    atomic_write_json,
    open_appender,
    read_jsonl,
    read_scores,
    repair_tail,
    write_jsonl,
)
from prmkit.types import Problem, Scores, Solution, StepLabels, Verdict, index_problems


def test_records_roundtrip():
    p = Problem(id="w-1", question="q?", answer="7", solution="3+4 = <<3+4=7>>7\n#### 7", meta={"g": [1, 2]})
    s = Solution(
        problem_id="w-1", sample_id=3, text="x\n#### 7", steps=["x", "#### 7"], answer="7", correct=True
    )
    v = Verdict(step_correct=[True, False], first_error=1, error_types=[None, "logical"], final_correct=False)
    lab = StepLabels(problem_id="w-1", sample_id=3, steps=["x", "y"], hard=[1, None], soft=[0.5, None])
    sc = Scores("w-1", 3, [0.25, float("nan")])
    for r in (p, s, v, lab):
        assert type(r).from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert v.error_type == "logical"
    back = Scores.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert back.key == ("w-1", 3) and back.scores[0] == 0.25 and back.scores[1] != back.scores[1]  # nan
    assert s.key == lab.key == sc.key == ("w-1", 3)  # one key for every record of a solution
    assert index_problems([p, Problem(id="w-2", question="r?", answer="1")])["w-1"] is p


def test_step_labels_of_the_old_layout_read_as_the_same_record():
    # final_correct and skipped lived in meta before they were fields; an old labels.jsonl still reads
    old = {"problem_id": "p", "sample_id": 0, "steps": ["a"], "hard": [1], "soft": [1.0],
           "meta": {"final_correct": True, "tokens": 12}}  # fmt: skip
    new = StepLabels("p", 0, ["a"], [1], [1.0], final_correct=True, meta={"tokens": 12})
    assert StepLabels.from_dict(old) == new == StepLabels.from_dict(new.to_dict())
    skipped = {**old, "hard": [None], "soft": [None], "meta": {"skipped": "solution has no steps"}}
    rec = StepLabels.from_dict(skipped)
    assert rec.skipped == "solution has no steps" and rec.final_correct is None and rec.meta == {}


def test_read_scores_gives_scores_by_solution_key(tmp_path):
    path = tmp_path / "scores.jsonl"
    write_jsonl(path, [Scores("p", 0, [0.5, 1]), Scores("p", 1, [])])
    assert read_scores(path) == {("p", 0): [0.5, 1], ("p", 1): []}
    path.write_text('{"problem_id": "p", "sample_id": 0, "scores": [true]}\n')
    with pytest.raises(DataError, match=r"scores.jsonl:1: Scores: field 'scores'"):
        read_scores(path)


def test_read_jsonl_names_file_line_and_field(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "question": "q", "answer": "1"}\n\n{"id": "b", "question": "q"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:3: .*'answer'") as e:
        read_jsonl(path, Problem)
    assert e.value.line == 3 and e.value.field == "answer"
    path.write_text('{"id": "a", "question": "q", "answer": 1}\n')
    with pytest.raises(DataError, match=r"p.jsonl:1: .*'answer'"):
        read_jsonl(path, Problem)
    path.write_text('{"id": "a",\n')
    with pytest.raises(DataError, match=r"p.jsonl:1: bad JSON"):
        read_jsonl(path)
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_appender_resumes_and_repairs_torn_tail(tmp_path):
    path = tmp_path / "out.jsonl"
    w, done = open_appender(path, key=lambda r: r["k"])
    assert done == set()
    with w:
        w.write({"k": 1})
        w.write_many([{"k": 2}, {"k": 3}])
    with path.open("a") as f:  # a kill mid-write leaves half a line
        f.write('{"k": 4, "x": [1, 2')
    w, done = open_appender(path, key=lambda r: r["k"])
    assert done == {1, 2, 3}
    with w:
        w.write({"k": 4})
    assert [r["k"] for r in read_jsonl(path)] == [1, 2, 3, 4]
    assert not repair_tail(path)


def test_repair_tail_without_newline_and_long_lines(tmp_path):
    path = tmp_path / "out.jsonl"
    big = {"k": "x" * 10000}
    path.write_text(json.dumps(big) + "\n" + json.dumps(big))  # valid JSON but no newline: torn
    assert repair_tail(path)
    assert read_jsonl(path) == [big]
    path.write_text('{"k": 1')
    assert repair_tail(path) and path.read_text() == ""


def test_atomic_writes(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    write_jsonl(tmp_path / "a.jsonl", [{"a": 1}, {"a": 2}])
    assert read_jsonl(tmp_path / "a.jsonl") == [{"a": 1}, {"a": 2}]
    assert not list(tmp_path.glob(".*tmp"))


def test_a_unit_cut_by_a_kill_is_dropped_whole(tmp_path):
    from prmkit.io import drop_cut_unit

    path, key = tmp_path / "out.jsonl", lambda r: r["k"]
    units = [["a", "b", "c"], ["d", "e", "f"]]

    def holding(*keys, torn=""):
        path.write_text("".join(json.dumps({"k": k, "pad": "x" * 70000}) + "\n" for k in keys) + torn)

    holding("a", "b", "c", "d", "e", torn='{"k": "f", "pa')  # the write of [d, e, f] stopped in f
    w, done = open_appender(path, key, units=units)
    w.close()
    assert done == {"a", "b", "c"} and [r["k"] for r in read_jsonl(path)] == ["a", "b", "c"]
    for keys in (
        ["a", "b", "c"],
        ["a", "b", "c", "d", "e", "f"],
        ["a", "b", "c", "e"],
        ["a", "c"],
        ["x"],
        [],
    ):
        holding(*keys)  # finished units, or lines no cut write leaves: kept
        assert drop_cut_unit(path, key, units) == 0 and len(read_jsonl(path)) == len(keys)
    holding("a")
    assert drop_cut_unit(path, key, units) == 1 and path.read_text() == ""
