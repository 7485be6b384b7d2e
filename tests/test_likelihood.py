"""The generator-likelihood selector: the text the generator was trained on, one forward pass, the
running mean at each step end, and its path through score_solutions, best-of-N and the within-problem AUC."""

import math

import pytest
import torch

from prmkit.models import format_prompt, new_model
from prmkit.policy.sft import tokenize_sft
from prmkit.reward import LikelihoodScorer, load_reward_model, score_solutions
from prmkit.reward.scoring import encode_solution
from prmkit.steps import split_steps
from prmkit.types import Solution
from prmkit.verify import aggregate


def test_encoding_is_the_generators_training_text(world):
    problems, tok = world
    for p in problems[:5]:
        steps = split_steps(p.solution)
        e = encode_solution(tok, p.question, steps, eos=True)
        ids, n_prompt, ends = e.ids, e.n_prompt, e.positions
        (row,), _ = tokenize_sft(tok, [(format_prompt(p.question), "\n".join(steps))], 512)
        assert ids == row["input_ids"]  # prompt + solution + EOS, as policy/sft.py trains on it
        assert n_prompt == sum(x == -100 for x in row["labels"])
        assert ends[-1] == len(ids) - 1 and ids[-1] == tok.eos_token_id
        assert all(tok.decode(ids[e]) == "\n" for e in ends[:-1])
    assert encode_solution(tok, "q", [], eos=True).positions == []


def test_scores_are_running_mean_log_probs_from_one_forward(world):
    problems, tok = world
    scorer = LikelihoodScorer(new_model(tok, "test", seed=3).eval(), tok)
    qs = [p.question for p in problems[:4]]
    steps = [split_steps(p.solution) for p in problems[:4]]
    got = scorer.score(qs, steps, batch_size=3)  # right padding across rows of different lengths
    alone = scorer.score(qs[::-1], steps[::-1], batch_size=1)[::-1]
    assert all(x == pytest.approx(y, rel=1e-5) for x, y in zip(got, alone, strict=True))
    for q, ss, row in zip(qs, steps, got, strict=True):
        e = encode_solution(tok, q, ss, eos=True)
        ids, n_prompt, ends = e.ids, e.n_prompt, e.positions
        with torch.no_grad():
            logp = scorer.lm(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)  # (T, V)
        per_token = [logp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids))]
        assert len(row) == len(ss) and all(0 < x <= 1 for x in row)
        for e, x in zip(ends, row, strict=True):
            assert x == pytest.approx(
                math.exp(sum(per_token[: e + 1 - n_prompt]) / (e + 1 - n_prompt)), rel=1e-4
            )
        # "last" is the whole solution's exp(mean token log-prob)
        assert aggregate(row, "last") == pytest.approx(math.exp(sum(per_token) / len(per_token)), rel=1e-4)
    assert scorer.score(["q"], [[]]) == [[]]


def test_truncation_gives_nan_and_warns(world):
    problems, tok = world
    p = problems[0]
    steps = split_steps(p.solution)
    scorer = LikelihoodScorer(new_model(tok, "test"), tok)
    ends = encode_solution(tok, p.question, steps, eos=True).positions
    scorer.max_length = ends[0] + 1
    with pytest.warns(UserWarning, match="1 of 1 solutions"):
        (row,) = scorer.score([p.question], [steps])
    assert not math.isnan(row[0]) and all(math.isnan(x) for x in row[1:])
    assert aggregate(row, "last") == 0.0  # unknown is the worst score, as for every verifier


def test_loaded_by_prefix_and_scored_like_any_verifier(world, tmp_path, tiny_model_dir):
    from prmkit.evaluate.bon import auc_rows, bon_report
    from prmkit.io import read_scores

    problems, tok = world
    gen = tiny_model_dir(tok, "gen")
    scorer = load_reward_model(f"likelihood:{gen}", device="cpu")
    assert isinstance(scorer, LikelihoodScorer) and scorer.source["scorer"] == "likelihood"
    with pytest.raises(ValueError, match="likelihood scorer takes no format"):
        load_reward_model(f"likelihood:{gen}", format="math-shepherd")
    probs = {p.id: p for p in problems[:3]}
    sols = []
    for p in problems[:3]:
        steps = split_steps(p.solution)
        sols += [Solution(p.id, 0, p.solution, steps, p.answer, True),
                 Solution(p.id, 1, "\n".join(steps[:-1] + ["#### 1"]), steps[:-1] + ["#### 1"], "1", False),
                 Solution(p.id, 2, "", [], None, False)]  # fmt: skip
    out = tmp_path / "scores_test_likelihood.jsonl"
    assert score_solutions(f"likelihood:{gen}", sols, probs, out, progress=False) == (9, 0)
    scores = read_scores(out)
    assert [len(scores[(s.problem_id, s.sample_id)]) for s in sols] == [len(s.steps) for s in sols]
    rows, table = bon_report(sols, probs, {"likelihood": scores}, {"likelihood": ["last"]}, groups=1)
    assert "likelihood best-of-N (last)" in table and "likelihood weighted SC (last)" in table
    (auc,) = auc_rows(sols, {"likelihood": scores}, {"likelihood": ["last"]})
    assert auc["problems"] == 3 and auc["pairs"] == 6 and 0 <= auc["auc"] <= 1


def test_likelihood_scores_resume_in_a_moved_run_directory(world, tmp_path, tiny_model_dir, monkeypatch):
    """The claim records the generator's resolved path, so the scores resume when the run directory
    moves whole or is named from another working directory, and are refused for another generator."""
    import shutil

    problems, tok = world
    run = tmp_path / "run"
    run.mkdir()
    shutil.move(tiny_model_dir(tok, "gen"), run / "generator")
    probs = {p.id: p for p in problems[:2]}
    sols = [Solution(p.id, 0, p.solution, split_steps(p.solution), p.answer, True) for p in problems[:2]]
    monkeypatch.chdir(tmp_path)
    assert score_solutions("likelihood:run/generator", sols, probs, run / "s.jsonl", progress=False) == (2, 0)
    moved = shutil.move(run, tmp_path / "moved")
    monkeypatch.chdir(moved)
    assert score_solutions("likelihood:generator", sols, probs, moved / "s.jsonl", progress=False) == (0, 2)
    shutil.copytree(moved / "generator", moved / "other")
    with pytest.raises(ValueError, match="another configuration"):
        score_solutions("likelihood:other", sols, probs, moved / "s.jsonl", progress=False)
