import pytest

from prmkit.io import read_jsonl
from prmkit.models import format_prompt
from prmkit.policy.base import Completion, Policy
from prmkit.sample import SampleConfig, accuracy_summary, make_solution, pass_at_k, sample_problems
from prmkit.types import Problem, Solution


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 3, 3) == 1.0


def test_make_solution_grades_and_splits():
    p = Problem(id="p", question="q", answer="12")
    s = make_solution(p, 0, "He has 3*4 = <<3*4=12>>12 pens.\n#### 12")
    assert s.steps == ["He has 3*4 = <<3*4=12>>12 pens.", "#### 12"] and s.answer == "12" and s.correct
    assert not make_solution(p, 1, "#### 13").correct


def _sols(pattern):
    return [
        Solution(problem_id=f"p{i}", sample_id=j, text="", steps=[], correct=c)
        for i, row in enumerate(pattern)
        for j, c in enumerate(row)
    ]


def test_accuracy_summary():
    s = accuracy_summary(_sols([[True, False, False, False], [False] * 4]), ks=(1, 4, 8))
    assert s["accuracy"] == pytest.approx(1 / 8)
    assert s["pass@1"] == pytest.approx(0.125) and s["pass@4"] == pytest.approx(0.5)
    assert "pass@8" not in s  # more than the samples per problem


class CountingPolicy(Policy):
    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def generate(self, prompts, n=1, **kw):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        return [[Completion(f"#### {len(p) % 3}", 2, "eos") for _ in range(n)] for p in prompts]


def test_sampling_resumes_without_loss_or_duplicates(tmp_path):
    problems = [Problem(id=f"p{i}", question="x" * i, answer="1") for i in range(10)]
    cfg = SampleConfig(n=3, chunk=4)
    out = tmp_path / "samples.jsonl"
    with pytest.raises(KeyboardInterrupt):
        sample_problems(CountingPolicy(fail_after=2), problems, cfg, out, progress=False)
    assert len(read_jsonl(out)) == 8 * 3  # two chunks written before the "kill"
    with out.open("a") as f:
        f.write('{"problem_id": "p8", "sample_')  # torn line
    policy = CountingPolicy()
    sols = sample_problems(policy, problems, cfg, out, progress=False)
    assert policy.calls == 1  # only the 2 problems left
    keys = [s.key for s in sols]
    assert len(keys) == len(set(keys)) == 30
    expected = sum(3 for p in problems if len(format_prompt(p.question)) % 3 == 1)
    assert sum(s.correct for s in sols) == expected


class SeededPolicy(Policy):
    """Completions that depend on the seed and on the batch's make-up, as a real sampler's do."""

    def generate(self, prompts, n=1, seed=None, **kw):
        return [
            [Completion(f"{seed} {len(prompts)} {row} {k}\n#### {k}", 2, "eos") for k in range(n)]
            for row, _ in enumerate(prompts)
        ]


def test_a_chunk_cut_by_a_kill_is_sampled_again_whole(tmp_path):
    problems = [Problem(id=f"p{i}", question=f"q{i}", answer="1") for i in range(10)]
    cfg = SampleConfig(n=3, chunk=4)
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    sample_problems(SeededPolicy(), problems, cfg, whole, progress=False)
    lines = whole.read_text().splitlines(keepends=True)
    # killed while writing the second chunk: p4 whole, p5 with one of its 3 samples, a torn line
    cut.write_text("".join(lines[:16]) + lines[16][:20])
    sols = sample_problems(SeededPolicy(), problems, cfg, cut, progress=False)
    assert cut.read_bytes() == whole.read_bytes()  # nothing lost, nothing twice, the same samples
    assert len(sols) == 30
