"""Reinforcement learning on a generator: step-by-step PPO with process rewards, outcome PPO, and
rejection-sampling fine-tuning (Math-Shepherd's comparison).

``train_ppo(PPOConfig(...), policy_dir, problems, out_dir)`` and ``train_rft(RFTConfig(...),
generator_dir, problems, out_dir)`` each write an ordinary model directory that the sampling stage
loads like any generator.
"""

from prmkit.rl.ppo import PPOConfig, train_ppo
from prmkit.rl.rft import RFTConfig, train_rft

__all__ = ["PPOConfig", "RFTConfig", "train_ppo", "train_rft"]
