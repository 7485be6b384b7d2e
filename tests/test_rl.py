"""PPO maths on hand-computed tensors, reward placement on a hand-made solution, short PPO and RFT runs
on tiny models (process, outcome, resume after a kill), and the ``prmkit rl`` commands on GSM8K lines."""

import dataclasses
import json
import math

import pytest
import torch
from conftest import text_completions
from typer.testing import CliRunner

from prmkit.cli import app
from prmkit.models import format_prompt, new_model, train_tokenizer
from prmkit.policy.base import Completion
from prmkit.reward import StepRewardModel
from prmkit.rl import GRPOConfig, PPOConfig, RFTConfig, train_grpo, train_ppo, train_rft
from prmkit.rl import rollout as rollout_mod
from prmkit.rl.ppo import gae, ppo_policy_loss, value_loss
from prmkit.rl.rft import rft_dataset
from prmkit.rl.rollout import collate, encode_rollouts, score_rollouts, token_rewards
from prmkit.types import Problem, Solution

TEXT = "Tom buys 3*4 = <<3*4=12>>12 pens.\nHe has 12+1 = <<12+1=13>>13 pens.\n#### 13"
PROBLEM = Problem(id="hand-1", question="Tom buys 3 boxes of 4 pens and 1 more pen.", answer="13")


