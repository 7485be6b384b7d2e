"""Calculator sampling by stop and resubmit, shared by the backends that sample through an engine.

The ``hf`` backend forces calculator results inside its own decoding loop. A backend that hands
decoding to an engine (``vllm``, or a server behind ``openai``) cannot reach into the loop, so it
stops every sample at an ``=``, and ``advance`` settles it: when the text then ends in an open
``<<expr=``, the exact result from ``prmkit.calculator`` and ``>>`` are appended (Cobbe et al.'s
calculator, never ``eval``), user stop strings are applied to the text, and a sample with tokens left
goes on. ``finish_drafts`` runs that in rounds for a backend that supplies only ``resubmit`` (continue
drafts from their prompt and text) and, if it counts tokens itself, ``force`` (append a result); the
``vllm`` backend resubmits each sample the moment it stops, with ``advance`` alone.

Departure from the ``hf`` backend: a stop string is cut at its first occurrence in the text (``hf``
stops at the token that completes it); the two agree whenever a stop string ends a token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prmkit.calculator import MAX_EXPR_CHARS, calculate

CALC_OPEN, CALC_CLOSE = "<<", ">>"


def calculator_suffix(text: str) -> str | None:
    """The result and ``>>`` to append when ``text`` (just cut at an ``=``) ends in an open ``<<expr``.

    >>> calculator_suffix("She pays 3*4 = <<3*4"), calculator_suffix("She pays 3*4 "), calculator_suffix("<<1/0")
    ('12>>', None, None)
    """
    start = text.rfind(CALC_OPEN)
    if start < 0 or CALC_CLOSE in text[start:] or "=" in text[start:]:
        return None
    result = calculate(text[start + 2 :])
    return None if result is None else result + CALC_CLOSE


@dataclass
class Draft:
    """A sample being written. ``finish``: "new" (not yet submitted), "calc" (stopped at a token holding
    an ``=``, with the ``=`` in ``text``: force a result if one is due, then continue), or final ("eos",
    "stop", "length"). ``seed`` is the draft's own (round r draws with ``seed + r``); ``state`` is the
    backend's (e.g. token ids)."""

    prompt: str
    text: str = ""
    tokens: int = 0
    finish: str = "new"
    seed: int | None = None
    state: Any = None


def due_suffix(d: Draft) -> str | None:
    """The calculator result due after a draft that stopped at an ``=``: its text (after the prompt's
    tail, so a prompt that ends in ``<<48/2=`` is completed too) must end in an open ``<<expr=``."""
    context = d.prompt[-2 * MAX_EXPR_CHARS :] + d.text
    return calculator_suffix(context[:-1]) if context.endswith("=") else None


def cut_at_stop(d: Draft, stop: tuple[str, ...]) -> bool:
    """Cut ``d.text`` at the first user stop string in it and mark it stopped; True if one was found."""
    cuts = [i for i in (d.text.find(s) for s in stop) if i >= 0]
    if not cuts:
        return False
    d.text, d.finish = d.text[: min(cuts)], "stop"
    return True


def _append(d: Draft, suffix: str) -> None:
    d.text += suffix


def advance(
    d: Draft, max_tokens: int, stop: tuple[str, ...], force: Callable[[Draft, str], None] = _append
) -> bool:
    """Settle a draft the engine has just returned (or a new one): cut it at a user stop string, force
    the calculator result due after an ``=``, and say whether it goes on (True: resubmit it)."""
    if cut_at_stop(d, stop) or d.finish not in ("new", "calc"):
        return False
    if d.finish == "calc" and (suffix := due_suffix(d)) is not None:
        force(d, suffix)
        if cut_at_stop(d, stop):
            return False
    if d.tokens >= max_tokens:
        d.finish = "length"
        return False
    return True


def finish_drafts(
    drafts: list[Draft],
    max_tokens: int,
    stop: tuple[str, ...],
    resubmit: Callable[[list[Draft], int], None],
    force: Callable[[Draft, str], None] = _append,
) -> None:
    """Run drafts to the end in rounds: every draft that ``advance`` keeps goes to ``resubmit(live,
    round)`` (round 0, 1, ...), which extends each one's text and tokens and sets its ``finish``. A
    backend that can resubmit a draft the moment it stops calls ``advance`` itself instead."""
    live = [d for d in drafts if advance(d, max_tokens, stop, force)]
    rounds = 0
    while live:
        resubmit(live, rounds)
        live = [d for d in live if advance(d, max_tokens, stop, force)]
        rounds += 1
