"""The generator's own likelihood as a verifier: the baseline a trained verifier has to beat.

A solution's score is the generator's mean token log-probability of the solution given its prompt,
read from one forward pass per batch, with no training. The text is what the generator was fine-tuned
on (``policy/sft.py``): ``format_prompt(question)``, the steps joined by "\\n", then EOS. Each piece
(the prompt, ``step + "\\n"`` for every step but the last, the last step, EOS) is tokenised on its own,
so every step ends at a known token: its "\\n", and for the last step the EOS, whose probability says
how sure the generator is that the solution is complete.

``score`` gives one value per step: the *running* mean, over the solution's tokens from its first
through the last token of that step, of the token log-probabilities, as ``exp(mean)`` (the geometric
mean token probability, in (0, 1]). ``verify.aggregate(..., "last")`` is then the whole solution's
exp(mean log-prob). The exponential changes no ranking (best-of-N and the within-problem AUC are those
of the mean log-prob) but keeps the scores where the rest of prmkit expects them: ``nan`` (a step cut
by the context) aggregates to 0, the worst score, and weighted self-consistency sums positive weights.

Load it with ``load_reward_model("likelihood:PATH")`` (``prmkit score --model likelihood:PATH``), so
``score_solutions`` writes ``scores.jsonl`` for it like for any verifier. The logits of the whole
vocabulary are computed, so with a large vocabulary keep ``batch_size`` small.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prmkit.reward.scoring import Encoded, check_lengths, encode_solution, score_encoded

PREFIX = "likelihood:"  # load_reward_model("likelihood:PATH"): the generator at PATH scores by likelihood


def running_means(token_logps: list[float], n_prompt: int, ends: list[int]) -> list[float]:
    """exp(mean log-prob) of the solution's tokens up to each step end; ``token_logps[t]`` is the
    log-prob of token t (``nan`` past the cut, where the step's value is ``nan`` too).

    >>> [round(x, 4) for x in running_means([0.0, 0.0, math.log(0.5), math.log(0.5), math.log(0.125)], 2, [3, 4])]
    [0.5, 0.315]
    """
    out, total, start = [], 0.0, n_prompt
    for e in ends:
        if e >= len(token_logps) or any(math.isnan(x) for x in token_logps[start : e + 1]):
            out += [math.nan] * (len(ends) - len(out))
            break
        total += sum(token_logps[start : e + 1])
        start = e + 1
        out.append(math.exp(total / (e + 1 - n_prompt)))
    return out


class LikelihoodScorer:
    """``score(questions, steps)``: the generator's running exp(mean token log-prob) at each step end."""

    def __init__(self, lm, tokenizer, max_length: int | None = None):
        self.lm, self.tokenizer = lm, tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_length = max_length or getattr(lm.config, "max_position_embeddings", None) or 4096
        self.source: dict[str, Any] = {}  # set by from_pretrained

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        max_length: int | None = None,
    ) -> LikelihoodScorer:
        """A generator's directory or hub id (on the GPU when there is one)."""
        import torch

        from prmkit.models import load_causal_lm, load_tokenizer, model_source

        hub = {"trust_remote_code": trust_remote_code, "revision": revision}
        lm = load_causal_lm(path_or_id, dtype=dtype, **hub)
        lm = lm.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        scorer = cls(lm, load_tokenizer(path_or_id, **hub), max_length)
        scorer.source = {**model_source(path_or_id, lm, revision), "scorer": "likelihood"}
        return scorer

    def score(self, questions: list[str], steps: list[list[str]], batch_size: int = 16) -> list[list[float]]:
        """Per step, exp(mean log-prob) of the solution so far, in input order; ``nan`` for cut steps."""
        check_lengths("likelihood", questions, steps)

        def forward(ids, mask):  # (B, T-1): log P(token t | tokens < t) sits at t - 1
            logits = self.lm(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
            return logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)

        def read(logp, enc: Encoded, kept: int) -> list[float]:
            per_token = [0.0] + logp[: kept - 1].tolist()  # index t = token t
            return running_means(per_token, enc.n_prompt, enc.positions)

        encoded = [
            encode_solution(self.tokenizer, q, s, eos=True) for q, s in zip(questions, steps, strict=True)
        ]
        return score_encoded(
            encoded, forward, read, self.lm, self.tokenizer, self.max_length, batch_size, "likelihood"
        )