class FakeRM:
    """A reward model stand-in: fixed scores per step, and a record of what it was asked."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def score(self, questions, steps):
        self.calls.append(steps)
        return [self.fn(s) for s in steps]


# ---- maths on hand-computed tensors ----


def test_gae_hand_computed_with_padding():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [1.0, 2.0, 9.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.5, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # row 1 ends after two tokens
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.125, 0.25, 0.5])  # deltas 0, 0, 0.5 discounted by 0.5
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=1.0)
    # row 1: delta_1 = 2 - 0.5 = 1.5 (nothing after the end); delta_0 = 1 + 0.9 * 0.5 - 1 = 0.45
    assert adv[1].tolist() == pytest.approx([0.45 + 0.9 * 1.5, 1.5, 0.0])
    assert ret[1].tolist() == pytest.approx([1.8 + 1.0, 1.5 + 0.5, 0.0])
    # row 0 with lam = 1 is the discounted return minus the value
    assert ret[0].tolist() == pytest.approx([0.81, 0.9, 1.0])


def test_policy_loss_ratios_clipping_and_gradients():
    ratio = torch.tensor([[1.5, 0.5, 0.5, 1.1]])
    logp = ratio.log().requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0, 1.0, 2.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is not the policy's (forced)
    loss, clip_frac = ppo_policy_loss(logp, torch.zeros(1, 4), adv, mask, clip=0.2)
    # token 0: A > 0, rho 1.5 -> clipped at 1.2; token 1: A < 0, rho 0.5 -> clipped at 0.8;
    # token 2: A > 0, rho 0.5 -> the unclipped term is the pessimistic one, -0.5
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 0.5) / 3)
    assert clip_frac.item() == pytest.approx(2 / 3)
    loss.backward()
    # clipped tokens carry no gradient; d(-A * rho)/d logp = -A * rho for the unclipped one
    assert logp.grad.tolist()[0] == pytest.approx([0.0, 0.0, -0.5 / 3, 0.0])
    same, _ = ppo_policy_loss(logp, torch.zeros(1, 4), adv, mask, clip=0.2, n_tokens=6)
    assert same.item() == pytest.approx(-0.9 / 6)  # a fixed token count instead of this minibatch's
    at_one, frac = ppo_policy_loss(torch.zeros(1, 4), torch.zeros(1, 4), adv, mask, clip=0.2)
    assert at_one.item() == pytest.approx(-(1 - 1 + 1) / 3) and frac.item() == 0.0  # rho = 1: -mean A


def test_ppo_updates_lower_the_loss_and_move_the_policy_towards_the_advantage(world):
    # what PPO's update does to a tiny policy: steps on the clipped surrogate (the rollouts' old log-probs,
    # a good rollout with advantage +1, a wrong one with -1, forced tokens masked out) lower the loss,
    # raise the good rollout's log-likelihood and lower the wrong one's
    from prmkit.rl.rollout import response_logprobs

    _, tok = world
    wrong = TEXT.replace("13 pens.\n#### 13", "14 pens.\n#### 14")
    rollouts = encode_rollouts(tok, [PROBLEM, PROBLEM], text_completions([TEXT, wrong], ["eos", "eos"]))
    batch = collate(rollouts, tok.pad_token_id, "cpu")
    mask = batch["mask"] * batch["chosen"]  # (B, T): the policy's own tokens
    adv = torch.tensor([[1.0], [-1.0]]) * mask  # (B, T)
    policy = new_model(tok, "test", seed=0)
    with torch.no_grad():
        old, _ = response_logprobs(policy, batch, 1.0)  # (B, T)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        logp, _ = response_logprobs(policy, batch, 1.0)
        loss, _ = ppo_policy_loss(logp, old, adv, mask, clip=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        new, _ = response_logprobs(policy, batch, 1.0)
    moved = ((new - old) * mask).sum(1)  # (B,): change of each rollout's log-likelihood
    assert losses[0] == pytest.approx(0.0, abs=1e-6)  # ratio 1 and advantages of mean 0 over the tokens
    assert losses[-1] < -0.01 and losses[-1] < losses[1]  # the surrogate falls
    assert moved[0] > 0 > moved[1]  # measured: +2.7 and -0.7 nats


def test_value_loss_clips_around_the_old_value():
    values = torch.tensor([[2.0, 0.1]], requires_grad=True)
    old, ret = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    loss = value_loss(values, old, ret, torch.ones(1, 2), clip=0.5)
    # token 0: (2-1)^2 = 1 vs clipped (0.5-1)^2 = 0.25 -> 1; token 1: (0.1-1)^2 = 0.81 vs the same -> 0.81
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.81) / 2)
    loss.backward()
    assert values.grad.tolist()[0] == pytest.approx([0.5, -0.45])


# ---- rollouts: tokens, forced calculator results, reward positions ----


@pytest.fixture(scope="module")
def hand(world):
    _, tok = world
    (r,) = encode_rollouts(tok, [PROBLEM], text_completions([TEXT], ["eos"]))
    return tok, r


def test_rollout_tokens_forced_results_and_step_ends(hand):
    tok, r = hand
    assert tok.decode(r.ids[: r.n_prompt]) == format_prompt(PROBLEM.question)
    pieces = [tok.decode([t]) for t in r.ids[r.n_prompt :]]
    assert "".join(pieces) == TEXT + tok.eos_token and r.ids[-1] == tok.eos_token_id
    # the calculator wrote "12>>" and "13>>": out of the policy loss, everything else is the policy's
    assert "".join(p for p, c in zip(pieces, r.chosen, strict=True) if not c) == "12>>13>>"
    assert r.steps == TEXT.split("\n")
    assert [pieces[e] for e in r.step_ends] == [".", ".", "3"]
    assert "".join(pieces[: r.step_ends[0] + 1]) == r.steps[0]
    assert "".join(pieces[r.step_ends[1] + 1 : r.step_ends[2] + 1]) == "\n#### 13"
    (cut,) = encode_rollouts(tok, [PROBLEM], text_completions([TEXT], ["length"]))  # no EOS when cut off
    assert cut.ids == r.ids[:-1] and cut.step_ends == r.step_ends


def test_rollout_from_sampled_ids(hand):
    """A completion with its token ids is used as sampled: the canonical ids give the text path's
    rollout, and ids the tokenizer would never produce (one token per character) are kept as they are,
    with the backend's forced mask and step ends read from their pieces."""
    tok, r = hand
    ids, forced = r.ids[r.n_prompt : -1], [not c for c in r.chosen[:-1]]
    (same,) = encode_rollouts(tok, [PROBLEM], [Completion(TEXT, len(ids), "eos", tuple(ids), tuple(forced))])
    assert same == r
    chars = [i for ch in TEXT for i in tok.encode(ch, add_special_tokens=False)]
    assert len(chars) == len(TEXT) and tok.decode(chars) == TEXT and chars != ids
    by_calc = [False] * len(TEXT)
    for span in ("12>>", "13>>"):
        start = TEXT.index(span)
        by_calc[start : start + len(span)] = [True] * len(span)
    (own,) = encode_rollouts(
        tok, [PROBLEM], [Completion(TEXT, len(chars), "eos", tuple(chars), tuple(by_calc))]
    )
    assert (
        own.ids[own.n_prompt :] == [*chars, tok.eos_token_id]
        and own.ids[: own.n_prompt] == r.ids[: r.n_prompt]
    )
    assert own.chosen == [not f for f in by_calc] + [True]
    assert [TEXT[e] for e in own.step_ends] == [".", ".", "3"] and own.steps == r.steps


