from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmkit.calculator import MAX_EXPR_CHARS, calculate, evaluate, format_number


@pytest.mark.parametrize(
    "expr,expected",
    [
        ("48/2", "24"),
        ("16-3-4", "9"),
        ("2+3*4", "14"),
        ("(2+3)*4", "20"),
        ("10/4", "2.5"),
        ("1/3", "1/3"),
        ("-3*-2", "6"),
        ("1,000+5", "1005"),
        ("$5*2", "10"),
        ("0.1+0.2", "0.3"),
        ("3 x 4", "12"),
        (" 7 ", "7"),
    ],
)
def test_calculate(expr, expected):
    assert calculate(expr) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "2**10",
        "import os",
        "__import__('os')",
        "1/0",
        "(((((((((1)))))))))",
        "1e9",
        "9" * 13,
        "2+",
        "(1+2",
    ],
)
def test_rejects_non_arithmetic_and_oversized(expr):
    assert calculate(expr) is None


def test_rejects_long_and_huge():
    assert calculate("1+" * MAX_EXPR_CHARS + "1") is None
    assert calculate("999999*999999*999999") is None  # beyond the magnitude limit


def test_format_number():
    assert format_number(Fraction(-5, 4)) == "-1.25"
    assert format_number(Fraction(1, 20)) == "0.05"


@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6))
def test_matches_exact_arithmetic(a, b):
    assert evaluate(f"{a}+{b}") == a + b
    assert evaluate(f"{a}*{b}") == a * b
    if b:
        assert evaluate(f"{a}/{b}") == Fraction(a, b)
