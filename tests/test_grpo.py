"""GRPO: group advantages and the k3 KL by hand, the loss on a tiny random model, the policy moving toward
the better sample of a group, resume after a kill, the RL comparison's GRPO methods, and ``prmkit rl grpo``."""

import json
import math
from dataclasses import replace

import pytest
import torch
from conftest import text_completions
from typer.testing import CliRunner

from prmkit.cli import app
from prmkit.evaluate.stats import spread
from prmkit.rl import GRPOConfig, train_grpo
from prmkit.rl import grpo as grpo_mod
from prmkit.rl.compare import RLConfig, reward_of
from prmkit.rl.grpo import _optimise, group_advantages, kl_k3
from prmkit.rl.loop import ppo_policy_loss
from prmkit.rl.rollout import collate, encode_rollouts, response_logprobs, score_rollouts
from prmkit.types import Problem

GOOD = "Tom buys 3*4 = <<3*4=12>>12 pens.\nHe has 12+1 = <<12+1=13>>13 pens.\n#### 13"
BAD = "Tom buys 3+4 = <<3+4=7>>7 pens.\n#### 7"
PROBLEM = Problem(id="hand-1", question="Tom buys 3 boxes of 4 pens and 1 more pen.", answer="13")


# ---- advantages and KL by hand ----


def test_outcome_advantages_by_hand_with_an_all_equal_group():
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0]])
    positions = [[2], [1], [0], [2], [2], [1]]
    # group 0: rewards (1, 0, 0) (the last one a step-less sample: 0 at its only token); group 1: all 1
    scores = [[1.0], [0.0], [0.0], [1.0], [1.0], [1.0]]
    adv, zero = group_advantages(positions, scores, mask, group_size=3, process=False, eps=0.0)
    # mean 1/3, sample std sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = 1/sqrt(3): (2/sqrt(3), -1/sqrt(3), -1/sqrt(3))
    s = 1 / math.sqrt(3)
    assert adv[0].tolist() == pytest.approx([2 * s] * 3)
    assert adv[1].tolist() == pytest.approx([-s, -s, 0.0])  # padding stays 0
    assert adv[2].tolist() == pytest.approx([-s, 0.0, 0.0])
    assert adv[3:].abs().sum() == 0 and zero == 0.5  # equal rewards: no signal, exactly 0
    adv_eps, _ = group_advantages(positions, scores, mask, group_size=3, process=False, eps=1e-6)
    assert adv_eps[0, 0].item() == pytest.approx(1 / (s + 1e-6) * 2 / 3)
    with pytest.raises(ValueError, match="not groups of 4"):
        group_advantages(positions, scores, mask, group_size=4, process=False)


def test_process_advantages_by_hand():
    mask = torch.ones(3, 5)
    mask[2, 1:] = 0  # a step-less sample: one token, reward 0 there
    positions = [[1, 4], [0, 2, 3], [0]]
    scores = [[0.9, 0.8], [0.9, 0.2, 0.1], [0.0]]
    adv, zero = group_advantages(positions, scores, mask, group_size=3, process=True, eps=0.0)
    pool = torch.tensor([0.9, 0.8, 0.9, 0.2, 0.1, 0.0], dtype=torch.float64)
    n = ((pool - pool.mean()) / pool.std()).tolist()  # every step of the group, normalised together
    assert adv[0].tolist() == pytest.approx([n[0] + n[1], n[0] + n[1], n[1], n[1], n[1]])
    assert adv[1].tolist() == pytest.approx([n[2] + n[3] + n[4], n[3] + n[4], n[3] + n[4], n[4], 0.0])
    assert adv[2].tolist() == pytest.approx([n[5], 0, 0, 0, 0])
    assert zero == 0.0
    # the same steps in every sample: all equal, no signal
    same, zero = group_advantages([[1], [1]], [[0.5], [0.5]], torch.ones(2, 2), 2, process=True)
    assert same.abs().sum() == 0 and zero == 1.0


