"""PPO for a causal-LM policy with per-step (process) or outcome rewards: Math-Shepherd's step-by-step PPO.

Each iteration samples ``samples_per_problem`` solutions for ``problems_per_iteration`` training
problems through the policy backend (``HFPolicy`` on the live model, calculator on), scores them
(``rollout.score_rollouts``) and takes ``ppo_epochs`` passes of minibatch updates:

    r_t   = -kl_coef * (log pi(a_t|s_t) - log pi_ref(a_t|s_t))  +  score placed at t      (per token)
    A_t   = sum_l (gamma * lam)^l * delta_{t+l},   delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)    (GAE)
    L_pi  = mean_t max(-A_t * rho_t, -A_t * clip(rho_t, 1 - clip, 1 + clip)),  rho_t = pi / pi_old
    L_V   = 0.5 * mean_t max((V - R)^2, (V_old + clip(V - V_old, +-value_clip) - R)^2)

with advantages whitened over the batch. ``process`` places a reward at every step's last token,
``outcome`` the reward model's final score (or, ``answer``, the graded final answer) at the last
token; the KL term uses the frozen initial policy as reference (paper: 0.04).

The loop is written here in torch rather than taken from TRL: TRL's PPOTrainer takes one scalar
reward per sequence, and per-step rewards are the point. The critic is a separate copy of the
policy's backbone with a zero-initialised ``Linear(hidden, 1)`` head: a value head on the policy
itself would need a loss weight and lets value-regression gradients move the policy, and the
reward model cannot be the critic's start since its tokenizer may differ from the policy's.

Departures. ``step_reward="score"`` is the paper's process reward, P(good) of every step; its sum
grows with the number of steps, and on the world a policy learns to write more of them (see
docs/benchmarks.md). ``"delta"`` rewards each step with the change in P(good) instead
(potential-based shaping), whose sum is the last step's score. Log-probabilities are taken at the
sampling temperature (as TRL does), so the ratio and the KL compare the distributions sampled from;
the policy runs in eval mode (no dropout) so that rho = 1 on the first minibatch; calculator-forced
tokens are outside the policy loss and the KL (``rollout``). Minibatches group rollouts of similar
length (less padding), so a minibatch's loss is its token sum over the batch's mean tokens per
minibatch, which weighs every token alike as the batch mean would. The iteration loop is
``loop.train_loop``, shared with GRPO: runs resume from ``OUT.checkpoints/state.pt`` (policy, critic,
optimiser, schedule, RNG, iteration); the output directory appears whole when training finishes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from prmkit.rl import rollout
from prmkit.rl.loop import RolloutConfig, masked_mean, ppo_policy_loss, train_loop
from prmkit.types import Problem

__all__ = [
    "Critic",
    "PPOConfig",
    "gae",
    "masked_mean",
    "ppo_policy_loss",
    "train_ppo",
    "value_loss",
    "whiten",
]


@dataclass(frozen=True)
class PPOConfig(RolloutConfig):
    """``RolloutConfig``'s fields (the KL a per-token penalty in the reward) and PPO's own."""

    gamma: float = 1.0
    lam: float = 0.95
    value_clip: float = 0.2
    critic_lr: float = 2e-4
    ppo_epochs: int = 2

    def __post_init__(self):
        self.check("ppo")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError("ppo: gamma and lam must be in [0, 1]")
        if self.value_clip <= 0 or self.critic_lr <= 0 or self.ppo_epochs < 1:
            raise ValueError("ppo: value_clip and critic_lr must be > 0, ppo_epochs >= 1")


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over the masked entries; zero elsewhere."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded (B, T) tensors: (advantages, returns).

    >>> rewards, values = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.5, 0.5]])
    >>> a, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    >>> a.tolist(), ret.tolist()
    ([[0.125, 0.25, 0.5]], [[0.625, 0.75, 1.0]])
    """
    rewards, values = rewards * mask, values * mask  # padding: no reward, no value after the end
    adv = torch.zeros_like(rewards)  # (B, T)
    last = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(rewards.shape[1])):
        next_v = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]  # (B,)
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv * mask, (adv + values) * mask


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    n_tokens: float | None = None,
) -> torch.Tensor:
    """Clipped value loss: 0.5 * max of the squared errors of V and of V_old moved at most ``clip``.

    >>> v, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    >>> value_loss(v, old, ret, torch.ones(1, 2), 0.5).item()  # (max(0, 0.25) + max(1, 1)) / 2 / 2
    0.3125
    """
    clipped = old_values + (values - old_values).clamp(-clip, clip)  # (B, T)
    err = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(err, mask, n_tokens)


