"""What every verifier shares: the one solution encoder and the one scoring loop.

``encode_solution(tokenizer, question, steps, tag)`` turns a solution into token ids and the position
each step's score is read at, in one of two layouts:

- **tagged** (``tag`` given; PRMs and ORMs): the whole text, by default ``format_for_scoring`` =
  ``format_prompt(question)`` + ``f"{step} {tag}\\n"`` per step, tokenised in one call; a step is read
  at its tag. A released format passes its own rendering as ``text`` (``reward/formats.py``).
- **pieces** (no tag; value verifiers, the generator's likelihood, TRL token classifiers): the prompt
  tokenised with the tokenizer's special tokens, then ``step + "\\n"`` for every step, each piece on its
  own, ids concatenated; a step is read at its piece's last token. With ``eos`` the last step has no
  "\\n" and EOS ends it: the text the generator was fine-tuned on (``policy/sft.py``).

``n_prompt`` is the length of the prompt tokenised alone: the first solution token in the pieces
layout, and where the auxiliary LM loss starts in the tagged one.

    >>> from prmkit.models import STEP_TAG, train_tokenizer
    >>> tok = train_tokenizer(["Question: 1+1?\\nAnswer:\\n1+1=2\\n#### 2"], vocab_size=300)
    >>> e = encode_solution(tok, "1+1?", ["1+1=2", "#### 2"], STEP_TAG)
    >>> [tok.decode(e.ids[p]) for p in e.positions]
    ['<|step|>', '<|step|>']
    >>> e = encode_solution(tok, "1+1?", ["1+1=2", "#### 2"])
    >>> [tok.decode(e.ids[p]) for p in e.positions], e.ids[: e.n_prompt] == tok(format_prompt("1+1?"))["input_ids"]
    (['\\n', '\\n'], True)

A ``Scorer`` is anything with ``score(questions, steps, batch_size) -> list[list[float]]`` (one score
per step; ``nan`` for a step cut by the model's context). ``score_encoded`` is the loop the hf scorers
(``StepRewardModel``, ``ValueModel``, ``LikelihoodScorer``) share: longest first, right-padded batches
(every real token keeps its unpadded position id), one forward pass per batch, scores read per row.

``rl/rollout.py`` still tokenises sampled text itself (it needs character offsets to find the tokens
the calculator forced); once a completion carries its token ids it can take the prompt ids from
``encode_solution(tokenizer, question, []).ids`` and append them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from prmkit.models import STEP_TAG, format_prompt


@dataclass(frozen=True)
class Encoded:
    """A solution as token ids: ``positions[i]`` is where step i's score is read (uncut)."""

    ids: list[int]
    positions: list[int]
    n_prompt: int


def format_for_scoring(question: str, steps: list[str], tag: str = STEP_TAG) -> str:
    """The prmkit tagged text: the prompt, then every step followed by a space, the tag and a newline.

    >>> format_for_scoring("1+1?", ["1+1=2", "#### 2"], "<t>")
    'Question: 1+1?\\nAnswer:\\n1+1=2 <t>\\n#### 2 <t>\\n'
    """
    return format_prompt(question) + "".join(f"{step} {tag}\n" for step in steps)


def encode_solution(
    tokenizer,
    question: str,
    steps: list[str],
    tag: str | None = None,
    *,
    tag_id: int | None = None,
    eos: bool = False,
    prompt: str | None = None,
    text: str | None = None,
) -> Encoded:
    """``question`` + ``steps`` -> ids and the position each step is read at (see the module docstring).

    ``prompt`` replaces ``format_prompt(question)`` (TRL's raw question), ``text`` the tagged rendering
    (``prompt`` must then be its start); ``tag_id`` saves looking the tag up. A tagged text whose tag
    count differs from the step count (a step holding the tag) is a ValueError.
    """
    prompt = format_prompt(question) if prompt is None else prompt
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    if tag is not None:
        if tag_id is None:
            tag_id = tokenizer.convert_tokens_to_ids(tag)
        ids = list(
            tokenizer(text if text is not None else format_for_scoring(question, steps, tag))["input_ids"]
        )
        positions = [i for i, t in enumerate(ids) if t == tag_id]
        if len(positions) != len(steps):
            raise ValueError(
                f"found {len(positions)} step tags for {len(steps)} steps (does a step contain {tag!r}?)"
            )
        return Encoded(ids, positions, len(prompt_ids))
    ids, positions = prompt_ids, []
    for i, step in enumerate(steps):
        piece = step if eos and i == len(steps) - 1 else step + "\n"
        ids = ids + tokenizer(piece, add_special_tokens=False)["input_ids"]
        positions.append(len(ids) - 1)
    if eos and steps:
        ids = ids + [tokenizer.eos_token_id]
        positions[-1] = len(ids) - 1
    return Encoded(ids, positions, len(prompt_ids))


@runtime_checkable
class Scorer(Protocol):
    """A verifier: one score per step of each solution, in input order (an ORM repeats its one score).

    ``StepRewardModel``, ``ValueModel``, ``LikelihoodScorer``, ``reward.vllm.VLLMScorer`` and
    ``distributed.RayScorer`` are scorers; ``source`` says where the model came from (``scores.meta.json``).
    """

    source: dict[str, Any]

    def score(
        self, questions: list[str], steps: list[list[str]], batch_size: int = 16
    ) -> list[list[float]]: ...


def check_lengths(what: str, questions: Sequence, steps: Sequence) -> None:
    if len(questions) != len(steps):
        raise ValueError(f"{what}: {len(questions)} questions but {len(steps)} step lists")


def warn_cut(what: str, lengths: list[int], max_length: int) -> None:
    """One warning for the solutions longer than the model's context."""
    n_cut = sum(n > max_length for n in lengths)
    if n_cut:
        warnings.warn(
            f"{what}: {n_cut} of {len(lengths)} solutions exceed {max_length} tokens and were truncated; "
            "steps whose end was cut score nan",
            stacklevel=4,
        )


def score_encoded(
    encoded: list[Encoded],
    forward: Callable[[Any, Any], Any],
    read: Callable[[Any, Encoded, int], list[float]],
    model,
    tokenizer,
    max_length: int,
    batch_size: int,
    what: str,
) -> list[list[float]]:
    """Scores of ``encoded`` in input order. Rows are cut at ``max_length`` (with one warning), batched
    longest first and right-padded with the tokenizer's pad id on ``model``'s device;
    ``forward(input_ids, attention_mask)`` gives one batch's (B, T, ...) output under ``no_grad``, and
    ``read(output row, encoded, kept length)`` that row's step scores."""
    import torch

    device, pad_id = next(model.parameters()).device, tokenizer.pad_token_id

    warn_cut(what, [len(e.ids) for e in encoded], max_length)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].ids))
    results: list[list[float]] = [[] for _ in encoded]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = [encoded[i].ids[:max_length] for i in idx]
        width = max(len(r) for r in rows)
        # right padding keeps every real token at its unpadded position id
        input_ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=device)  # (B, T)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)  # (B, T)
        with torch.no_grad():
            out = forward(input_ids, mask).cpu()
        for b, i in enumerate(idx):
            results[i] = read(out[b], encoded[i], len(rows[b]))
    return results


def read_at(row, enc: Encoded, kept: int) -> list[float]:
    """The row's value at each step's position; ``nan`` where the position was cut."""
    return [float(row[p]) if p < kept else math.nan for p in enc.positions]
