"""Monte-Carlo step labels: strategies on a scripted completer, resume, bad input, exports, replay."""

import json
import random

import pytest

from prmkit.annotate import AnnotateConfig, annotate, early_stop_rounds, select_solutions
from prmkit.data import export_labels, from_math_shepherd, load_math_shepherd, to_math_shepherd
from prmkit.evaluate.annotation import annotation_quality, replay
from prmkit.policy.base import Completion, Policy
from prmkit.types import Problem, Solution, StepLabels
from prmkit.world import WorldConfig, corrupt, generate_split


class Scripted(Policy):
    """Completes to the gold answer 7 unless the prefix holds a BAD step; counts calls and prompts."""

    def __init__(self, fail_after=None, empty=False):
        self.calls, self.prompts, self.fail_after, self.empty = 0, 0, fail_after, empty

    def generate(self, prompts, n=1, **kw):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        self.prompts += len(prompts) * n
        text = "" if self.empty else None
        return [
            [Completion(text if text is not None else ("#### 0" if "BAD" in p else "#### 7"), 3, "eos")] * n
            for p in prompts
        ]


def _sol(pid, sid, bad_at, n_steps=6, final="#### 0"):
    steps = [f"step {i} {'BAD' if bad_at is not None and i >= bad_at else 'ok'}" for i in range(n_steps - 1)]
    return Solution(problem_id=pid, sample_id=sid, text="\n".join(steps + [final]), steps=steps + [final])


PROBLEMS = [Problem(id=f"p{i}", question=f"q{i}?", answer="7") for i in range(4)]


def test_early_stop_rounds():
    assert early_stop_rounds(16) == [1, 1, 2, 4, 8]
    assert sum(early_stop_rounds(7)) == 7


@pytest.mark.parametrize("strategy", ["per_step", "early_stop", "binary_search"])
def test_strategies_find_the_first_bad_step(tmp_path, strategy):
    sols = [_sol("p0", 0, bad_at=3), _sol("p1", 0, bad_at=0), _sol("p2", 0, bad_at=None, final="#### 7")]
    cfg = AnnotateConfig(strategy=strategy, n=4)
    labels = {
        r.problem_id: r
        for r in annotate(Scripted(), sols, PROBLEMS, cfg, tmp_path / "l.jsonl", progress=False)
    }
    assert labels["p0"].hard == [1, 1, 1, 0, 0, 0]
    assert labels["p1"].hard == [0, 0, 0, 0, 0, 0]
    assert labels["p2"].hard == [1] * 6
    assert labels["p0"].meta["first_error"] == 3 and labels["p2"].meta["first_error"] == -1
    used = labels["p0"].meta["n_completions"]
    if strategy == "per_step":
        assert used == [4, 4, 4, 4, 4, 0] and labels["p0"].soft == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    elif strategy == "early_stop":
        assert used == [1, 1, 1, 4, 4, 0]  # stop at the first success; bad prefixes draw all N
        assert labels["p0"].soft[0] is None and labels["p0"].soft[3] == 0.0
        assert labels["p0"].meta["se_complete"] == [False, False, False, True, True, True]
    else:
        assert sum(labels["p0"].meta["probed"]) <= 3  # log2(6) probes, not 5
        assert sum(labels["p2"].meta["n_completions"]) == 0  # right answer: all good, no probes
        assert labels["p0"].meta["tokens"] < 4 * 5 * 3


def test_resume_after_kill_and_torn_line(tmp_path):
    sols = [_sol(f"p{i % 4}", i, bad_at=i % 5) for i in range(12)]
    cfg = AnnotateConfig(n=2, chunk=4)
    out = tmp_path / "labels.jsonl"
    with pytest.raises(KeyboardInterrupt):
        annotate(Scripted(fail_after=2), sols, PROBLEMS, cfg, out, progress=False)
    assert len(out.read_text().splitlines()) == 8
    with out.open("a") as f:
        f.write('{"problem_id": "p0", "sam')
    policy = Scripted()
    labels = annotate(policy, sols, PROBLEMS, cfg, out, progress=False)
    assert policy.calls == 1
    keys = [(r.problem_id, r.sample_id) for r in labels]
    assert len(keys) == len(set(keys)) == 12


