"""What the sampling benchmarks share (not a benchmark itself): the world's test prompts and a generator.

``python benchmarks/<name>.py`` puts this folder on ``sys.path``, so they import it as ``_world``.
"""

from __future__ import annotations

from pathlib import Path

from prmkit.models import format_prompt
from prmkit.policy.sft import SFTConfig, train_sft
from prmkit.types import Problem
from prmkit.world import WorldConfig, make_world

GENERATOR = Path("runs/bench-sample/generator")  # trained once, reused by every sampling benchmark


def world_prompts(n_prompts: int, model: str | None = None) -> tuple[list[Problem], list[str], Path]:
    """The first ``n_prompts`` world test problems, their prompts (``models.format_prompt``, as every
    stage builds them) and the generator: ``model``, or a small one trained on the world for 300 steps
    (cached in ``GENERATOR``)."""
    world = make_world(WorldConfig(n_train=4000, n_test=n_prompts, n_ood=1))
    model_dir = Path(model) if model else GENERATOR
    if not model:
        train_sft(SFTConfig(model="scratch:small", max_steps=300, save_steps=1000), world["train"], model_dir)
    problems = world["test"][:n_prompts]
    return problems, [format_prompt(p.question) for p in problems], model_dir
