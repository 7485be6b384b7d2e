"""Degenerate model output is ordinary input: every stage of the loop takes it without crashing.

A sampling backend that swaps some of the real generator's completions for degenerate ones (empty
text, whitespace only, no final answer, a blank step, cut at the token limit, a step longer than
the model's context, non-ASCII text) drives the whole demo; the PPO reward path gets the same texts.
"""

import math

import pytest

from prmkit.config import load_recipe
from prmkit.policy import base
from prmkit.policy.base import Completion, Policy, make_policy
from prmkit.sample import make_solution
from prmkit.types import Problem, Solution
from prmkit.verify import Candidate, select

LONG_STEP = "So " + "1+" * 600 + "1 = <<1+1=2>>2 apples."  # > 1024 tokens: past the tiny models' context
DEGENERATE = {
    "empty": ("", "eos"),
    "whitespace": ("  \n \n\t", "eos"),
    "no answer": ("Tom has some apples.\nHe eats them.", "eos"),
    "blank step": ("She buys 2*3 = <<2*3=6>>6 pens.\n   \n#### 6", "eos"),
    "cut": ("She buys 2*3 = <<2*3=6>>6 pens.\nThen she gets 6+", "length"),
    "too long": (f"{LONG_STEP}\n#### 2", "eos"),
    "non-ascii": ("Él compra 2×3 = <<2*3=6>>6 plumas 🍎.\n#### ６", "eos"),
}


class DegeneratePolicy(Policy):
    """The hf backend, with completion i of each prompt replaced by degenerate case i (when i < 7)."""

    def __init__(self, model: str, **kwargs):
        self.inner = make_policy("hf", model, **kwargs)

    def generate(self, prompts, n=1, **kwargs):
        rows = self.inner.generate(prompts, n, **kwargs)
        cases = [Completion(text, len(text), finish) for text, finish in DEGENERATE.values()]
        return [[cases[i] if i < len(cases) else c for i, c in enumerate(row)] for row in rows]


def test_degenerate_solution_records():
    p = Problem(id="w-1", question="q", answer="6")
    sols = {name: make_solution(p, 0, text) for name, (text, _) in DEGENERATE.items()}
    assert sols["empty"].steps == [] and sols["empty"].answer is None and sols["empty"].correct is False
    assert sols["whitespace"].steps == [] and sols["whitespace"].correct is False
    assert sols["no answer"].answer is None and sols["no answer"].correct is False
    assert sols["blank step"].steps == ["She buys 2*3 = <<2*3=6>>6 pens.", "#### 6"]
    assert sols["blank step"].correct is True
    assert sols["cut"].answer == "6"  # graded like any text: without "####", the last number counts
    assert sols["non-ascii"].correct is True  # a full-width digit is still the number 6


def test_an_empty_solution_is_never_picked_over_a_non_empty_one():
    empty, wrong = Candidate(None, False, []), Candidate("7", False, [0.0])
    right = Candidate("6", True, [0.0, 0.0])  # scored as low as the empty one
    for how in ("min", "prod", "last", "mean"):
        assert select([empty, right], "best_of_n", "gsm8k", how)
        assert not select([empty, wrong], "best_of_n", "gsm8k", how)
    assert select([empty, empty, right], "majority", "gsm8k")
    assert select([empty, right], "weighted_sc", "gsm8k")


def test_ppo_rewards_for_degenerate_rollouts(world, tmp_path):
    """PPO's rewards from a real (tiny) PRM for each degenerate text: finite, and a step cut by the
    reward model's context scores 0 like a step-less rollout."""
    from conftest import text_completions

    from prmkit.models import new_model
    from prmkit.reward import StepRewardModel
    from prmkit.rl.rollout import encode_rollouts, score_rollouts

    problems, tok = world
    new_model(tok, "test").save_pretrained(tmp_path / "prm")
    tok.save_pretrained(tmp_path / "prm")
    prm = StepRewardModel.from_pretrained(tmp_path / "prm", device="cpu")
    p = problems[0]
    texts, finishes = zip(*DEGENERATE.values(), strict=True)
    rollouts = encode_rollouts(tok, [p] * len(texts), text_completions(list(texts), list(finishes)))
    for reward in ("process", "outcome", "answer"):
        positions, values, correct = score_rollouts(rollouts, {p.id: p}, reward, prm)
        assert len(values) == len(texts) and not any(correct)
        assert all(math.isfinite(v) for row in values for v in row), (reward, values)
        long = values[list(DEGENERATE).index("too long")]
        assert long[0] == 0.0 if reward == "process" else len(long) == 1


@pytest.mark.slow
def test_demo_takes_degenerate_samples_through_every_stage(tmp_path, monkeypatch):
    """The quick demo with a generator that emits every degenerate case: it reaches its report."""
    monkeypatch.setitem(base._REGISTRY, "degenerate", DegeneratePolicy)  # this test's backend only
    from prmkit.io import read_jsonl, read_scores
    from prmkit.pipeline import run_demo

    sets = [
        "sft.max_steps=4", "prm.max_steps=2", "orm.max_steps=2", "value.max_steps=2", "sample.backend=degenerate", "sample.n=8", "annotate.backend=degenerate",
        "demo.pool_problems=6", "demo.pool_samples=8", "demo.label_solutions=0", "demo.test_problems=4",
        "demo.ood_problems=2", "demo.ood_samples=8", "demo.audit_solutions=2",
        "rl.methods=[outcome, process]", "rl.seeds=1", "rl.bon_samples=8",
        "ppo.iterations=1", "ppo.problems_per_iteration=2", "ppo.samples_per_problem=2",
        "ppo.minibatch_size=4", "ppo.max_new_tokens=16", "ppo.eval_problems=2",
        "demo.verifiers=[prm, orm, value, likelihood]",
    ]  # fmt: skip
    run = tmp_path / "run"
    report = run_demo(load_recipe("recipes/world-quick.yaml", sets), run)
    sols = read_jsonl(run / "samples_test.jsonl", Solution)
    assert sum(not s.steps for s in sols) == 2 * 4  # empty and whitespace, for each of the 4 problems
    scores = read_scores(run / "scores_test_prm.jsonl")
    assert all(scores[(s.problem_id, s.sample_id)] == [] for s in sols if not s.steps)
    too_long = [scores[(s.problem_id, s.sample_id)] for s in sols if s.text.startswith("So 1+1+")]
    assert too_long and all(math.isnan(row[0]) for row in too_long)  # cut by the context: NaN, not a crash
    likelihood = read_scores(run / "scores_test_likelihood.jsonl")  # the generator's own, the same rules
    assert all(likelihood[(s.problem_id, s.sample_id)] == [] for s in sols if not s.steps)
    assert all(
        math.isnan(likelihood[(s.problem_id, s.sample_id)][0]) for s in sols if s.text.startswith("So 1+")
    )
    aucs = {r["verifier"] for r in report["splits"]["test"]["within_problem_auc"]}
    assert aucs == {"PRM", "ORM", "value", "likelihood"}
    assert "likelihood" not in report["splits"]["test"]["verifier_quality"]
    labels = report["verifiers"]["labels"]
    assert labels["skipped"] > 0  # the step-less solutions are skipped, and counted
    md = (run / "report.md").read_text()
    assert "Best-of-N, test split" in md and "| likelihood (last) |" in md