def test_rewards_land_on_the_step_ends(hand):
    _, r = hand
    rm = FakeRM(lambda steps: [0.25, 0.5, 0.75][: len(steps)])
    problems = {PROBLEM.id: PROBLEM}
    positions, scores, correct = score_rollouts([r], problems, "process", rm)
    assert positions == [r.step_ends] and scores == [[0.25, 0.5, 0.75]] and correct == [True]
    T = r.n_response
    logp = torch.full((1, T), -1.0)
    rewards, kl = token_rewards(logp, logp.clone(), torch.ones(1, T), positions, scores, kl_coef=0.04)
    assert kl.abs().sum() == 0
    assert {i: v for i, v in enumerate(rewards[0].tolist()) if v} == dict(
        zip(r.step_ends, [0.25, 0.5, 0.75], strict=True)
    )
    # outcome: the reward model's final score on the last token (the EOS); answer: the grade there
    assert score_rollouts([r], problems, "outcome", rm)[:2] == ([[T - 1]], [[0.75]])
    assert score_rollouts([r], problems, "answer")[:2] == ([[T - 1]], [[1.0]])
    # the KL penalty sits on the policy's tokens only
    chosen = torch.tensor([r.chosen], dtype=torch.float)
    rewards, kl = token_rewards(logp + 0.5, logp, chosen, [[]], [[]], kl_coef=0.1)
    assert rewards[0].tolist() == pytest.approx([-0.05 if c else 0.0 for c in r.chosen])


def test_rollout_without_steps_and_bad_scores(world):
    _, tok = world
    empty, blank = encode_rollouts(tok, [PROBLEM, PROBLEM], text_completions(["", " \n "], ["eos", "length"]))
    assert empty.n_response == 1 and empty.ids[-1] == tok.eos_token_id and not empty.steps
    assert blank.n_response >= 1 and not blank.steps
    (good,) = encode_rollouts(tok, [PROBLEM], text_completions([TEXT], ["eos"]))
    rm = FakeRM(lambda steps: [0.9] * len(steps))
    for reward in ("process", "outcome", "answer"):  # documented: one wrong step, score 0 at the end
        positions, scores, _ = score_rollouts([empty, blank, good], {PROBLEM.id: PROBLEM}, reward, rm)
        assert positions[:2] == [[0], [blank.n_response - 1]] and scores[:2] == [[0.0], [0.0]]
    assert all(steps == [good.steps] for steps in rm.calls)  # step-less rollouts never reach the model
    batch = collate([empty, good], tok.pad_token_id, "cpu")
    assert batch["mask"].sum(1).tolist() == [1.0, good.n_response]
    nan_rm = FakeRM(lambda steps: [0.5, math.nan, 0.5])  # a step cut by the reward model's context
    assert score_rollouts([good], {PROBLEM.id: PROBLEM}, "process", nan_rm)[1] == [[0.5, 0.0, 0.5]]
    cut_orm = FakeRM(lambda s: [0.5, 0.5, math.nan])
    assert score_rollouts([good], {PROBLEM.id: PROBLEM}, "outcome", cut_orm)[1] == [[0.0]]
    with pytest.raises(ValueError, match="2 scores for 3 steps"):
        score_rollouts([good], {PROBLEM.id: PROBLEM}, "outcome", FakeRM(lambda s: [0.5, 0.5]))
    with pytest.raises(ValueError, match="needs a reward model"):
        score_rollouts([good], {PROBLEM.id: PROBLEM}, "process")


