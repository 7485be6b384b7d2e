"""Safe exact arithmetic for calculator annotations (``<<48/2=24>>``) and the world's oracle.

Expressions are parsed by a small recursive-descent parser over ``+ - * /``, unary minus,
parentheses and decimal numbers, evaluated exactly with ``fractions.Fraction``. Nothing is ever
passed to Python's ``eval``. Limits on length, number size, magnitude and nesting keep a model's
runaway text from costing time or memory; anything outside them returns None, so a sampler simply
goes on without the calculator.

    >>> evaluate("16-3-4")
    Fraction(9, 1)
    >>> format_number(evaluate("48/2"))
    '24'
    >>> evaluate("2**100") is None  # not arithmetic we accept
    True

Departure from Cobbe et al.: their sampler calls Python ``eval`` on the model's text; we parse.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_EXPR_CHARS = 64
MAX_NUMBER_DIGITS = 12
MAX_DEPTH = 8
MAX_MAGNITUDE = Fraction(10) ** 15

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|(.))")


class _Reject(Exception):
    pass


def _tokenize(expr: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    expr = expr.replace(",", "").replace("$", "")
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:  # only trailing whitespace is left
            break
        num, sym = m.groups()
        if num is not None:
            if len(num.replace(".", "")) > MAX_NUMBER_DIGITS:
                raise _Reject
            tokens.append(num)
        elif sym in "+-*/()":
            tokens.append(sym)
        elif sym in "x×":
            tokens.append("*")
        elif sym == "÷":
            tokens.append("/")
        elif not sym.isspace():
            raise _Reject
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise _Reject
        self.i += 1
        return tok

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(depth)
            value = value + rhs if op == "+" else value - rhs
            _bound(value)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.unary(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.unary(depth)
            if op == "*":
                value = value * rhs
            else:
                if rhs == 0:
                    raise _Reject
                value = value / rhs
            _bound(value)
        return value

    def unary(self, depth: int) -> Fraction:
        if self.peek() == "-":
            self.take()
            return -self.unary(depth)
        return self.atom(depth)

    def atom(self, depth: int) -> Fraction:
        tok = self.take()
        if tok == "(":
            if depth >= MAX_DEPTH:
                raise _Reject
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise _Reject
            return value
        if tok[0].isdigit() or tok[0] == ".":
            return Fraction(tok)
        raise _Reject


def _bound(value: Fraction) -> None:
    if abs(value) > MAX_MAGNITUDE or value.denominator > 10**6:
        raise _Reject


def evaluate(expr: str) -> Fraction | None:
    """The exact value of an arithmetic expression, or None if it is not one we accept."""
    if not expr or len(expr) > MAX_EXPR_CHARS:
        return None
    try:
        tokens = _tokenize(expr)
        if not tokens:
            return None
        parser = _Parser(tokens)
        value = parser.expr(0)
        if parser.peek() is not None:
            return None
        _bound(value)
        return value
    except (_Reject, ValueError, ZeroDivisionError):
        return None


def format_number(value: Fraction) -> str:
    """GSM8K-style rendering: integers plain, other values as a short decimal (or a/b if none).

    >>> format_number(Fraction(5, 2)), format_number(Fraction(1, 3)), format_number(Fraction(-4))
    ('2.5', '1/3', '-4')
    """
    if value.denominator == 1:
        return str(value.numerator)
    for places in range(1, 7):
        scaled = value * 10**places
        if scaled.denominator == 1:
            sign = "-" if value < 0 else ""
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            return f"{sign}{digits[:-places]}.{digits[-places:]}"
    return f"{value.numerator}/{value.denominator}"


def calculate(expr: str) -> str | None:
    """What the calculator writes after ``<<expr=``: the formatted result, or None to stay silent."""
    value = evaluate(expr)
    return None if value is None else format_number(value)
