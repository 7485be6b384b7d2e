r"""Answer extraction and grading: the one grader behind rollout labels, ORM labels, best-of-N and RL rewards.

Two kinds of answer (``KINDS``):

- ``"gsm8k"``: a number. Extraction reads the last ``#### N`` line (GSM8K's format), else the last
  ``\boxed{N}``, else "the answer is N", else "A: N", else the last number in the text. Numbers compare
  exactly as ``fractions.Fraction``: "1,000.00", "$1000" and "1000 dollars" are equal, "3/4" equals "0.75".
  A numeral of more than 100 digits is not read as a number (Python's ``int`` refuses 4300).
- ``"math"``: a LaTeX expression (MATH, PRM800K, ProcessBench). Extraction reads the content of the last
  ``\boxed{...}`` or ``\fbox{...}`` (nested braces matched), else PRM800K's ``# Answer`` line, else "the
  answer is ...". Grading tries cheap string normalisation first (Hendrycks et al.'s ``strip_string``
  family of rules), then exact rationals, then math-verify's symbolic comparison.

    >>> extract_answer("He pays 3 * 6 = <<3*6=18>>18 dollars.\n#### 18", "gsm8k")
    '18'
    >>> grade_answer("$1,000.00", "1000", "gsm8k")
    True
    >>> extract_answer(r"so $x = \boxed{\frac{1}{2}}$.", "math")
    '\\frac{1}{2}'
    >>> grade_answer(r"\dfrac{1}{2}", "0.5", "math")
    True

Where this departs from the references:

- Cobbe et al. compare the text after ``####`` as a string; here numbers compare exactly as rationals, and
  answers without ``####`` are read too, so a sampled solution that forgets the marker still grades.
- "gsm8k" extraction also reads ``\boxed{}``: instruction-tuned models (Qwen, Llama) write it on GSM8K.
- math-verify's own timeout uses SIGALRM, which works only in the main thread and cannot interrupt long
  C-level arithmetic. Here math-verify runs with its timeouts off in one long-lived worker subprocess per
  process (``grading_worker.py``); the caller waits at most ``timeout_s`` for its answer, then kills and replaces the worker.
  This works from any thread, adds ~30 us of pipe traffic per comparison, and a timed-out comparison
  grades False (and is cached, so a pathological pair costs its timeout once). POSIX only.
- Lightman et al. (PRM800K) grade with their own sympy normaliser; math-verify is stricter about
  sets/intervals and more lenient about units and ``\text{}``.
"""

from __future__ import annotations

import re
from fractions import Fraction

from prmkit.grading_worker import math_verify_equal

KINDS = ("gsm8k", "math")
MATH_TIMEOUT_S = 5.0  # math-verify's default per comparison


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; valid kinds: {', '.join(KINDS)}")


# ---------------------------------------------------------------------------------------------- numbers

# "1,234.5", "12", ".5": a comma group counts as a thousands separator only when it is exactly 3 digits.
# The bound on comma groups keeps a scan linear: unbounded, every start inside a long "1,000,000,...,0000"
# re-read the rest of the chain (quadratic time). 32 groups (up to 99 digits) cover what _MAX_DIGITS admits.
_UNUM = r"(?:\d{1,3}(?:,\d{3}){1,32}(?!\d|,\d)|\d+)(?:\.\d+)?|\.\d+"
# Longer numerals are not read as numbers: no answer has them, and Python's int() refuses 4300+ digits.
_MAX_DIGITS = 100
# A sign only where it cannot be an operator: "16-3" is 16 then 3, "= -3" is -3.
_NUMBER_RE = re.compile(
    rf"(?P<sign>(?<![\w)\]}}])[-+])?(?:\\?\$)?"  # "-$15" is -15
    rf"(?:\\[dt]?frac\{{\s*(?P<fn>{_UNUM})\s*\}}\{{\s*(?P<fd>{_UNUM})\s*\}}"
    rf"|(?P<num>{_UNUM})(?:/(?P<den>{_UNUM})(?![\d/]))?)"
)
_DECORATION_RE = re.compile(r"\\[$%!,]|\{,\}|\*\*|\\\(|\\\)|[$%€£¥]")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mbox|mathrm)\s*\{([^{}]*)\}")
_UNIT = r"[A-Za-zµ\u00c0-\u024f][A-Za-zµ\u00c0-\u024f\s.'/²³-]*(?:\^\{?\d\}?)?"  # "dollars", "km/h", "cm^2"
_WHOLE_NUMBER_RE = re.compile(rf"(?:{_NUMBER_RE.pattern})\s*(?:{_UNIT})?")