def test_config_validation():
    with pytest.raises(ValueError, match="ppo.reward"):
        PPOConfig(reward="dense")
    with pytest.raises(ValueError, match="needs ppo.reward_model"):
        PPOConfig(reward="process")
    with pytest.raises(ValueError, match="temperature"):
        PPOConfig(reward="answer", temperature=0.0)
    with pytest.raises(ValueError, match="rft: n, batch_size"):
        RFTConfig(k=0)
    with pytest.raises(ValueError, match="rft"):
        RFTConfig(lr=0.0)


# ---- short runs on tiny models ----


@pytest.fixture(scope="module")
def reward_dirs(world, tmp_path_factory):
    """A tiny PRM and ORM with their own tokenizer (not the policy's): scoring goes through text."""
    problems, _ = world
    tok = train_tokenizer([p.question + "\n" + p.solution for p in problems[:30]], vocab_size=300)
    out = {}
    for kind in ("prm", "orm"):
        path = tmp_path_factory.mktemp(kind)
        StepRewardModel(new_model(tok, "test", seed=3), tok, kind=kind).save_pretrained(path)
        out[kind] = str(path)
    return out


def _cfg(**kw) -> PPOConfig:
    base = dict(
        reward="answer",
        iterations=2,
        problems_per_iteration=4,
        samples_per_problem=2,
        minibatch_size=4,
        max_new_tokens=24,
        eval_problems=3,
        eval_every=1,
        save_every=1,
        lr=1e-3,
    )
    return PPOConfig(**{**base, **kw})


@pytest.mark.parametrize("reward,rm", [("process", "prm"), ("outcome", "orm")])
def test_ppo_changes_the_policy_and_keeps_kl_finite(world, tiny_model_dir, reward_dirs, tmp_path, reward, rm):
    from prmkit.sample import SampleConfig, build_policy

    problems, tok = world
    init = tiny_model_dir(tok)
    out = train_ppo(
        _cfg(reward=reward, reward_model=reward_dirs[rm]),
        init,
        problems[:8],
        tmp_path / "ppo",
        eval_problems=problems[40:],
        progress=False,
    )
    assert (out / "config.json").exists()  # that the policy moved: kl below; which way: the test after
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert "greedy_accuracy" in metrics[0] and "greedy_accuracy" in metrics[-1]
    for m in metrics[1:]:
        assert all(math.isfinite(v) for v in m.values())
        for key in ("reward_score", "kl", "entropy", "clip_frac", "value_loss", "policy_loss", "t_generate"):
            assert key in m
    assert metrics[1]["kl"] == 0.0 and metrics[2]["kl"] != 0.0  # the first rollouts come from the reference
    meta = json.loads((out / "prmkit_rl.json").read_text())
    assert meta["config"]["reward"] == reward and meta["iterations"] == 2
    sampled = build_policy(str(out), SampleConfig(max_new_tokens=8)).sample(["Question: x\nAnswer:\n"], n=2)
    assert len(sampled[0]) == 2


