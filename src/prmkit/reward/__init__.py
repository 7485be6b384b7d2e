"""Reward models: Math-Shepherd-style step reward models (PRM and ORM, and released PRM formats),
token-level value verifiers (Cobbe et al.), Math-Minos critique pre-training, and their training.

``load_reward_model(path)`` gives whichever scorer a directory holds (its ``prmkit_reward.json`` says
which); every one has ``score(questions, steps) -> list[list[float]]``.
"""

import json
from pathlib import Path

from prmkit.reward.model import META_FILE, StepRewardModel, format_for_scoring
from prmkit.reward.value import ValueModel


def load_reward_model(path_or_id: str, **kwargs):
    """A ``ValueModel`` for a value verifier's directory, else a ``StepRewardModel`` (PRM, ORM, released)."""
    meta = Path(path_or_id) / META_FILE
    if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("kind") == "value":
        return ValueModel.from_pretrained(path_or_id)
    return StepRewardModel.from_pretrained(path_or_id, **kwargs)


__all__ = ["StepRewardModel", "ValueModel", "format_for_scoring", "load_reward_model"]
