import multiprocessing
import threading
import time
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prmkit.grading import KINDS, extract_answer, grade_answer, last_boxed, normalize_number

# ------------------------------------------------------------------------------------------ gsm8k numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,000.00", "1000"),
        ("$18", "18"),
        ("-3.50", "-3.5"),
        ("3/4", "0.75"),
        ("6/8", "0.75"),
        ("1/3", "1/3"),
        ("-2/6", "-1/3"),
        (".5", "0.5"),
        ("18 dollars", "18"),
        ("5 cm", "5"),
        ("20%", "20"),
        ("18.", "18"),
        ("18.0", "18"),
        ("$1,234,567", "1234567"),
        ("**42**", "42"),
        (r"\$5.25", "5.25"),
        (r"\frac{3}{4}", "0.75"),
        (r"1{,}000", "1000"),
        ("\u22127", "-7"),
        ("12 km/h", "12"),
        ("18 \\text{ dollars}", "18"),
    ],
)
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "x = 5", "3 and 4", "1/0", "5 - 3", "1,2"])
def test_normalize_number_rejects_non_numbers(text):
    assert normalize_number(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "####": the last such line wins, whatever comes after it
        ("3 + 4 = <<3+4=7>>7\n#### 7", "7"),
        ("#### 5\nwait, recount\n#### 6\nthe end is 99", "6"),
        ("#### 1,080", "1080"),
        ("#### $18.00.", "18"),
        ("#### -3", "-3"),
        # boxed, then "the answer is", then "A:", then the last number
        ("so she pays $\\boxed{18}$ in 3 weeks", "18"),
        ("\\boxed{-$15}", "-15"),
        ("5 + 3 = 8. The answer is 8 apples. Then 2 more.", "8"),
        ("The answer is: $1,234.", "1234"),
        ("the Answer is 3/4 of the cake", "0.75"),
        ("Q: How many? A: 12", "12"),
        ("Q: How many? A: She buys 3 then 4 more, 7", "7"),
        ("She has 16 - 3 - 4 = 9 eggs, sold at $2 each: 9 * 2 = 18", "18"),
        ("it costs 0.5 x 4 = 2.", "2"),
        ("the temperature fell to -5", "-5"),
        ("16-3", "3"),
    ],
)
def test_extract_gsm8k(text, expected):
    assert extract_answer(text, "gsm8k") == expected


@pytest.mark.parametrize("text", ["", "no numbers here", "#### none"])
def test_extract_gsm8k_none(text):
    assert extract_answer(text, "gsm8k") is None


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("18", "18", True),
        ("18.0", "18", True),
        ("$18", "18", True),
        ("18 dollars", "18", True),
        ("1,234", "1234", True),
        ("1234", "1,234", True),
        ("0.75", "3/4", True),
        ("-3.50", "-3.5", True),
        ("20%", "20", True),
        ("17", "18", False),
        ("-18", "18", False),
        ("0.33", "1/3", False),  # exact comparison: no float tolerance
        ("0.3333333333333333", "1/3", False),
        ("abc", "18", False),
        (None, "18", False),
        ("", "18", False),
    ],
)
def test_grade_gsm8k(pred, gold, expected):
    assert grade_answer(pred, gold, "gsm8k") is expected


def test_gsm8k_exact_beyond_float_precision():
    assert grade_answer("10000000000000001", "10000000000000000", "gsm8k") is False


# ------------------------------------------------------------------------------------------- math: extract


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{5}$.", "5"),
        (r"$\boxed{\frac{\sqrt{3}}{2}}$", r"\frac{\sqrt{3}}{2}"),
        (r"$\boxed{1}$ first, then finally $\boxed{2}$", "2"),
        (r"\fbox{x+1}", "x+1"),
        (r"so \boxed 7.", "7"),
        (r"$\boxed{\{1,2\}}$", r"\{1,2\}"),
        (r"$\boxed{\left\{ x \right.}$", r"\left\{ x \right."),  # escaped braces do not count
        (r"\boxed{\text{(C)}}", r"\text{(C)}"),
        (r"\boxed{ 3 }", "3"),
        ("Step 1.\n\n# Answer\n\n42", "42"),
        ("The final answer is $x^2+1$. I hope it is correct.", "x^2+1"),
        (r"the answer is \(\frac{1}{2}\)", r"\frac{1}{2}"),
        ("The answer is 12.", "12"),
    ],
)
def test_extract_math(text, expected):
    assert extract_answer(text, "math") == expected


@pytest.mark.parametrize("text", ["", "no answer at all", r"\boxed{1 + {2", r"$\boxed{}$"])
def test_extract_math_none(text):
    assert extract_answer(text, "math") is None


def test_last_boxed_unbalanced_last_box_falls_back_to_previous():
    assert last_boxed(r"\boxed{1} and \boxed{2") == "1"