def test_bad_input_is_recorded_and_skipped(tmp_path):
    sols = [
        Solution(problem_id="p0", sample_id=0, text="", steps=[]),
        _sol("p9", 0, bad_at=1),
        _sol("nogold", 0, bad_at=1),
        _sol("p1", 1, bad_at=2),
    ]
    probs = [*PROBLEMS, Problem(id="nogold", question="q", answer=" ")]
    labels = annotate(Scripted(), sols, probs, AnnotateConfig(n=2), tmp_path / "l.jsonl", progress=False)
    reasons = [r.skipped for r in labels]
    assert reasons == ["solution has no steps", "problem p9 not found", "problem has no gold answer", None]
    empty = annotate(
        Scripted(empty=True),
        [_sol("p2", 0, 1)],
        PROBLEMS,
        AnnotateConfig(n=2),
        tmp_path / "e.jsonl",
        progress=False,
    )
    assert "empty text" in empty[0].skipped


def test_duplicates_removed_per_problem():
    a, b = _sol("p0", 0, 2), _sol("p0", 1, 2)
    c = _sol("p1", 2, 2)
    kept, dropped = select_solutions([a, b, c], dedupe=True)
    assert [s.sample_id for s in kept] == [0, 2] and dropped == 1


def test_completions_share_the_prefix_prompt(tmp_path):
    policy = Scripted()
    annotate(
        policy,
        [_sol("p0", 0, bad_at=None)],
        PROBLEMS,
        AnnotateConfig(n=8),
        tmp_path / "l.jsonl",
        progress=False,
    )
    assert policy.calls == 1  # all prefixes of the chunk in one generate call, n per prompt


def test_math_shepherd_roundtrip_on_real_samples(shared_data):
    path = shared_data / "math-shepherd/samples_math-shepherd.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    parsed = load_math_shepherd(path)
    assert len(parsed) == 7
    assert parsed[0][2] == [1, 1, 1, 1, 0] and parsed[0][1][0].startswith("Janet spends 3 hours")
    for rec, (q, steps, labels) in zip(records, parsed, strict=True):
        back = to_math_shepherd(q, steps, labels, task=rec["task"])
        assert back["input"] == rec["input"] and back["label"] == rec["label"]


def test_math_shepherd_importer_errors(tmp_path):
    with pytest.raises(ValueError, match="step tag"):
        from_math_shepherd({"input": "no tags", "label": "no tags"})
    path = tmp_path / "ms.jsonl"
    path.write_text(json.dumps({"input": "Q Step 1: a ки", "label": "Q Step 1: a ?"}) + "\n")
    with pytest.raises(ValueError, match=r"ms.jsonl:1: 'label' does not match"):
        load_math_shepherd(path)


def test_exports_load_back(tmp_path):
    import datasets

    rec = StepLabels("p0", 0, ["a = 1", "b = 2", "#### 7"], [1, 0, 0], [1.0, 0.25, 0.0])
    n = export_labels([rec], PROBLEMS, tmp_path / "trl", "trl")
    ds = datasets.load_from_disk(str(tmp_path / "trl"))
    assert n == 1 and ds[0] == {
        "prompt": "q0?",
        "completions": ["a = 1", "b = 2", "#### 7"],
        "labels": [True, False, False],
    }
    export_labels([rec], PROBLEMS, tmp_path / "ms.jsonl", "math-shepherd", label="soft")
    ((q, steps, labels),) = load_math_shepherd(tmp_path / "ms.jsonl")
    assert q == "q0?" and steps == ["a = 1", "b = 2 The answer is: 7"] and labels == [1, 0]


def _record(problem, steps, outcomes, final):
    n = len(steps)
    return StepLabels(
        problem.id,
        0,
        steps,
        [None] * n,
        [None] * n,
        final_correct=final,
        meta={"outcomes": outcomes + [[]], "completion_tokens": [[10] * len(o) for o in outcomes] + [[]]},
    )


