"""Reward models: Math-Shepherd-style step reward models (PRM and ORM) and their training."""

from prmkit.reward.model import StepRewardModel, format_for_scoring

__all__ = ["StepRewardModel", "format_for_scoring"]
