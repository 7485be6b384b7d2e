"""GRPO (DeepSeekMath, Shao et al. 2024): PPO without a critic, the baseline taken from a group of samples.

Each iteration samples a group of G = ``samples_per_problem`` solutions for each of
``problems_per_iteration`` training problems (``loop.train_loop``, shared with PPO) and scores them
(``rollout.score_rollouts``). Advantages are relative to the group (``group_advantages``):

- outcome supervision (``reward`` = ``outcome``, the ORM's final score, or ``answer``, the graded
  answer): ``A_i = (r_i - mean(r)) / (std(r) + eps)`` on every response token of sample i;
- process supervision (``process``, §4.1.3): every step reward of every sample in the group is
  normalised by the mean and std of all of them, ``r~_ij = (r_ij - mean(R)) / (std(R) + eps)``, and a
  token's advantage is the sum of the normalised rewards of the steps that end at or after it,
  ``A_it = sum_{j: end(j) >= t} r~_ij``.

The loss over the policy's tokens (calculator-forced tokens are out, as in PPO) is PPO's clipped
surrogate plus the KL to the frozen starting policy as a loss term with the k3 estimator,
``kl_coef * (pi_ref / pi - log(pi_ref / pi) - 1)`` (unbiased, always >= 0; paper beta = 0.04).

A group whose rewards are all equal (all right or all wrong under ``answer``) carries no signal: its
advantages are exactly 0 and the fraction of such groups is logged (``zero_adv_groups``). With
``dynamic_sampling`` (DAPO, Yu et al. 2025) such groups are left out of the batch and more problems are
drawn, up to ``max_draws`` rounds of ``problems_per_iteration`` an iteration, until the batch has
``problems_per_iteration`` groups with signal (``loop.train_loop``; ``draws`` and ``signal_groups``,
the fraction of drawn groups with signal, are logged). A batch still short after the last round is
topped up with the turned-down groups, which add only the KL term, so every batch has one size. A sample
with no step at all counts as one wrong step, reward 0 at its last token (``rollout``).

Departures and choices. The std is the sample std (Bessel), as TRL and verl compute it; ``eps`` is
1e-6 (verl). Losses are aggregated over tokens, each token weighted alike across the batch (PPO's
aggregation here, verl's ``token-mean``, DAPO's), not the paper's mean over each sample's tokens then
over samples, which weighs a token of a short sample more. ``epochs`` passes over each iteration's
rollouts (default 2, as PPO here, so the two differ in their advantages only; DeepSeekMath takes one
update per exploration stage). ``step_reward`` = ``delta`` works as in PPO. PRIME-style implicit
process rewards are not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from prmkit.rl import rollout
from prmkit.rl.loop import RolloutConfig, masked_mean, ppo_policy_loss, train_loop
from prmkit.types import Problem


@dataclass(frozen=True)
class GRPOConfig(RolloutConfig):
    """``RolloutConfig``'s fields (``kl_coef`` the beta of the k3 KL loss term; ``samples_per_problem`` G,
    the group size) and GRPO's own."""

    problems_per_iteration: int = 16
    samples_per_problem: int = 4
    eps: float = 1e-6  # added to the group std
    epochs: int = 2
    dynamic_sampling: bool = False  # DAPO: only groups whose rewards differ go into the batch
    max_draws: int = 4  # dynamic sampling: rounds of problems_per_iteration problems an iteration may draw

    def __post_init__(self):
        self.check("grpo")
        if self.samples_per_problem < 2:
            raise ValueError("grpo.samples_per_problem: a group needs at least 2 samples")
        if self.eps <= 0 or self.epochs < 1:
            raise ValueError("grpo: eps must be > 0, epochs >= 1")
        if self.max_draws < 1:
            raise ValueError(f"grpo.max_draws must be >= 1, got {self.max_draws}")


def group_rewards(scores: list[list[float]], process: bool) -> torch.Tensor:
    """The rewards a group's advantages normalise: every step score (process), or each sample's sum."""
    if process:
        return torch.tensor([s for row in scores for s in row], dtype=torch.float64)
    return torch.tensor([sum(row) for row in scores], dtype=torch.float64)


def has_signal(scores: list[list[float]], process: bool) -> bool:
    """Whether a group's rewards differ, so its advantages are not all 0 (DAPO's dynamic sampling keeps
    only such groups).

    >>> has_signal([[1.0], [1.0]], process=False), has_signal([[0.5, 0.5], [1.0]], process=False)
    (False, False)
    >>> has_signal([[0.5, 0.5], [1.0]], process=True)
    True
    """
    return _differ(group_rewards(scores, process))


def _differ(rewards: torch.Tensor) -> bool:
    return bool(rewards.max() != rewards.min())  # exactly equal, not rounding noise / eps


