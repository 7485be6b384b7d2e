"""Reinforcement learning on a generator: step-by-step PPO with process rewards, outcome PPO,
rejection-sampling fine-tuning (Math-Shepherd's comparison), and GRPO with outcome or process rewards
(DeepSeekMath).

``train_ppo(PPOConfig(...), policy_dir, problems, out_dir)``, ``train_grpo(GRPOConfig(...), ...)`` and
``train_rft(RFTConfig(...), generator_dir, problems, out_dir)`` each write an ordinary model directory
that the sampling stage loads like any generator.
"""

from prmkit.rl.grpo import GRPOConfig, train_grpo
from prmkit.rl.ppo import PPOConfig, train_ppo
from prmkit.rl.rft import RFTConfig, train_rft

__all__ = ["GRPOConfig", "PPOConfig", "RFTConfig", "train_grpo", "train_ppo", "train_rft"]
