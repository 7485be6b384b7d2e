"""Calculator sampling by stop and resubmit, shared by the backends that sample through an engine.

The ``hf`` backend forces calculator results inside its own decoding loop. A backend that hands
decoding to an engine (``vllm``, or a server behind ``openai``) cannot reach into the loop, so it
stops every sample at an ``=``, and ``finish_drafts`` takes over: when the text then ends in an open
``<<expr=``, the exact result from ``prmkit.calculator`` and ``>>`` are appended (Cobbe et al.'s
calculator, never ``eval``), user stop strings are applied to the text, and the samples that still
have tokens left continue together in one more round. A backend supplies only ``resubmit`` (continue
drafts from their prompt and text) and, if it counts tokens itself, ``force`` (append a result).

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


def finish_drafts(
    drafts: list[Draft],
    max_tokens: int,
    stop: tuple[str, ...],
    resubmit: Callable[[list[Draft], int], None],
    force: Callable[[Draft, str], None] = _append,
) -> None:
    """Run drafts to the end in rounds: force due calculator results, apply the stop strings, and
    continue every draft still "new" or "calc" with tokens left through ``resubmit(live, round)``
    (round 0, 1, ...), which extends each live draft's text and tokens and sets its ``finish``."""
    for d in drafts:
        cut_at_stop(d, stop)
    rounds = 0
    while True:
        live = []
        for d in drafts:
            if d.finish not in ("new", "calc"):
                continue
            if d.finish == "calc" and (suffix := due_suffix(d)) is not None:
                force(d, suffix)
                if cut_at_stop(d, stop):
                    continue
            if d.tokens >= max_tokens:
                d.finish = "length"
                continue
            live.append(d)
        if not live:
            return
        resubmit(live, rounds)
        for d in live:
            cut_at_stop(d, stop)
        rounds += 1