class Critic(torch.nn.Module):
    """V(s_t) for every position: a copy of the policy's backbone and a zero-initialised linear head."""

    def __init__(self, policy):
        super().__init__()
        self.backbone = copy.deepcopy(policy.base_model)
        self.head = torch.nn.Linear(policy.get_input_embeddings().embedding_dim, 1)
        torch.nn.init.zeros_(self.head.weight)  # V = 0 at the start: no made-up baseline
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """V(s_t) (B, T) for the state before each response token (the position that predicts it)."""
        T = batch["mask"].shape[1]
        hidden = self.backbone(**{k: batch[k] for k in rollout.MODEL_INPUTS}).last_hidden_state  # (B, L, H)
        return self.head(hidden[:, -T - 1 : -1].float()).squeeze(-1)  # (B, T)


def train_ppo(
    cfg: PPOConfig,
    policy_dir: str | Path,
    problems: list[Problem],
    out_dir: str | Path,
    eval_problems: list[Problem] | None = None,
    progress: bool = True,
) -> Path:
    """PPO from the policy in ``policy_dir`` on ``problems``; the trained policy lands in ``out_dir``.

    ``out_dir`` is an ordinary model directory (loadable by ``HFPolicy`` / ``build_policy``) with
    ``metrics.jsonl`` (one line per iteration; line 0 holds the starting greedy accuracy) and
    ``prmkit_rl.json``. A finished ``out_dir`` is returned as is; a killed run resumes.
    """
    critic: list[Critic] = []  # built by setup, once the policy is loaded

    def setup(policy):
        critic.append(Critic(policy))
        groups = [
            {"params": policy.parameters(), "lr": cfg.lr},
            {"params": critic[0].parameters(), "lr": cfg.critic_lr},
        ]
        return {"critic": critic[0]}, groups

    def optimise(policy, ref, opt, sched, batch, positions, scores, it):
        return _optimise(cfg, policy, ref, critic[0], opt, sched, batch, positions, scores, it)

    return train_loop(
        "ppo", cfg, policy_dir, problems, out_dir, setup, optimise, cfg.ppo_epochs, eval_problems, progress
    )


def _optimise(cfg: PPOConfig, policy, ref, critic, opt, sched, batch, positions, scores, it: int) -> dict:
    """Rewards, advantages and ``ppo_epochs`` of minibatch updates on one iteration's rollouts."""
    mb = cfg.minibatch_size
    mask, chosen = batch["mask"], batch["chosen"]
    with torch.no_grad():
        logprobs = rollout.response_logprobs
        old_logp = rollout.chunked(lambda c: logprobs(policy, c, cfg.temperature)[0], batch, mb)  # (B, T)
        ref_logp = rollout.chunked(lambda c: logprobs(ref, c, cfg.temperature)[0], batch, mb)  # (B, T)
        old_values = rollout.chunked(critic, batch, mb)  # (B, T)
        rewards, kl = rollout.token_rewards(old_logp, ref_logp, chosen, positions, scores, cfg.kl_coef)
        adv, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        adv = whiten(adv, chosen)
    fixed = dict(old_logp=old_logp, old_values=old_values, adv=adv, returns=returns)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)  # minibatch order, same on resume
    n_mb = math.ceil(len(mask) / mb)
    per_mb_chosen, per_mb_tokens = float(chosen.sum()) / n_mb, float(mask.sum()) / n_mb
    stats = []
    for _ in range(cfg.ppo_epochs):
        for rows in rollout.length_groups(batch, mb, gen):
            sub = rollout.select_rows({**batch, **fixed}, rows)
            logp, ent = rollout.response_logprobs(policy, sub, cfg.temperature, entropy=True)
            pg_loss, clip_frac = ppo_policy_loss(
                logp, sub["old_logp"], sub["adv"], sub["chosen"], cfg.clip, per_mb_chosen
            )
            v_loss = value_loss(
                critic(sub), sub["old_values"], sub["returns"], sub["mask"], cfg.value_clip, per_mb_tokens
            )
            opt.zero_grad(set_to_none=True)
            (pg_loss + v_loss).backward()  # separate parameters: each loss moves only its own model
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            ent = masked_mean(ent, sub["chosen"])
            stats.append(torch.stack([pg_loss, v_loss, clip_frac, ent]).detach())
    names = ("policy_loss", "value_loss", "clip_frac", "entropy")
    out = dict(zip(names, torch.stack(stats).mean(0).tolist(), strict=True))
    n_score = torch.tensor([sum(s) for s in scores])
    kl_seq = kl.sum(1)  # (B,) per-rollout KL estimate
    out.update(
        reward_score=float(n_score.mean()),
        reward_kl=float(-cfg.kl_coef * kl_seq.mean()),
        kl=float(kl_seq.mean()),
        value_mean=float(masked_mean(old_values, mask)),
    )
    if not all(math.isfinite(v) for v in out.values()):
        raise FloatingPointError(f"ppo: non-finite training statistics at iteration {it + 1}: {out}")
    return out
