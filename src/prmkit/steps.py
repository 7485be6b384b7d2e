"""Split a solution into reasoning steps and join steps back, one splitter for every stage.

GSM8K solutions (and the synthetic world's) are one step per line; MATH solutions one step per
blank-line-separated paragraph (PRM800K and ProcessBench convention); users may give any separator.

    >>> split_steps("She buys 3*4 = <<3*4=12>>12 pens.\\n\\n#### 12", "gsm8k")
    ['She buys 3*4 = <<3*4=12>>12 pens.', '#### 12']
    >>> split_steps("First, $x=2$.\\nSo $y=3$.\\n\\nThus $\\\\boxed{5}$.", "math")
    ['First, $x=2$.\\nSo $y=3$.', 'Thus $\\\\boxed{5}$.']
    >>> join_steps(["a", "b"], "gsm8k")
    'a\\nb'

The step tag (a special token a reward model reads its score at) is added by the reward models'
tokenisation, not here: steps are plain text everywhere else.
"""

from __future__ import annotations

import re

SEPARATORS = {"gsm8k": "\n", "math": "\n\n"}


def separator(kind: str) -> str:
    """The text between two steps of a solution of ``kind``: a line for gsm8k, a blank line for math,
    the given text for ``sep:TEXT``."""
    if kind in SEPARATORS:
        return SEPARATORS[kind]
    if kind.startswith("sep:"):
        sep = kind[4:].replace("\\n", "\n").replace("\\t", "\t")  # "\\n" typed on a command line
        if not sep:
            raise ValueError("empty custom separator in 'sep:'")
        return sep
    raise ValueError(f"unknown step format {kind!r}; valid: {', '.join(SEPARATORS)}, or 'sep:<separator>'")


def split_steps(text: str, kind: str = "gsm8k") -> list[str]:
    """Non-empty, stripped steps of ``text``; ``kind`` is "gsm8k", "math" or "sep:<separator>"."""
    sep = separator(kind)
    parts = re.split(r"\n\s*\n", text) if kind == "math" else text.split(sep)
    return [p.strip() for p in parts if p.strip()]


def join_steps(steps: list[str], kind: str = "gsm8k") -> str:
    """Inverse of ``split_steps``: ``split_steps(join_steps(s, kind), kind) == s`` for steps it gave.

    That holds for "gsm8k", "math" and any custom separator that is whitespace or does not overlap
    itself (no proper prefix is also a suffix, as " ки\\n" or "<step>"). With one that does, the text is
    ambiguous: ``join_steps(["a", "a"], "sep:aa")`` is "aaaa", which splits into no steps.
    """
    return separator(kind).join(steps)