# ------------------------------------------------------------------------------------------- math: grade


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("5", "5"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\frac12", r"\frac{1}{2}"),
        ("0.5", r"\frac{1}{2}"),
        ("1/2", r"\frac{1}{2}"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
        (r"30^\circ", "30"),
        (r"30^{\circ}", "30"),
        (r"10\%", "10"),
        (r"5\text{ cm}", "5"),
        (r"\text{Devon}", "Devon"),
        ("x = 5", "5"),
        (r"10,\!000", "10000"),
        ("5.", "5"),
        (r"$\sqrt{18}$", r"3\sqrt{2}"),
        (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"),
        ("x^2+2x+1", "(x+1)^2"),
        (r"\{2,1\}", r"\{1,2\}"),
        ("3, -2", "-2, 3"),
    ],
)
def test_grade_math_equal(pred, gold):
    assert grade_answer(pred, gold, "math") is True


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("3", "4"),
        ("-5", "5"),
        ("(2,1)", "(1,2)"),  # tuples are ordered
        ("[1,2)", "[1,2]"),
        ("0.333", r"\frac{1}{3}"),
        (r"\pi", "3.14"),
        ("x+1", "x+2"),
        ("", "5"),
        (None, "5"),
    ],
)
def test_grade_math_not_equal(pred, gold):
    assert grade_answer(pred, gold, "math") is False


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call", [lambda: extract_answer("1", "aime"), lambda: grade_answer("1", "1", "aime")]
)
def test_unknown_kind_lists_valid_kinds(call):
    with pytest.raises(ValueError, match="aime") as info:
        call()
    assert all(kind in str(info.value) for kind in KINDS)


def test_unknown_kind_raises_even_for_none_pred():
    with pytest.raises(ValueError, match="gsm8k"):
        grade_answer(None, "1", "GSM8K")


# --------------------------------------------------------------------------------------------- timeouts

PATHOLOGICAL = r"9^{9^{9}}"  # sympy grinds on it for minutes without a timeout


def test_pathological_comparison_times_out_as_false():
    assert grade_answer("x+1", "1+x", "math")  # the worker is up: the bound below is the timeout's own
    start = time.monotonic()
    assert grade_answer("1", PATHOLOGICAL, "math", timeout_s=0.5) is False
    assert time.monotonic() - start < 1.5
    start = time.monotonic()
    assert grade_answer("1", PATHOLOGICAL, "math", timeout_s=0.5) is False  # cached
    assert time.monotonic() - start < 0.1
    assert grade_answer("2x+2", "2(x+1)", "math") is True  # a fresh worker took over


def test_grading_works_off_the_main_thread():
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(grade_answer("(x+1)^2", "x^2+2x+1", "math"))),
        threading.Thread(
            target=lambda: results.append(grade_answer("2", PATHOLOGICAL, "math", timeout_s=0.3))
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, True]


def _grade_in_child() -> bool:
    return grade_answer("y^2-1", "(y-1)(y+1)", "math")


def test_forked_child_starts_its_own_worker():
    assert grade_answer("a+b", "b+a", "math")
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_grade_in_child) is True
    assert grade_answer("2a", "a+a", "math") is True  # the parent's worker is untouched


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout_s"):
        grade_answer("1", "1", "math", timeout_s=0)


# ------------------------------------------------------------------------------------------- properties


def _decorate(n: int, style: int) -> str:
    sign = "-" if n < 0 else ""
    return [
        f"{n:,}",
        f"{sign}${abs(n):,}",
        f"{n} dollars",
        f"{n:,} cm",
        f"{n}.",
        f"{n}.00",
        f"{n}%",
        f"**{n}**",
    ][style]


@given(st.integers(-(10**12), 10**12), st.integers(0, 7))
def test_formatted_integer_grades_equal_to_itself(n, style):
    text = _decorate(n, style)
    assert normalize_number(text) == str(n)
    assert grade_answer(text, str(n), "gsm8k")
    assert extract_answer(f"Some work: 2 + 2 = 4.\n#### {text}", "gsm8k") == str(n)
    assert extract_answer(f"So the answer is {text}", "gsm8k") == str(n)


@given(st.integers(-(10**9), 10**9), st.integers(-(10**9), 10**9))
def test_distinct_integers_grade_unequal(a, b):
    assert grade_answer(f"{a:,}", str(b), "gsm8k") is (a == b)


@given(st.integers(-(10**9), 10**9), st.integers(0, 12), st.integers(0, 12))
def test_decimal_of_a_fraction_grades_equal_to_the_fraction(p, twos, fives):
    value = Fraction(p, 2**twos * 5**fives)  # a terminating decimal
    with localcontext(prec=60):
        decimal = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    fraction = f"{value.numerator}/{value.denominator}"
    padded = decimal + ("000" if "." in decimal else ".000")
    assert normalize_number(decimal) == normalize_number(fraction) == normalize_number(padded)
    assert grade_answer(decimal, fraction, "gsm8k")
    assert grade_answer(fraction, decimal, "gsm8k")


@given(st.fractions(max_denominator=10**6))
def test_normalize_number_round_trips(value):
    canonical = normalize_number(str(value))
    assert canonical is not None
    assert Fraction(canonical) == value
    assert normalize_number(canonical) == canonical


_BRACED = st.recursive(
    st.text(alphabet="abx12+-^ ", max_size=5),
    lambda inner: st.tuples(inner, inner).map(lambda pair: pair[0] + "{" + pair[1] + "}"),
    max_leaves=8,
)


@given(_BRACED, _BRACED)
def test_last_boxed_matches_nested_braces(first, last):
    text = rf"so $\boxed{{{first}}}$ and then $\boxed{{{last}}}$."
    assert last_boxed(text) == last.strip()