def test_k3_kl_by_hand_and_its_gradient():
    logp = torch.log(torch.tensor([0.5, 0.25, 0.8])).requires_grad_(True)
    ref = torch.log(torch.tensor([0.5, 0.5, 0.4]))
    kl = kl_k3(logp, ref)
    # r = ref / pi = 1, 2, 0.5: r - log r - 1 = 0, 1 - log 2, log 2 - 0.5
    assert kl.tolist() == pytest.approx([0.0, 1 - math.log(2), math.log(2) - 0.5], abs=1e-6)
    kl.sum().backward()
    assert logp.grad.tolist() == pytest.approx([0.0, -1.0, 0.5], abs=1e-6)  # d/dlogp = 1 - r


def test_config_validation():
    with pytest.raises(ValueError, match="grpo.samples_per_problem"):
        GRPOConfig(reward="answer", samples_per_problem=1)
    with pytest.raises(ValueError, match="needs grpo.reward_model"):
        GRPOConfig(reward="outcome")
    with pytest.raises(ValueError, match="grpo.reward: unknown 'dense'"):
        GRPOConfig(reward="dense")
    with pytest.raises(ValueError, match="temperature"):
        GRPOConfig(reward="answer", temperature=0.0)
    with pytest.raises(ValueError, match="grpo.max_draws must be >= 1, got 0"):
        GRPOConfig(reward="answer", dynamic_sampling=True, max_draws=0)


def test_rl_comparison_knows_the_grpo_methods():
    cfg = RLConfig(methods=("rft", "grpo-process", "grpo-outcome", "grpo-answer"))
    assert cfg.verifiers() == {"prm", "orm"} and reward_of("grpo-process") == "process"
    with pytest.raises(ValueError, match="unknown grpo-dense"):
        RLConfig(methods=("grpo-dense",))
    assert spread([0.5, 0.6, 0.7])["ci95"] == pytest.approx(4.303 * 0.1 / math.sqrt(3))


# ---- a tiny random model ----


def _hand_batch(tok):
    rollouts = encode_rollouts(tok, [PROBLEM, PROBLEM], text_completions([GOOD, BAD], ["eos", "eos"]))
    positions, scores, correct = score_rollouts(rollouts, {PROBLEM.id: PROBLEM}, "answer")
    assert correct == [True, False]
    return collate(rollouts, tok.pad_token_id, "cpu"), positions, scores


def _seq_logp(model, batch):
    with torch.no_grad():
        logp, _ = response_logprobs(model, batch, 1.0)
    return (logp * batch["chosen"]).sum(1)  # (B,) log-probability of each sample's own tokens


def _train_on_hand_group(tok, scores: list[list[float]]):
    """Three GRPO iterations on one group (GOOD, BAD) with the given rewards, from one random policy:
    the surrogate at the start and at the end (against the starting policy), each sample's
    log-probability before and after, and the last metrics."""
    from prmkit.models import new_model

    torch.manual_seed(0)
    policy, ref = new_model(tok, "test"), new_model(tok, "test")
    ref.load_state_dict(policy.state_dict())
    policy.eval(), ref.requires_grad_(False)
    batch, positions, _ = _hand_batch(tok)
    cfg = GRPOConfig(
        reward="answer", samples_per_problem=2, minibatch_size=2, epochs=1, lr=1e-3, temperature=1.0
    )
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    adv, _ = group_advantages(positions, scores, batch["mask"], 2, process=False)
    with torch.no_grad():
        old_logp, _ = response_logprobs(policy, batch, 1.0)
    start, _ = ppo_policy_loss(old_logp, old_logp, adv, batch["chosen"], cfg.clip)
    before = _seq_logp(policy, batch)
    for it in range(3):
        m = _optimise(cfg, policy, ref, opt, sched, batch, positions, scores, it)
    with torch.no_grad():
        logp, _ = response_logprobs(policy, batch, 1.0)
    end, _ = ppo_policy_loss(logp, old_logp, adv, batch["chosen"], cfg.clip)
    return start, end, before, _seq_logp(policy, batch), m


