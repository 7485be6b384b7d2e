import json
import random

import pytest
import torch

from prmkit.models import new_model
from prmkit.policy.sft import tokenize_sft
from prmkit.reward.critique import (
    MARKER,
    CritiqueConfig,
    critique_pairs,
    critique_prompt,
    load_critiques,
    train_critique,
)
from prmkit.steps import split_steps
from prmkit.types import Problem, Solution
from prmkit.world import corrupt


def _solutions(problems, n=12):
    return [Solution(p.id, 0, p.solution, split_steps(p.solution), correct=True) for p in problems[:n]]


def test_prompt_and_tokenised_example_masks_all_but_the_critique(world):
    problems, tok = world
    assert critique_prompt("q", ["a", "b"]) == "Question: q\nAnswer:\na\nb" + MARKER
    pairs, skipped = critique_pairs(_solutions(problems, 1), {p.id: p for p in problems})
    assert skipped == 0 and pairs[0][1].endswith("The solution is correct.")
    (row,), _ = tokenize_sft(tok, pairs, 10_000)
    crit = tok(pairs[0][1], add_special_tokens=False)["input_ids"]
    supervised = [t for t in row["labels"] if t != -100]
    assert supervised == crit + [tok.eos_token_id]
    n_prompt = len(row["labels"]) - len(supervised)
    assert row["labels"][:n_prompt] == [-100] * n_prompt
    assert tok.decode(row["input_ids"][:n_prompt]).endswith("Critique:\n")


def test_oracle_critiques_name_the_first_error_and_user_critiques_win(world):
    problems, _ = world
    p = problems[0]
    bad, _ = corrupt(p, "calculation", random.Random(0))
    wrong = Solution(p.id, 1, "\n".join(bad), bad, correct=False)
    other = Problem("jsonl-1", "What is 1+1?", "2", source="jsonl")
    sols = [wrong, Solution("jsonl-1", 0, "1+1=2", ["1+1=2"], correct=True)]
    probs = {p.id: p, "jsonl-1": other}
    pairs, skipped = critique_pairs(sols, probs)
    assert skipped == 1 and "The first error is in step" in pairs[0][1]
    pairs, skipped = critique_pairs(sols, probs, {("jsonl-1", 0): "Step 1 is correct."})
    assert skipped == 0 and pairs[1] == (critique_prompt("What is 1+1?", ["1+1=2"]), "Step 1 is correct.")


def test_user_jsonl_with_a_missing_field_is_a_located_error(tmp_path):
    path = tmp_path / "crit.jsonl"
    path.write_text(
        json.dumps({"problem_id": "a", "sample_id": 0, "critique": "ok"})
        + "\n"
        + json.dumps({"problem_id": "a", "sample_id": 1})
        + "\n"
    )
    with pytest.raises(ValueError, match=r"crit.jsonl:2: .*critique"):
        load_critiques(path)
    path.write_text(json.dumps({"problem_id": "a", "sample_id": "0", "critique": "ok"}) + "\n")
    with pytest.raises(ValueError, match=r"crit.jsonl:1: field 'sample_id'"):
        load_critiques(path)
    path.write_text(json.dumps({"problem_id": "a", "sample_id": 3, "critique": "ok"}) + "\n")
    assert load_critiques(path) == {("a", 3): "ok"}


