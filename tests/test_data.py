import json

import pytest

from prmkit.data import gsm8k_gold, load_problems
from prmkit.io import DataError


def test_gsm8k_real_files(shared_data):
    test = load_problems("gsm8k", str(shared_data / "gsm8k/test.jsonl"))
    train = load_problems("gsm8k", str(shared_data / "gsm8k/train.jsonl"), split="train")
    assert (len(train), len(test)) == (7473, 1319)
    assert test[0].answer == "18" and test[0].solution.endswith("#### 18") and test[0].kind == "gsm8k"
    assert len({p.id for p in train + test}) == 7473 + 1319


def test_math500_real_file(shared_data):
    probs = load_problems("math500", str(shared_data / "math500/test.jsonl"), limit=5)
    assert len(probs) == 5
    assert probs[0].id == "test/precalculus/807.json" and probs[0].kind == "math"
    assert probs[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_jsonl_loader_fields_and_errors(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"q": "1+1?", "a": "2", "uid": "x1"}, {"q": "Tom?", "a": "He has 2*3 = <<2*3=6>>6.\n#### 6"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    probs = load_problems("jsonl", str(path), question_field="q", answer_field="a", id_field="uid")
    assert [p.id for p in probs] == ["x1", "mine-00001"]
    assert probs[1].answer == "6" and probs[1].solution.startswith("He has")
    with pytest.raises(DataError, match=r"mine.jsonl:1: missing field 'question'"):
        load_problems("jsonl", str(path))
    path.write_text('{"question": "q", "answer": "1"}\n{"question": "q", "answer": \n')
    with pytest.raises(DataError, match=r"mine.jsonl:2: bad JSON"):
        load_problems("jsonl", str(path))


def test_gsm8k_missing_answer_line_is_located(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(DataError, match=r"g.jsonl:1: field 'answer': no '####'"):
        load_problems("gsm8k", str(path))
    with pytest.raises(DataError, match="file not found"):
        load_problems("gsm8k", str(tmp_path / "nope.jsonl"))


def test_unknown_source_lists_valid():
    with pytest.raises(ValueError, match="valid: gsm8k, math500, world, jsonl"):
        load_problems("aime", "x")


def test_gsm8k_gold():
    assert gsm8k_gold("x\n#### 1,234") == "1234"