def _fraction(m: re.Match[str]) -> Fraction | None:
    num, den = (m["fn"], m["fd"]) if m["fn"] is not None else (m["num"], m["den"] or "1")
    if max(_digits(num), _digits(den)) > _MAX_DIGITS:
        return None
    try:
        value = Fraction(num.replace(",", "")) / Fraction(den.replace(",", ""))
    except ZeroDivisionError:
        return None
    return -value if m["sign"] == "-" else value


def _digits(numeral: str) -> int:
    return sum(c.isdigit() for c in numeral)


def _parse_number(s: str) -> Fraction | None:
    """The number ``s`` spells, allowing currency, thousands separators, %, units and a final period."""
    s = _TEXT_RE.sub(r" \1", s.replace("\u2212", "-"))
    s = _DECORATION_RE.sub("", s).strip().rstrip(".").strip()
    m = _WHOLE_NUMBER_RE.fullmatch(s)
    return _fraction(m) if m else None


def _canonical(value: Fraction) -> str:
    """Integers as integers, terminating decimals as decimals, other rationals as "p/q"."""
    if value.denominator == 1:
        return str(value.numerator)
    d, twos, fives = value.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return f"{value.numerator}/{value.denominator}"
    k = max(twos, fives)  # n/d == n * 10**k / d / 10**k, exactly
    digits = str(abs(value.numerator) * 10**k // value.denominator).rjust(k + 1, "0")
    return f"{'-' if value < 0 else ''}{digits[:-k]}.{digits[-k:]}"


def normalize_number(s: str) -> str | None:
    """Canonical string of the number ``s`` spells, or None if ``s`` is not a number.

    Equal values give equal strings, so the result can key majority votes.

        >>> [normalize_number(s) for s in ["1,000.00", "$18", "-3.50", "18 dollars.", "20%", "6/8", "1/3"]]
        ['1000', '18', '-3.5', '18', '20', '0.75', '1/3']
        >>> normalize_number("x = 5") is None
        True
    """
    value = _parse_number(s)
    return None if value is None else _canonical(value)


def _first_number(segment: str) -> str | None:
    for m in _NUMBER_RE.finditer(segment.replace("\u2212", "-")):
        value = _fraction(m)
        if value is not None:
            return _canonical(value)
    return None


def _last_number(text: str) -> str | None:
    for m in reversed(list(_NUMBER_RE.finditer(text.replace("\u2212", "-")))):
        value = _fraction(m)
        if value is not None:
            return _canonical(value)
    return None


# ------------------------------------------------------------------------------------------- extraction

_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"\banswer\s+is\s*:?[ \t]*([^\n]*)", re.IGNORECASE)
_A_COLON_RE = re.compile(r"(?<![\w])A:[ \t]*(?:\*\*|\$|\\\()?[ \t]*([^\n]*)")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_PRM800K_ANSWER_RE = re.compile(r"^#[ \t]*Answer[ \t]*\n+[ \t]*([^\n]+)", re.MULTILINE)


_BRACE_OR_ESCAPE_RE = re.compile(r"\\.|[{}]", re.DOTALL)
_BARE_BOX_ARG_RE = re.compile(r"\s+([^\s$]+)")