def test_stage1_trains_and_stage2_prm_starts_from_it(world, tmp_path, tiny_model_dir):
    from prmkit.reward import StepRewardModel
    from prmkit.reward.train import RewardConfig, train_reward
    from prmkit.types import StepLabels

    problems, tok = world
    init = tiny_model_dir(tok, "gen")
    probs = {p.id: p for p in problems}
    cfg = CritiqueConfig(init=str(init), max_steps=2, batch_size=4, lr=1e-2)
    stage1 = train_critique(cfg, _solutions(problems), probs, tmp_path / "stage1")
    assert json.loads((stage1 / "prmkit_critique.json").read_text())["marker"] == MARKER
    before = new_model(tok, "test").state_dict()
    from prmkit.models import load_causal_lm

    after = load_causal_lm(stage1).state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert train_critique(cfg, [], probs, stage1) == stage1  # finished: left alone

    labels = [StepLabels(s.problem_id, 0, s.steps, [1] * len(s.steps), [1.0] * len(s.steps),
                         final_correct=True) for s in _solutions(problems)]  # fmt: skip
    rcfg = RewardConfig(init=str(stage1), kind="prm", max_steps=2, batch_size=4, eval_fraction=0.0)
    out = train_reward(rcfg, labels, probs, tmp_path / "stage2")
    rm = StepRewardModel.from_pretrained(out, device="cpu")
    calls = []
    hook = rm.model.base_model.register_forward_hook(lambda *a: calls.append(1))
    scores = rm.score([p.question for p in problems[:4]], [split_steps(p.solution) for p in problems[:4]])
    hook.remove()
    assert len(calls) == 1 and [len(s) for s in scores] == [
        len(split_steps(p.solution)) for p in problems[:4]
    ]


def test_cli_train_critique(world, tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.io import write_jsonl

    problems, tok = world
    init = tiny_model_dir(tok, "gen")
    write_jsonl(tmp_path / "problems.jsonl", problems[:6])
    write_jsonl(tmp_path / "samples.jsonl", _solutions(problems, 6))
    (tmp_path / "crit.jsonl").write_text(json.dumps({"problem_id": problems[0].id, "sample_id": 0}) + "\n")
    base = ["train", "critique", "--samples", str(tmp_path / "samples.jsonl"), "--problems",
            str(tmp_path / "problems.jsonl"), "--init", str(init), "--set", "critique.max_steps=2",
            "--set", "critique.batch_size=4"]  # fmt: skip
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "prmkit_critique.json").exists()
    res = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "d"), "--critiques", str(tmp_path / "crit.jsonl")]
    )
    assert res.exit_code == 2 and "crit.jsonl:1" in res.output and "critique" in res.output


def test_two_stages_on_real_gsm8k_with_user_critiques(shared_data, tmp_path, tiny_model_dir):
    """GSM8K has no oracle: stage 1 learns from a user's critiques JSONL; stage 2 trains an ORM from it."""
    from prmkit.data import load_gsm8k
    from prmkit.io import write_jsonl
    from prmkit.models import train_tokenizer
    from prmkit.reward import StepRewardModel
    from prmkit.reward.train import RewardConfig, outcome_labels, train_reward

    problems = load_gsm8k(str(shared_data / "gsm8k" / "test.jsonl"), split="test")[:6]
    sols = [Solution(p.id, 0, p.solution, split_steps(p.solution), p.answer, True) for p in problems]
    sols += [Solution(p.id, 1, p.solution.replace(p.answer, "7"), split_steps(p.solution)[:-1] + ["#### 7"], "7",
                      p.answer == "7") for p in problems]  # fmt: skip
    write_jsonl(
        tmp_path / "crit.jsonl",
        [{"problem_id": s.problem_id, "sample_id": s.sample_id,
          "critique": "All steps are correct." if s.correct else "The last step states a wrong answer."} for s in sols],
    )  # fmt: skip
    tok = train_tokenizer([p.question + "\n" + p.solution for p in problems], vocab_size=400)
    init = tiny_model_dir(tok, "gen")
    probs = {p.id: p for p in problems}
    cfg = CritiqueConfig(init=str(init), max_steps=2, batch_size=4)
    stage1 = train_critique(cfg, sols, probs, tmp_path / "stage1", load_critiques(tmp_path / "crit.jsonl"))
    rcfg = RewardConfig(init=str(stage1), kind="orm", max_steps=2, batch_size=4, eval_fraction=0.0)
    orm = StepRewardModel.from_pretrained(train_reward(rcfg, outcome_labels(sols), probs, tmp_path / "orm"))
    scores = orm.score([probs[s.problem_id].question for s in sols], [s.steps for s in sols])
    assert all(len(row) == len(s.steps) and len(set(row)) == 1 for row, s in zip(scores, sols, strict=True))