def group_advantages(
    positions: list[list[int]],
    scores: list[list[float]],
    mask: torch.Tensor,
    group_size: int,
    process: bool,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, float]:
    """Token advantages (B, T) for rollouts in consecutive groups of ``group_size``, and the fraction
    of groups whose rewards are all equal (their advantages are 0). ``positions``/``scores`` are
    ``rollout.score_rollouts``'s: the response token of each reward and its value.

    Outcome (one reward per sample): the sample's normalised reward on every response token.
    Process: every step reward normalised over the group's steps, summed over the steps ending at or
    after the token.

    >>> mask = torch.ones(2, 3)
    >>> a, zero = group_advantages([[2], [2]], [[1.0], [0.0]], mask, 2, process=False, eps=0.0)
    >>> [[round(x, 4) for x in row] for row in a.tolist()], zero  # std of (1, 0) is 0.7071
    ([[0.7071, 0.7071, 0.7071], [-0.7071, -0.7071, -0.7071]], 0.0)
    >>> a, _ = group_advantages([[0, 2], [2]], [[1.0, 0.0], [0.5]], mask, 2, process=True, eps=0.0)
    >>> a.tolist()  # steps (1, 0, 0.5): mean 0.5, std 0.5 -> (1, -1, 0), summed from each token on
    [[0.0, -1.0, -1.0], [0.0, 0.0, 0.0]]
    """
    B, T = mask.shape
    if B % group_size:
        raise ValueError(f"grpo: {B} rollouts are not groups of {group_size}")
    adv = torch.zeros(B, T)
    zero = 0
    for g in range(0, B, group_size):
        rows = range(g, g + group_size)
        rewards = group_rewards(scores[g : g + group_size], process)
        if not _differ(rewards):  # no signal: the advantages stay exactly 0
            zero += 1
            continue
        norm = ((rewards - rewards.mean()) / (rewards.std() + eps)).tolist()
        k = 0
        for i in rows:
            if process:
                per_token = torch.zeros(T, dtype=torch.float64)
                for pos in positions[i]:
                    per_token[pos] += norm[k]
                    k += 1
                adv[i] = (
                    per_token.flip(0).cumsum(0).flip(0).float()
                )  # sum over the steps ending at t or later
            else:
                adv[i] = norm[k]
                k += 1
    return adv.to(mask.device) * mask, zero / (B // group_size)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) from samples of pi: ``r - log r - 1``, r = pi_ref / pi.

    >>> kl_k3(torch.tensor([0.0, math.log(0.5)]), torch.tensor([0.0, 0.0])).tolist()  # r = 1, 2
    [0.0, 0.3068528175354004]
    """
    d = (ref_logp - logp).clamp(-20, 20)  # exp would overflow on a token the policy all but ruled out
    return torch.exp(d) - d - 1


def train_grpo(
    cfg: GRPOConfig,
    policy_dir: str | Path,
    problems: list[Problem],
    out_dir: str | Path,
    eval_problems: list[Problem] | None = None,
    progress: bool = True,
) -> Path:
    """GRPO from the policy in ``policy_dir`` on ``problems``; the trained policy lands in ``out_dir``.

    As ``train_ppo``: ``out_dir`` is an ordinary model directory with ``metrics.jsonl`` and
    ``prmkit_rl.json``; a finished ``out_dir`` is returned as is; a killed run resumes.
    """

    def setup(policy):
        return {}, [{"params": policy.parameters(), "lr": cfg.lr}]

    def optimise(policy, ref, opt, sched, batch, positions, scores, it):
        return _optimise(cfg, policy, ref, opt, sched, batch, positions, scores, it)

    process = cfg.reward == "process"
    keep = (lambda scores: has_signal(scores, process)) if cfg.dynamic_sampling else None
    return train_loop(
        "grpo", cfg, policy_dir, problems, out_dir, setup, optimise, cfg.epochs, eval_problems, progress,
        keep=keep, max_draws=cfg.max_draws,
    )  # fmt: skip


def _optimise(cfg: GRPOConfig, policy, ref, opt, sched, batch, positions, scores, it: int) -> dict:
    """Group advantages and ``epochs`` of minibatch updates on one iteration's rollouts."""
    mb = cfg.minibatch_size
    mask, chosen = batch["mask"], batch["chosen"]
    with torch.no_grad():
        logprobs = rollout.response_logprobs
        old_logp = rollout.chunked(lambda c: logprobs(policy, c, cfg.temperature)[0], batch, mb)  # (B, T)
        ref_logp = rollout.chunked(lambda c: logprobs(ref, c, cfg.temperature)[0], batch, mb)  # (B, T)
        adv, zero_groups = group_advantages(
            positions, scores, mask, cfg.samples_per_problem, cfg.reward == "process", cfg.eps
        )
    fixed = dict(old_logp=old_logp, ref_logp=ref_logp, adv=adv)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)  # minibatch order, same on resume
    n_mb = math.ceil(len(mask) / mb)
    per_mb_chosen = float(chosen.sum()) / n_mb
    stats = []
    for _ in range(cfg.epochs):
        for rows in rollout.length_groups(batch, mb, gen):
            sub = rollout.select_rows({**batch, **fixed}, rows)
            logp, ent = rollout.response_logprobs(policy, sub, cfg.temperature, entropy=True)
            pg_loss, clip_frac = ppo_policy_loss(
                logp, sub["old_logp"], sub["adv"], sub["chosen"], cfg.clip, per_mb_chosen
            )
            kl_loss = masked_mean(kl_k3(logp, sub["ref_logp"]), sub["chosen"], per_mb_chosen)
            opt.zero_grad(set_to_none=True)
            (pg_loss + cfg.kl_coef * kl_loss).backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            ent = masked_mean(ent, sub["chosen"])
            stats.append(torch.stack([pg_loss, kl_loss, clip_frac, ent]).detach())
    names = ("policy_loss", "kl_loss", "clip_frac", "entropy")
    out = dict(zip(names, torch.stack(stats).mean(0).tolist(), strict=True))
    kl_seq = ((old_logp - ref_logp) * chosen).sum(1)  # (B,) per-rollout KL estimate, as PPO logs it
    out.update(
        reward_score=float(torch.tensor([sum(s) for s in scores]).mean()),
        reward_kl=float(-cfg.kl_coef * kl_seq.mean()),
        kl=float(kl_seq.mean()),
        adv_abs=float(masked_mean(adv.abs(), chosen)),
        zero_adv_groups=zero_groups,
    )
    if not all(math.isfinite(v) for v in out.values()):
        raise FloatingPointError(f"grpo: non-finite training statistics at iteration {it + 1}: {out}")
    return out
