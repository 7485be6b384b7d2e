"""The synthetic GSM world: generated word problems with a computation graph, an oracle that labels
every step of a solution, and oracle-written step critiques. See ``generator`` for the world,
``oracle`` for the labelling rules and ``critique`` for the critiques.

    >>> from prmkit.world import WorldConfig, generate_split, judge
    >>> p = generate_split(WorldConfig(n_train=2), "train")[1]
    >>> judge(p, p.solution.split("\\n")).final_correct
    True
"""

from prmkit.world.critique import critique_steps, critique_text
from prmkit.world.generator import SPLITS, WorldConfig, generate_split, make_world
from prmkit.world.oracle import analyze, corrupt, judge

__all__ = [
    "SPLITS",
    "WorldConfig",
    "analyze",
    "corrupt",
    "critique_steps",
    "critique_text",
    "generate_split",
    "judge",
    "make_world",
]