@pytest.mark.parametrize("method", ["ppo", "grpo"])
def test_policy_gradient_resumes_after_a_kill(world, tiny_model_dir, tmp_path, monkeypatch, method):
    """PPO and GRPO share the loop (``rl.loop``): a run killed during its third iteration resumes from
    the second's state, redoes only the third, repairs its metrics and ends where an uninterrupted run
    does, bit for bit."""
    from prmkit.models import load_causal_lm

    problems, tok = world
    init = tiny_model_dir(tok)
    if method == "ppo":
        train, cfg = train_ppo, _cfg(iterations=3)
    else:  # test_grpo.py's settings
        train, cfg = train_grpo, GRPOConfig(
            reward="answer", iterations=3, problems_per_iteration=2, samples_per_problem=3, minibatch_size=4,
            max_new_tokens=24, eval_problems=3, eval_every=1, save_every=1, lr=1e-3,
        )  # fmt: skip
    real, calls = rollout_mod.sample_rollouts, []

    def dies_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if killed during the third iteration
        return real(*args, **kwargs)

    monkeypatch.setattr(rollout_mod, "sample_rollouts", dies_at_third)
    out, ckpt = tmp_path / method, tmp_path / f"{method}.checkpoints"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, init, problems[:8], out, eval_problems=problems[40:], progress=False)
    assert not out.exists()
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert state["iteration"] == 2 and ("critic" in state) == (method == "ppo")
    first = (ckpt / "metrics.jsonl").read_text().splitlines()
    with (ckpt / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 3, "rew')  # the kill also tore a metrics line
    calls.clear()
    monkeypatch.setattr(rollout_mod, "sample_rollouts", lambda *a, **k: calls.append(1) or real(*a, **k))
    # resuming with other settings or other problems is refused, naming what changed; nothing is touched
    other = dataclasses.replace(cfg, max_new_tokens=cfg.max_new_tokens + 1)
    with pytest.raises(ValueError, match=rf"{method}.max_new_tokens: {cfg.max_new_tokens}, now .*delete"):
        train(other, init, problems[:8], out, eval_problems=problems[40:], progress=False)
    with pytest.raises(ValueError, match=r"problems: '8 problems, .*, now '7 problems"):
        train(cfg, init, problems[:7], out, eval_problems=problems[40:], progress=False)
    assert not calls and torch.load(ckpt / "state.pt", weights_only=True)["iteration"] == 2
    # speed and bookkeeping knobs may change
    train(dataclasses.replace(cfg, batch_size=cfg.batch_size + 1, save_every=2), init, problems[:8], out,
          eval_problems=problems[40:], progress=False)  # fmt: skip
    assert len(calls) == 1  # only the third iteration ran again
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert lines[:3] == first and [json.loads(x)["iteration"] for x in lines] == [0, 1, 2, 3]
    # and the resumed run ends where an uninterrupted one does
    whole = train(cfg, init, problems[:8], tmp_path / "whole", eval_problems=problems[40:], progress=False)
    a, b = load_causal_lm(out), load_causal_lm(whole)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert train(cfg, init, problems[:8], out) == out  # finished: returned as is


def test_rft_dataset_keeps_distinct_correct_solutions():
    p = Problem(id="a", question="q", answer="2", solution="1+1 = 2\n#### 2")
    q = Problem(id="b", question="q2", answer="3")
    sols = [
        Solution("a", i, t, [], correct=c)
        for i, (t, c) in enumerate(
            [
                ("x\n#### 2", True),
                ("x \n####  2", True),
                ("y\n#### 2", True),
                ("z\n#### 2", True),
                ("#### 5", False),
            ]
        )
    ] + [Solution("b", 0, "w\n#### 3", [], correct=True)]
    train, stats = rft_dataset([p, q], sols, max_per_problem=2)
    assert [(x.id, x.solution) for x in train] == [
        ("a", p.solution),
        ("a", "x\n#### 2"),
        ("a", "y\n#### 2"),
        ("b", "w\n#### 3"),
    ]
    assert stats["correct"] == 5 and stats["distinct_correct"] == 3 and stats["references"] == 1
    train, _ = rft_dataset([p, q], sols, with_reference=False)
    assert len(train) == 4 and all(x.solution != p.solution for x in train)


def test_rft_on_the_world_end_to_end(world, tiny_model_dir, tmp_path):
    problems, tok = world
    gen = tiny_model_dir(tok)
    cfg = RFTConfig(k=2, max_problems=6, max_new_tokens=12, max_steps=2, train_batch_size=4)
    out = train_rft(cfg, gen, problems, tmp_path / "rft", progress=False)  # the first 6 problems
    assert (out / "config.json").exists()
    stats = json.loads((out / "prmkit_rl.json").read_text())
    assert stats["samples"] == 12 and stats["examples"] == 6 + stats["distinct_correct"]
    assert len((tmp_path / "rft.checkpoints" / "samples.jsonl").read_text().splitlines()) == 12
    assert train_rft(cfg, gen, problems[:6], out) == out
    bare = [Problem(p.id, p.question, p.answer) for p in problems[:2]]  # no references, nothing correct
    with pytest.raises(ValueError, match="no correct sample"):
        train_rft(RFTConfig(k=1, max_new_tokens=4), gen, bare, tmp_path / "none", progress=False)


# ---- the command line ----


def test_rl_help():
    runner = CliRunner()
    for cmd in ("ppo", "rft"):
        result = runner.invoke(app, ["rl", cmd, "--help"])
        assert result.exit_code == 0 and "--problems" in result.output
    assert "--reward-model" in runner.invoke(app, ["rl", "ppo", "--help"]).output


def _sets(stage: str, *values: str) -> list[str]:
    return [a for v in values for a in ("--set", f"{stage}.{v}")]


def test_rl_cli_on_gsm8k_lines(shared_data, world, tiny_model_dir, reward_dirs, tmp_path):
    _, tok = world
    policy, runner = tiny_model_dir(tok), CliRunner()
    data = ["--source", "gsm8k", "--problems", str(shared_data / "gsm8k/train.jsonl"), "--limit", "4"]
    sets = _sets("ppo", "iterations=1", "problems_per_iteration=2", "max_new_tokens=16", "minibatch_size=2")
    args = ["rl", "ppo", "--policy", str(policy), *data, *sets]
    evals = ["--eval-problems", str(shared_data / "gsm8k/test.jsonl"), "--eval-limit", "2"]
    prm = ["--reward-model", reward_dirs["prm"]]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "ppo"), *prm, *evals])
    assert result.exit_code == 0, result.output
    assert "ppo (process) 1 iterations" in result.stdout and (tmp_path / "ppo" / "config.json").exists()
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "x"), "--reward", "outcome"])
    assert bad.exit_code == 2 and "needs ppo.reward_model" in bad.output
    rft = ["rl", "rft", "--generator", str(policy), "--out", str(tmp_path / "rft"), *data]
    result = runner.invoke(app, [*rft, *_sets("rft", "k=2", "max_new_tokens=8", "max_steps=1")])
    assert result.exit_code == 0, result.output
    assert "4 training examples" in result.stdout  # the 4 references; a random model solves nothing