def test_loss_falls_and_the_policy_moves_toward_the_better_sample(world):
    _, tok = world
    start, end, before, after, m = _train_on_hand_group(tok, [[1.0], [0.0]])  # GOOD right, BAD wrong
    assert end < start  # the clipped surrogate against the starting policy fell
    assert m["zero_adv_groups"] == 0.0 and m["kl"] > 0 and math.isfinite(m["policy_loss"])
    gap = (after[0] - after[1]) - (before[0] - before[1])
    assert gap > 1.0  # log pi(GOOD) - log pi(BAD) grew: the policy moved toward the rewarded sample
    # the same group with the rewards swapped moves the other way: the sign comes from the reward
    _, _, before, after, _ = _train_on_hand_group(tok, [[0.0], [1.0]])
    assert (after[0] - after[1]) - (before[0] - before[1]) < -1.0


def _cfg(**kw) -> GRPOConfig:
    base = dict(
        reward="answer",
        iterations=2,
        problems_per_iteration=2,
        samples_per_problem=3,
        minibatch_size=4,
        max_new_tokens=24,
        eval_problems=3,
        eval_every=1,
        save_every=1,
        lr=1e-3,
    )
    return GRPOConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def prm_dir(world, tmp_path_factory):
    from prmkit.models import new_model, train_tokenizer
    from prmkit.reward import StepRewardModel

    problems, _ = world
    tok = train_tokenizer([p.question + "\n" + p.solution for p in problems[:30]], vocab_size=300)
    path = tmp_path_factory.mktemp("prm")
    StepRewardModel(new_model(tok, "test", seed=3), tok, kind="prm").save_pretrained(path)
    return str(path)