def _brace_partners(text: str) -> dict[int, int]:
    r"""The matching "}" of every "{" that has one; a backslash escapes the next character.

    One pass for the whole text: matching each box's braces by a scan of its own cost quadratic time
    on a truncated sample full of unclosed ``\boxed{``.
    """
    partners: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_OR_ESCAPE_RE.finditer(text):
        if m[0] == "{":
            stack.append(m.start())
        elif m[0] == "}" and stack:
            partners[stack.pop()] = m.start()
    return partners


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` / ``\fbox{...}`` / ``\boxed 5`` in ``text``, or None.

    An unbalanced box (a truncated sample) is skipped for the one before it.

    >>> last_boxed(r"$\boxed{1}$ then $\boxed{\frac{\sqrt{2}}{2}}$")
    '\\frac{\\sqrt{2}}{2}'
    """
    partners: dict[int, int] | None = None
    for m in reversed(list(_BOX_RE.finditer(text))):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            partners = _brace_partners(text) if partners is None else partners
            end = partners.get(i)
            content = None if end is None else text[i + 1 : end]
        else:
            token = _BARE_BOX_ARG_RE.match(text, m.end())
            content = token[1].rstrip(".,") if token else None
        if content is not None:
            return content.strip()
    return None


def _answer_is_segment(segment: str) -> str:
    """The expression after "the answer is": a $...$ / \\(...\\) group, else up to the end of the sentence."""
    segment = segment.strip().removeprefix("**").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if segment.startswith(left):
            end = segment.find(right, len(left))
            return segment[len(left) : end if end >= 0 else None]
    return re.split(r"\.(?:\s|$)|\*\*", segment, maxsplit=1)[0]


def _extract_gsm8k(text: str) -> str | None:
    if (marks := _HASH_RE.findall(text)) and (answer := _first_number(marks[-1])):
        return answer
    if (box := last_boxed(text)) is not None and (answer := _first_number(box)):
        return answer
    if (said := _ANSWER_IS_RE.findall(text)) and (answer := _first_number(said[-1])):
        return answer
    if (said := _A_COLON_RE.findall(text)) and (m := _NUMBER_RE.match(said[-1])):
        return _first_number(m[0])  # "A: 5" only when the number comes first, not "A: She had 3 ..."
    return _last_number(text)


def _extract_math(text: str) -> str | None:
    if (box := last_boxed(text)) is not None:
        return box or None
    if m := _PRM800K_ANSWER_RE.findall(text):
        return m[-1].strip().strip("$").strip() or None
    if m := _ANSWER_IS_RE.findall(text):
        return _answer_is_segment(m[-1]).strip().rstrip(".").strip() or None
    return None


def extract_answer(text: str, kind: str) -> str | None:
    r"""The final answer written in ``text``, or None when there is none.

    "gsm8k" answers come back canonical (``normalize_number``); "math" answers as the LaTeX written.

        >>> extract_answer("#### 5\nso the answer is $1,234.", "gsm8k")
        '5'
        >>> extract_answer("She has 18 - 3 = 15 left. The answer is: 15 apples.", "gsm8k")
        '15'
        >>> extract_answer("2 + 2 = 4 so 4 * 3 = 12", "gsm8k")
        '12'
        >>> extract_answer(r"$\boxed{2}$, no: $\boxed{\{1, \frac{1}{2}\}}$", "math")
        '\\{1, \\frac{1}{2}\\}'
        >>> extract_answer("The final answer is $x^2$. I hope it is correct.", "math")
        'x^2'
    """
    _check_kind(kind)
    return _extract_gsm8k(text) if kind == "gsm8k" else _extract_math(text)


# ---------------------------------------------------------------------------------------------- grading

_LATEX_RULES = [
    (re.compile(r"\\(?:left|right|big|Big|bigg|Bigg|displaystyle)(?![A-Za-z])"), ""),
    (re.compile(r"\\[!,;: ]|~"), ""),
    (re.compile(r"\\[dt]frac(?![A-Za-z])"), r"\\frac"),
    (re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![A-Za-z])"), ""),
    (re.compile(r"\\?%|\\\$|\$"), ""),
]
# "5\text{ cm}^2" is 5; \mathrm is left alone, it also writes constants ("2\mathrm{i}").
_UNIT_SUFFIX_RE = re.compile(r"(.*?\S)\s*\\(?:text|mbox)\s*\{\s*[A-Za-z][A-Za-z\s.]*\}(?:\^\{?\d\}?)?")
_SHORT_FRAC_RULES = [
    (re.compile(r"\\frac(\d)(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac(\d)\{"), r"\\frac{\1}{"),
    (re.compile(r"\\frac\{([^{}]*)\}(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\sqrt(\d)"), r"\\sqrt{\1}"),
]
_EXACT_NUMBER_RE = re.compile(
    r"(?P<sign>-)?(?:\\frac\{(?P<fn>\d+)\}\{(?P<fd>\d+)\}|(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?:/(?P<den>\d+))?)"
)


def _normalize_latex(s: str) -> str:
    r"""Cheap canonical form of a LaTeX answer: equal forms mean equal answers, not the converse.

    >>> _normalize_latex(r"$\left( 3, \dfrac{\pi}{2} \right)$.")
    '(3,\\frac{\\pi}{2})'
    >>> _normalize_latex(r"x = 30^\circ"), _normalize_latex(r"10\text{ cm}^2"), _normalize_latex(r"\frac12")
    ('30', '10', '\\frac{1}{2}')
    """
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)]
    s = s.strip().rstrip(".").strip()
    for pattern, repl in _LATEX_RULES:
        s = pattern.sub(repl, s)
    if m := _UNIT_SUFFIX_RE.fullmatch(s.strip()):
        s = m[1]
    s = _TEXT_RE.sub(r"\1", s)
    lhs, eq, rhs = s.partition("=")
    if eq and "=" not in rhs and len(lhs.strip()) <= 2 and rhs.strip():
        s = rhs  # "x = 5" answers "5"
    for pattern, repl in _SHORT_FRAC_RULES:
        s = pattern.sub(repl, s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    return re.sub(r"(?<![\d}])\.(\d)", r"0.\1", s)


def _exact_number(s: str) -> Fraction | None:
    m = _EXACT_NUMBER_RE.fullmatch(s)
    return _fraction(m) if m else None


def _grade_math(pred: str, gold: str, timeout_s: float) -> bool:
    if not pred.strip():
        return False
    p, g = _normalize_latex(pred), _normalize_latex(gold)
    if p == g and p:
        return True
    p_value, g_value = _exact_number(p), _exact_number(g)
    if p_value is not None and g_value is not None:
        if p_value == g_value:
            return True
        if "." not in p + g:
            return False  # two different exact rationals; decimals go on to math-verify's rounding
    return math_verify_equal(pred.strip(), gold.strip(), timeout_s)


def grade_answer(pred: str | None, gold: str, kind: str, *, timeout_s: float = MATH_TIMEOUT_S) -> bool:
    r"""Whether the extracted answer ``pred`` equals the reference ``gold``; None grades False.

    A "math" comparison that takes longer than ``timeout_s`` seconds grades False and does not raise.

        >>> grade_answer("0.75", "3/4", "gsm8k"), grade_answer("18.0", "18", "gsm8k"), grade_answer(None, "1", "gsm8k")
        (True, True, False)
        >>> grade_answer(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", "math"), grade_answer("3", "4", "math")
        (True, False)
    """
    _check_kind(kind)
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if not isinstance(gold, str):
        raise TypeError(f"gold answer must be a string, got {type(gold).__name__}")
    if pred is None:
        return False
    if kind == "math":
        return _grade_math(pred, gold, timeout_s)
    p, g = _parse_number(pred), _parse_number(gold)
    if p is None or g is None:  # not numbers: only the identical non-empty string counts
        return p is None and g is None and bool(pred.strip()) and pred.strip() == gold.strip()
    return p == g