def test_rl_cli_on_a_world_run_dir(world, tiny_model_dir, reward_dirs, tmp_path):
    from prmkit.io import write_jsonl

    problems, tok = world
    write_jsonl(tmp_path / "run" / "world" / "train.jsonl", problems[:8])
    write_jsonl(tmp_path / "run" / "world" / "test.jsonl", problems[40:43])
    policy, runner = tiny_model_dir(tok), CliRunner()
    sets = _sets("ppo", "iterations=1", "problems_per_iteration=2", "max_new_tokens=12")
    args = ["rl", "ppo", "--policy", str(policy), "--problems", str(tmp_path / "run"), *sets]
    orm = ["--reward", "outcome", "--reward-model", reward_dirs["orm"]]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), *orm])
    assert result.exit_code == 0, result.output
    assert "ppo (outcome) 1 iterations, greedy accuracy" in result.stdout  # on the run's test split
    evals = (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()
    assert list(json.loads(evals[0])) == ["iteration", "greedy_accuracy"]


def test_run_claim_names_the_reward_model_by_its_resolved_path(tmp_path, monkeypatch):
    """A run directory named from another working directory, or moved whole, resumes its RL state: the
    claim records where the reward model lies, not how it was spelled."""
    from prmkit.rl.loop import run_config

    (tmp_path / "run" / "prm").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    outer = run_config("ppo", PPOConfig(reward="process", reward_model="run/prm"), {}, [], [])
    monkeypatch.chdir(tmp_path / "run")
    inner = run_config("ppo", PPOConfig(reward="process", reward_model="prm"), {}, [], [])
    assert outer == inner and outer["ppo.reward_model"] == str((tmp_path / "run" / "prm").resolve())
    hub = run_config("ppo", PPOConfig(reward="process", reward_model="org/prm-7b"), {}, [], [])
    assert hub["ppo.reward_model"] == "org/prm-7b"  # not a local path: as given