def test_grpo_process_run_writes_ppos_metrics(world, tiny_model_dir, prm_dir, tmp_path):
    from prmkit.models import load_causal_lm

    problems, tok = world
    init = tiny_model_dir(tok)
    out = train_grpo(
        _cfg(reward="process", reward_model=prm_dir),
        init,
        problems[:8],
        tmp_path / "grpo",
        eval_problems=problems[40:],
        progress=False,
    )
    before, after = load_causal_lm(init), load_causal_lm(out)
    assert any(not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [0, 1, 2] and "greedy_accuracy" in metrics[0]
    for m in metrics[1:]:  # PPO's keys but the critic's, and GRPO's own
        assert all(math.isfinite(v) for v in m.values())
        for key in ("reward_score", "kl", "reward_kl", "entropy", "clip_frac", "policy_loss", "accuracy"):
            assert key in m
        assert "kl_loss" in m and 0 <= m["zero_adv_groups"] <= 1 and "value_loss" not in m
    assert metrics[1]["kl"] == 0.0 and metrics[2]["kl"] != 0.0
    meta = json.loads((out / "prmkit_rl.json").read_text())
    assert meta["method"] == "grpo" and meta["config"]["reward"] == "process" and meta["iterations"] == 2


def test_dynamic_sampling_draws_until_the_batch_has_signal(world, tiny_model_dir, tmp_path, monkeypatch):
    """DAPO's dynamic sampling: groups whose rewards are all equal stay out of the batch and the
    iteration draws more problems, from the slots ``it * max_draws + d``; a batch still short after
    ``max_draws`` draws is topped up with turned-down groups, so its size never changes."""
    from prmkit.rl import rollout as rollout_mod

    problems, tok = world
    init = tiny_model_dir(tok)
    real_sample, slots, batches = rollout_mod.sample_rollouts, [], []

    def sample(sampler, tok, batch_problems, n, temperature, seed):
        slots.append(seed)  # cfg.seed = 0: the sampling seed is the slot
        return real_sample(sampler, tok, batch_problems, n, temperature, seed=seed)

    def score(rollouts, by_id, *args):  # draw d: group g has signal iff (d + g) is even
        d = len(slots) - 1
        scores = [[float(d % 2 == 0 and i % 3 == 0)] if i < 3 else [float(d % 2 == 1 and i % 3 == 0)]
                  for i in range(len(rollouts))]  # fmt: skip
        return [[r.n_response - 1] for r in rollouts], scores, [False] * len(rollouts)

    real_optimise = grpo_mod._optimise

    def optimise(cfg, policy, ref, opt, sched, batch, positions, scores, it):
        batches.append((len(batch["mask"]), scores))
        return real_optimise(cfg, policy, ref, opt, sched, batch, positions, scores, it)

    monkeypatch.setattr(rollout_mod, "sample_rollouts", sample)
    monkeypatch.setattr(rollout_mod, "score_rollouts", score)
    monkeypatch.setattr(grpo_mod, "_optimise", optimise)
    cfg = _cfg(dynamic_sampling=True, max_draws=3, eval_problems=0)
    out = train_grpo(cfg, init, problems[:8], tmp_path / "ds", progress=False)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert slots == [0, 1, 3, 4]  # two draws an iteration, from slots 0, 1 and 3, 4 of 3 per iteration
    assert [(m["draws"], m["signal_groups"], m["zero_adv_groups"]) for m in metrics] == [(2, 0.5, 0.0)] * 2
    assert [b[0] for b in batches] == [6, 6]  # 2 groups of 3, one from each draw
    assert batches[0][1] == [[1.0], [0.0], [0.0], [1.0], [0.0], [0.0]]

    # every group all-equal: 3 draws, then the batch is topped up with groups of no signal
    monkeypatch.setattr(
        rollout_mod, "score_rollouts", lambda r, *a: ([[0]] * len(r), [[0.0]] * len(r), [0] * len(r))
    )
    slots.clear()
    batches.clear()
    out = train_grpo(replace(cfg, iterations=1), init, problems[:8], tmp_path / "none", progress=False)
    m = json.loads((out / "metrics.jsonl").read_text())
    assert slots == [0, 1, 2] and batches[0][0] == 6
    assert (m["draws"], m["signal_groups"], m["zero_adv_groups"]) == (3, 0.0, 1.0)


# ---- the command line ----


def test_rl_grpo_help():
    result = CliRunner().invoke(app, ["rl", "grpo", "--help"])
    assert result.exit_code == 0
    for word in ("--problems", "--reward-model", "group", "k3", "metrics.jsonl", "dynamic_sampling"):
        assert word in result.output


def test_rl_grpo_cli_on_gsm8k_lines_and_a_world_run_dir(
    shared_data, world, tiny_model_dir, prm_dir, tmp_path
):
    from prmkit.io import write_jsonl

    problems, tok = world
    policy, runner = tiny_model_dir(tok), CliRunner()
    sets = [
        a
        for v in ("iterations=1", "problems_per_iteration=2", "samples_per_problem=2", "max_new_tokens=16")
        for a in ("--set", f"grpo.{v}")
    ]
    data = ["--source", "gsm8k", "--problems", str(shared_data / "gsm8k/train.jsonl"), "--limit", "4"]
    evals = ["--eval-problems", str(shared_data / "gsm8k/test.jsonl"), "--eval-limit", "2"]
    args = ["rl", "grpo", "--policy", str(policy), *sets]
    result = runner.invoke(
        app, [*args, *data, *evals, "--out", str(tmp_path / "g"), "--reward-model", prm_dir]
    )
    assert result.exit_code == 0, result.output
    assert "grpo (process) 1 iterations, greedy accuracy" in result.stdout
    assert (tmp_path / "g" / "config.json").exists()
    bad = runner.invoke(app, [*args, *data, "--out", str(tmp_path / "x"), "--reward", "outcome"])
    assert bad.exit_code == 2 and "needs grpo.reward_model" in bad.output
    write_jsonl(tmp_path / "run" / "world" / "train.jsonl", problems[:8])
    write_jsonl(tmp_path / "run" / "world" / "test.jsonl", problems[40:43])
    world_args = ["--problems", str(tmp_path / "run"), "--reward", "answer", "--out", str(tmp_path / "w")]
    result = runner.invoke(app, [*args, *world_args])
    assert result.exit_code == 0, result.output
    assert "grpo (answer) 1 iterations, greedy accuracy" in result.stdout  # on the run's test split