def test_replay_and_quality_by_hand():
    problem = generate_split(WorldConfig(n_train=50), "train")[7]
    steps, bad = corrupt(problem, "calculation", random.Random(0), step=1)
    assert bad == 1
    n_steps = len(steps)
    # prefixes 0 good (one success in 4), 1.. bad (no success)
    outcomes = [[0, 1, 0, 0]] + [[0, 0, 0, 0]] * (n_steps - 2)
    rec = _record(problem, steps, outcomes, final=False)
    per = replay(rec, 4, "per_step")
    assert per.hard[:2] == [1, 0] and per.soft[0] == 0.25 and per.completions == 4 * (n_steps - 1)
    early = replay(rec, 4, "early_stop")
    assert early.completions == 2 + 4 * (n_steps - 2) and early.soft[0] is None
    one = replay(rec, 1, "per_step")
    assert one.hard[0] == 0  # the first completion failed: a false negative at N=1
    bs = replay(rec, 4, "binary_search")
    assert bs.hard == [1] + [0] * (n_steps - 1)
    right = replay(_record(problem, steps, outcomes, final=True), 4, "binary_search")
    assert right.hard == [1] * n_steps and right.completions == 0
    rows = {(r["strategy"], r["n"]): r for r in annotation_quality([rec], [problem], ns=(1, 4))}
    assert (
        rows[("per_step", 4)]["he_accuracy"] == 1.0 and rows[("per_step", 4)]["first_error_agreement"] == 1.0
    )
    assert rows[("per_step", 1)]["he_accuracy"] == pytest.approx((n_steps - 2) / (n_steps - 1))
    assert rows[("per_step", 4)]["se_mean_good"] == 0.25 and rows[("per_step", 4)]["se_mean_bad"] == 0.0


def test_annotate_cli_on_real_gsm8k_samples(shared_data, tmp_path, tiny_model_dir):
    """GSM8K-format samples (the reference solutions, one wrong copy each) labelled by a tiny model via the CLI."""
    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.data import load_problems
    from prmkit.io import read_jsonl, write_jsonl
    from prmkit.models import train_tokenizer
    from prmkit.sample import make_solution

    path = shared_data / "gsm8k/test.jsonl"
    problems = load_problems("gsm8k", str(path), limit=3)
    sols = [make_solution(p, 0, p.solution) for p in problems]
    sols += [make_solution(p, 1, p.solution.rsplit("####", 1)[0] + "#### 12345") for p in problems]
    write_jsonl(tmp_path / "samples.jsonl", sols)
    tok = train_tokenizer([p.question + p.solution for p in problems], vocab_size=300)
    tiny_model_dir(tok, "m")
    args = ["annotate", "--model", str(tmp_path / "m"), "--samples", str(tmp_path / "samples.jsonl")]
    args += [
        "--source",
        "gsm8k",
        "--problems",
        str(path),
        "--split",
        "test",
        "--out",
        str(tmp_path / "labels.jsonl"),
    ]
    args += [
        "--set",
        "annotate.n=2",
        "--set",
        "annotate.max_new_tokens=6",
        "--set",
        "annotate.strategy=binary_search",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    labels = read_jsonl(tmp_path / "labels.jsonl", StepLabels)
    assert len(labels) == 6
    by_key = {(r.problem_id, r.sample_id): r for r in labels}
    for p in problems:
        right, wrong = by_key[(p.id, 0)], by_key[(p.id, 1)]
        assert right.hard == [1] * len(right.steps) and sum(right.meta["n_completions"]) == 0
        assert wrong.hard[-1] == 0 and wrong.final_correct is False


class SeededScripted(Policy):
    """Reaches the gold answer or not by the seed and the row, as a sampled completer does."""

    def generate(self, prompts, n=1, seed=0, **kw):
        return [[Completion(f"#### {7 if (seed + row + k) % 3 else 0}", 3, "eos") for k in range(n)]
                for row, _ in enumerate(prompts)]  # fmt: skip


def test_a_chunk_cut_by_a_kill_is_labelled_again_whole(tmp_path):
    sols = [_sol(f"p{i % 4}", i, bad_at=i % 5) for i in range(10)]
    sols[5] = Solution(problem_id="p1", sample_id=5, text="", steps=[])  # a skipped one inside a chunk
    cfg = AnnotateConfig(strategy="per_step", n=2, chunk=4)
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    annotate(SeededScripted(), sols, PROBLEMS, cfg, whole, progress=False)
    lines = whole.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:6]) + lines[6][:30])  # the second chunk's write stopped in its third line
    annotate(SeededScripted(), sols, PROBLEMS, cfg, cut, progress=False)
    assert cut.read_bytes() == whole.read_bytes()
    assert [json.loads(x)["sample_id"] for x in lines] == list(range(10))  # in the order of the solutions
