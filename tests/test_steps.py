import pytest

from prmkit.steps import join_steps, split_steps


def test_gsm8k_lines():
    text = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n  \nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18\n"
    assert split_steps(text, "gsm8k") == [
        "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.",
        "She makes 9 * 2 = $<<9*2=18>>18.",
        "#### 18",
    ]


def test_math_paragraphs():
    text = "We have $x=2$.\nHence $y=3$.\n\n  \nSo the answer is $\\boxed{5}$."
    assert split_steps(text, "math") == ["We have $x=2$.\nHence $y=3$.", "So the answer is $\\boxed{5}$."]


def test_custom_separator_roundtrip():
    steps = ["a = 1", "b = 2", "c = 3"]
    text = join_steps(steps, "sep: ки\\n")
    assert text == "a = 1 ки\nb = 2 ки\nc = 3"
    assert split_steps(text, "sep: ки\\n") == steps


def test_unknown_kind_lists_valid():
    with pytest.raises(ValueError, match="gsm8k, math"):
        split_steps("x", "latex")
