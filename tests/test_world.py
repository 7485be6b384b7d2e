"""The synthetic GSM world: generator invariants, the oracle's labels, corruptions and critiques."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from prmkit.calculator import evaluate
from prmkit.types import Problem
from prmkit.world import (
    WorldConfig,
    analyze,
    corrupt,
    critique_steps,
    critique_text,
    generate_split,
    judge,
    make_world,
)

CFG = WorldConfig(n_train=3000, n_test=200, n_ood=100)


@pytest.fixture(scope="module")
def world() -> dict[str, list[Problem]]:
    return make_world(CFG)


# A hand-built problem: 3 boxes of 4 pencils, 8 more, shared among 4 kids; Tom's age is a distractor.
HAND = Problem(
    id="hand-1",
    question=(
        "Mia has 3 boxes of pencils. Each box holds 4 pencils. She buys 8 more pencils. Tom is 7 years old. "
        "She gives the pencils equally to 4 kids. How many pencils does each kid get?"
    ),
    answer="5",
    solution=(
        "Mia has 3*4 = <<3*4=12>>12 pencils.\nMia has 12+8 = <<12+8=20>>20 pencils now.\n"
        "Each kid gets 20/4 = <<20/4=5>>5 pencils.\n#### 5"
    ),
    source="world",
    split="test",
    meta={
        "givens": [
            {"name": "Mia's boxes", "value": 3, "distractor": False},
            {"name": "the pencils in each box", "value": 4, "distractor": False},
            {"name": "the pencils Mia gets", "value": 8, "distractor": False},
            {"name": "Tom's age in years", "value": 7, "distractor": True},
            {"name": "the number of kids", "value": 4, "distractor": False},
        ],
        "nodes": [
            {"op": "*", "args": ["g0", "g1"], "value": 12, "name": "Mia's pencils"},
            {"op": "+", "args": ["n0", "g2"], "value": 20, "name": "Mia's pencils"},
            {"op": "/", "args": ["n1", "g4"], "value": 5, "name": "the pencils each kid gets"},
        ],
        "n_ops": 3,
    },
)
S0, S1, S2, FINAL = HAND.solution.split("\n")
CALC, LOGIC, IRR, ACC, OTHER = "calculation", "logical", "irrelevant", "accumulative", "other"


def test_config_validation():
    for field, value in [
        ("min_ops", 1),
        ("max_ops", 9),
        ("ood_min_ops", 1),
        ("ood_max_ops", 4),
        ("max_value", 5),
        ("ops", "+x"),
        ("op_weights", (1.0, 1.0)),
        ("distractor_prob", 1.5),
        ("max_distractors", 0),
        ("n_train", -1),
    ]:
        with pytest.raises(ValueError, match=field):
            WorldConfig(**{field: value})
    assert WorldConfig(op_weights=[1, 2, 3, 4]).op_weights == (1, 2, 3, 4)  # YAML lists are fine
    with pytest.raises(ValueError, match="train, test, ood"):
        generate_split(CFG, "dev")


def test_deterministic_sizes_ids_and_disjoint(world):
    small = WorldConfig(n_train=300, n_test=20, n_ood=10)
    assert generate_split(small, "train") == generate_split(small, "train")
    assert generate_split(small, "test") != generate_split(WorldConfig(seed=1, n_test=20), "test")
    assert {k: len(v) for k, v in world.items()} == {"train": 3000, "test": 200, "ood": 100}
    norm = {k: {" ".join(p.question.lower().split()) for p in v} for k, v in world.items()}
    assert {k: len(v) for k, v in norm.items()} == {"train": 3000, "test": 200, "ood": 100}
    assert not (norm["train"] & norm["test"] or norm["train"] & norm["ood"] or norm["test"] & norm["ood"])
    for split, problems in world.items():
        assert [p.id for p in problems] == [f"world-{split}-{i:06d}" for i in range(len(problems))]
        assert all(p.split == split and p.source == "world" and p.kind == "gsm8k" for p in problems)
    assert {p.meta["n_ops"] for p in world["train"] + world["test"]} == {2, 3, 4}
    assert {p.meta["n_ops"] for p in world["ood"]} == {5, 6}


def test_references_are_sound(world):
    ops = Counter()
    for p in world["train"] + world["ood"]:
        givens, nodes = p.meta["givens"], p.meta["nodes"]
        lines = p.solution.split("\n")
        assert len(lines) == len(nodes) + 1 == p.meta["n_ops"] + 1 and lines[-1] == f"#### {p.answer}"
        assert p.question.endswith("?") and p.question.count("?") == 1
        used = Counter(a for n in nodes for a in n["args"])
        for i, g in enumerate(givens):
            assert isinstance(g["value"], int) and 0 < g["value"] <= CFG.max_value
            assert (used[f"g{i}"] > 0) != g["distractor"], (p.question, g)  # givens used, distractors not
            if g["value"] != 2:  # "twice" and "half" are words
                assert re.search(rf"\b{g['value']}\b", p.question), (p.question, g)
        assert all(used[f"n{j}"] > 0 for j in range(len(nodes) - 1))  # every node feeds the answer
        values = {f"g{i}": g["value"] for i, g in enumerate(givens)} | {
            f"n{j}": n["value"] for j, n in enumerate(nodes)
        }
        for node, line in zip(nodes, lines, strict=False):
            a, b = (values[r] for r in node["args"])
            exact = {"+": a + b, "-": a - b, "*": a * b, "/": Fraction(a, b)}[node["op"]]
            assert exact == node["value"] and 0 < node["value"] <= CFG.max_value
            expr, result, restated = re.search(r"(\S+) = <<([^=]+)=(\d+)>>(\d+)", line).group(2, 3, 4)
            assert (
                expr == f"{a}{node['op']}{b}"
                and evaluate(expr) == int(result) == int(restated) == node["value"]
            )
            ops[node["op"]] += 1
    assert set(ops) == set("+-*/")
    assert 0.1 < sum(any(g["distractor"] for g in p.meta["givens"]) for p in world["train"]) / 3000 < 0.5


def test_oracle_accepts_every_reference(world):
    for p in world["train"] + world["test"] + world["ood"]:
        v = judge(p, p.solution.split("\n"))
        assert v.first_error == -1 and all(v.step_correct) and v.final_correct, p.id


def test_grader_accepts_every_reference(world):
    grading = pytest.importorskip("prmkit.grading")
    for p in world["test"] + world["ood"]:
        assert grading.extract_answer(p.solution, "gsm8k") == p.answer
        assert grading.grade_answer(grading.extract_answer(p.solution, "gsm8k"), p.answer, "gsm8k")


@pytest.mark.parametrize(
    ("steps", "types", "final_correct"),
    [
        ([S0, S1, S2, FINAL], [None, None, None, None], True),
        ([S0, S0, S1, S2, FINAL], [None] * 5, True),  # a repeated computation is fine
        ([S0, S1, S2], [None, None, None], True),  # no "####": the last number is the answer
        (["Mia has 3*4 = 12 pencils.", "12+8 = 20", FINAL], [None, None, None], True),  # GSM8K text
        (["Mia has 3*4+8 = <<3*4+8=20>>20 pencils.", FINAL], [None, None], True),  # two steps in one
        (
            [
                S0,
                "Mia has 12+8 = <<12+8=21>>21 pencils now.",
                "Each kid gets 21/4 = <<21/4=5.25>>5.25.",
                "#### 5.25",
            ],
            [None, CALC, ACC, ACC],
            False,
        ),
        (
            ["Mia has 3*4 = <<3*4=12>>13 pencils.", "She has 13+8 = <<13+8=21>>21.", "#### 21"],
            [CALC, ACC, ACC],
            False,
        ),
        (["Mia has 3*4 = 13 pencils.", S1, S2, FINAL], [CALC, None, None, None], True),
        ([S0, "Mia has 12+7 = <<12+7=19>>19 pencils now.", "#### 19"], [None, IRR, ACC], False),
        # 7 is a distractor, but once a wrong step states it, using it is accumulative
        (
            ["Mia has 3+4 = <<3+4=7>>7 pencils.", "Mia has 7+8 = <<7+8=15>>15 pencils.", "#### 15"],
            [LOGIC, ACC, ACC],
            False,
        ),
        ([S0, "Mia has 10+10 = <<10+10=20>>20 pencils now.", S2, FINAL], [None, LOGIC, None, None], True),
        ([S0, "Mia has 12*8 = <<12*8=96>>96 pencils.", "#### 96"], [None, LOGIC, ACC], False),
        ([S0, S1, "#### 20"], [None, None, LOGIC], False),  # stopped early
        ([S0, S1, S2, "#### 7"], [None, None, None, IRR], False),
        ([S0, "Mia has many pencils.", S1, S2, "#### 6"], [None, OTHER, None, None, OTHER], False),
        (["Mia has <<3*=>> pencils.", S1, S2, FINAL], [OTHER, None, None, None], True),
        ([S0, S1, S2, "####"], [None, None, None, OTHER], True),  # the grader falls back to the last number
    ],
)
def test_hand_judged_steps(steps, types, final_correct):
    v = judge(HAND, steps)
    assert v.error_types == types
    assert v.step_correct == [t is None for t in types]
    assert v.first_error == next((i for i, t in enumerate(types) if t is not None), -1)
    assert v.final_correct == final_correct


def test_corrupt_injects_labelled_errors(world):
    rng = random.Random(0)
    counts = Counter()
    for p in world["train"][:600]:
        ref = p.solution.split("\n")
        for kind in ("calculation", "logical", "irrelevant", "other"):
            if kind == "irrelevant" and not any(g["distractor"] for g in p.meta["givens"]):
                with pytest.raises(ValueError, match="distractor"):
                    corrupt(p, kind, rng)
                continue
            try:
                steps, i = corrupt(p, kind, rng)
            except ValueError:  # rare: no wrong value stays clear of the true ones
                counts["skipped"] += 1
                continue
            v = judge(p, steps)
            assert v.first_error == i and v.error_types[i] == kind, (kind, steps, v)
            later = [
                None if s == r else "accumulative" for s, r in zip(steps[i + 1 :], ref[i + 1 :], strict=True)
            ]
            assert v.error_types[i + 1 :] == later, (kind, steps, v)
            assert v.final_correct == (kind == "other")
            counts[kind] += 1
    assert counts["calculation"] > 550 and counts["logical"] > 550 and counts["irrelevant"] > 100
    assert counts["skipped"] < 30
    with pytest.raises(ValueError, match="accumulative"):
        corrupt(HAND, "accumulative", rng)


def test_corrupt_at_a_chosen_step():
    steps, i = corrupt(HAND, "calculation", random.Random(1), step=0)
    assert i == 0 and judge(HAND, steps).error_types == [CALC, ACC, ACC, ACC]
    steps, i = corrupt(HAND, "irrelevant", random.Random(1), step=0)
    assert "7" in steps[0] and judge(HAND, steps).error_types == [IRR, ACC, ACC, ACC]
    with pytest.raises(ValueError, match="at step 1"):  # 12+7 and 7+8 leave the integers at 20/4
        corrupt(HAND, "irrelevant", random.Random(1), step=1)


def test_critiques_name_the_steps():
    steps = [
        S0,
        "Mia has 12+8 = <<12+8=21>>21 pencils now.",
        "Each kid gets 21/4 = <<21/4=5.25>>5.25.",
        "#### 5.25",
    ]
    lines = critique_steps(HAND, steps, judge(HAND, steps))
    assert lines == [
        "Step 1 is correct: it finds Mia's pencils, 3*4=12.",
        "Step 2 is wrong (calculation error): 12+8 is 20, not 21.",
        "Step 3 is wrong (accumulative error): it builds on the wrong value 21 from step 2.",
        "Step 4 is wrong (accumulative error): the final answer 5.25 is the wrong value of step 3.",
    ]
    assert critique_text(HAND, steps, judge(HAND, steps)).endswith("The first error is in step 2.")
    steps = [S0, "Mia has 12+7 = <<12+7=19>>19 pencils now.", "#### 19"]
    assert "7 is Tom's age in years and is not needed" in critique_steps(HAND, steps, judge(HAND, steps))[1]
    steps = [S0, "Mia has 12*8 = <<12*8=96>>96 pencils.", "#### 96"]
    assert "the next step finds Mia's pencils, 12+8=20" in critique_steps(HAND, steps, judge(HAND, steps))[1]
    ref = HAND.solution.split("\n")
    assert critique_text(HAND, ref, judge(HAND, ref)).split("\n")[-1] == "The solution is correct."
    with pytest.raises(ValueError, match="steps"):
        critique_steps(HAND, ref[:2], judge(HAND, ref))


def test_critiques_of_corrupted_world_solutions(world):
    rng = random.Random(2)
    for p in world["test"][:100]:
        steps, i = corrupt(p, rng.choice(["calculation", "logical"]), rng)
        v = judge(p, steps)
        lines = critique_text(p, steps, v).split("\n")
        assert len(lines) == len(steps) + 1
        assert all(line.startswith(f"Step {j + 1} is ") for j, line in enumerate(lines[:-1]))
        assert lines[i].startswith(f"Step {i + 1} is wrong ({v.error_types[i]} error)")
        assert lines[-1] == f"The first error is in step {i + 1}."


def test_json_round_trip_keeps_the_oracle_working(world):
    for p in world["test"][:50] + [HAND]:
        q = Problem.from_dict(json.loads(json.dumps(p.to_dict())))
        assert q == p and q.meta == p.meta
        steps = q.solution.split("\n")
        assert judge(q, steps) == judge(p, steps)
        assert [c.error for c in analyze(q, steps)] == [None] * len(steps)
