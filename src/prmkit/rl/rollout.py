"""Rollouts for PPO and GRPO: sampled completions as token ids, the calculator's forced tokens, step ends and scores.

A rollout is sampled by the policy backend (``HFPolicy`` on the live model, or the ``vllm`` engine
reloaded with its weights, with the calculator). A backend that sees tokens gives them with the
completion (``Completion.token_ids`` and ``forced``): the rollout is the prompt as the backend
tokenised it followed by exactly the sampled ids, so the "old" log-probabilities are those of the
actions taken. A backend that gives text only (``openai``) is re-tokenised: ``format_prompt(question)
+ text`` with the policy's fast tokenizer (the ids may then differ from the sampled ones where BPE
merges differently; PPO then optimises the policy on what the text is, which is what the reward
model judged).

Three facts are read from the tokens' character offsets in the text:

- which response tokens the calculator wrote (the result and ``>>`` after ``<<expr=``): the policy did
  not choose them, so they are left out of the policy loss and of the KL penalty, while they stay in
  the trajectory (values, returns) because the next state contains them;
- the token holding the last character of each step (steps from ``prmkit.steps.split_steps``, the one
  splitter), where a process reward is placed;
- the end of the response: an EOS token is appended when the sampler stopped by itself (that choice
  is an action too) and the outcome reward sits on the last response token.

Scores come from a reward model through text (``score(questions, steps)``), so its tokenizer may
differ from the policy's. A NaN score (a step whose tag fell beyond the reward model's context; the
scorer warns when it truncates) counts as 0, as in ``verify.aggregate``: unknown is not evidence of good.
A rollout with no non-empty step is scored as one wrong step: score 0 at its last token, for every
reward kind, so an empty answer never beats a doubtful one.
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import torch

from prmkit.calculator import calculate
from prmkit.grading import extract_answer, grade_answer
from prmkit.models import format_prompt
from prmkit.policy.base import Completion
from prmkit.steps import split_steps
from prmkit.types import Problem

REWARDS = ("process", "outcome", "answer")
STEP_REWARDS = ("score", "delta")
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")  # what a forward pass over a batch takes
_CALL = re.compile(r"<<([^<>=]*)=")


def forced_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` the calculator forced: the result and ``>>`` after ``<<expr=``.

    >>> text = "He pays 3*4 = <<3*4=12>>12 dollars, <<1/0=5>>5."
    >>> [text[a:b] for a, b in forced_spans(text)]  # 1/0 has no result: the model wrote "5>>" itself
    ['12>>']
    """
    spans = []
    for m in _CALL.finditer(text):
        result = calculate(m.group(1))
        if result is not None and text.startswith(result + ">>", m.end()):
            spans.append((m.end(), m.end() + len(result) + 2))
    return spans


def step_spans(text: str, kind: str = "gsm8k") -> list[tuple[int, int]]:
    """Character spans of ``split_steps(text, kind)`` inside ``text``.

    >>> text = "a = <<1+1=2>>2\\n\\n  b\\n#### 2"
    >>> [text[a:b] for a, b in step_spans(text)]
    ['a = <<1+1=2>>2', 'b', '#### 2']
    """
    spans, pos = [], 0
    for step in split_steps(text, kind):
        start = text.index(step, pos)  # steps are stripped substrings, in order
        pos = start + len(step)
        spans.append((start, pos))
    return spans


@dataclass(frozen=True)
class Rollout:
    """One sampled solution as PPO sees it; token indices below count from the first response token."""

    problem_id: str
    text: str
    finish: str  # the sampler's finish reason: "eos", "stop", "length"
    ids: list[int]  # prompt + response token ids
    n_prompt: int
    chosen: list[bool]  # per response token: False where the calculator forced it
    steps: list[str]
    step_ends: list[int]  # per step: the response token holding the step's last character

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.n_prompt


def _special_head(tokenizer) -> list[int]:
    """The special tokens the tokenizer puts before a text (a BOS, or nothing)."""
    probe = "Question: x"
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i]
    return []


def _response_spans(tokenizer, ids: list[int], text: str) -> list[tuple[int, int]]:
    """Character spans of response tokens ``ids`` inside ``text`` (their decoding, up to a stop string
    the backend cut): the pieces' own decodings where they concatenate to the text, else the growth of
    the decoded prefix token by token."""
    if not ids:
        return []
    pieces = tokenizer.batch_decode([[t] for t in ids], skip_special_tokens=True)
    ends, pos = [], 0
    if "".join(pieces).startswith(text):
        for piece in pieces:
            pos += len(piece)
            ends.append(pos)
    else:
        ends = [len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True)) for k in range(len(ids))]
    starts = [0, *ends[:-1]]
    return [(min(s, len(text)), min(e, len(text))) for s, e in zip(starts, ends, strict=True)]


def encode_rollouts(tokenizer, problems: list[Problem], completions: list[Completion]) -> list[Rollout]:
    """Prompt and response ids per rollout, the calculator's forced tokens and the step ends.

    A completion that carries its token ids (``hf``, ``vllm``) is used as sampled: the prompt is
    tokenised as the backends tokenise it and the forced mask is the backend's. One that carries text
    only (``openai``) is re-tokenised as ``format_prompt(question) + text`` (a fast tokenizer's character
    offsets find the forced tokens). See the module docstring for what is read.
    """
    head = _special_head(tokenizer)
    prompts = [format_prompt(p.question) for p in problems]
    texts = [c.text for c in completions]
    text_only = [p + t for p, t, c in zip(prompts, texts, completions, strict=True) if not _has_ids(c)]
    joint = tokenizer(text_only, add_special_tokens=False, return_offsets_mapping=True) if text_only else {}
    rows = iter(range(len(text_only)))
    out = []
    for problem, prompt, c in zip(problems, prompts, completions, strict=True):
        text = c.text
        if _has_ids(c):
            ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
            n_prompt = len(ids)
            ids = ids + list(c.token_ids)
            spans = _response_spans(tokenizer, list(c.token_ids), text)
            chosen = [not f for f in c.forced]
        else:
            k = next(rows)
            P, offsets = len(prompt), joint["offset_mapping"][k]
            n = sum(1 for _, e in offsets if e <= P)  # a token straddling the boundary is a response token
            ids, n_prompt = list(head) + list(joint["input_ids"][k]), len(head) + n
            spans = [(s - P, e - P) for s, e in offsets[n:]]  # response tokens, in text coordinates
            forced = forced_spans(text)
            chosen = [not any(a <= s and e <= b for a, b in forced) for s, e in spans]
        if c.finish_reason == "eos" or not spans:  # an empty response still needs a token to carry its reward
            ids.append(tokenizer.eos_token_id)
            spans.append((len(text), len(text)))
            chosen.append(True)
        starts = [s for s, _ in spans]
        out.append(
            Rollout(
                problem_id=problem.id,
                text=text,
                finish=c.finish_reason,
                ids=ids,
                n_prompt=n_prompt,
                chosen=chosen,
                steps=split_steps(text, problem.kind),
                # the last token starting before the step's end holds its last character
                step_ends=[bisect_left(starts, b) - 1 for _, b in step_spans(text, problem.kind)],
            )
        )
    return out


def _has_ids(c: Completion) -> bool:
    """Whether the backend gave the completion's tokens (an empty completion has none to give)."""
    return len(c.token_ids) == c.n_tokens and len(c.forced) == c.n_tokens


def sample_rollouts(sampler, tokenizer, problems: list[Problem], n: int, temperature: float, seed: int):
    """``n`` rollouts per problem from the policy backend (calculator on), encoded for PPO."""
    rows = sampler.generate(
        [format_prompt(p.question) for p in problems], n, temperature=temperature, seed=seed
    )
    items = [(p, c) for p, row in zip(problems, rows, strict=True) for c in row]
    return encode_rollouts(tokenizer, [p for p, _ in items], [c for _, c in items])


def rollout_stats(rollouts: list[Rollout], correct: list[bool]) -> dict[str, float]:
    """Per-iteration means: sampled accuracy, steps, response tokens; counts of step-less and cut rollouts."""
    n = len(rollouts)
    return {
        "accuracy": sum(correct) / n,
        "steps": sum(len(r.steps) for r in rollouts) / n,
        "response_tokens": sum(r.n_response for r in rollouts) / n,
        "no_step": sum(not r.steps for r in rollouts),
        "truncated": sum(r.finish == "length" for r in rollouts),
    }


def step_rewards(scores: list[float], step_reward: str = "score") -> list[float]:
    """A process reward per step from the PRM's step scores: ``score`` is each step's P(good) (the
    paper); ``delta`` is its change from the previous step (potential-based shaping, Ng et al. 1999,
    with 0 before the first step), so the return is the last step's score whatever the step count.

    >>> step_rewards([0.75, 0.25, 0.5]), step_rewards([0.75, 0.25, 0.5], "delta")
    ([0.75, 0.25, 0.5], [0.75, -0.5, 0.25])
    """
    if step_reward not in STEP_REWARDS:
        raise ValueError(f"unknown step reward {step_reward!r}; valid: {', '.join(STEP_REWARDS)}")
    if step_reward == "score":
        return list(scores)
    return [s - prev for s, prev in zip(scores, [0.0, *scores[:-1]], strict=True)]


def score_rollouts(
    rollouts: list[Rollout],
    problems: dict[str, Problem],
    reward: str,
    reward_model: Any = None,
    step_reward: str = "score",
) -> tuple[list[list[int]], list[list[float]], list[bool]]:
    """Where each rollout's score rewards go (response token indices), their values, and correctness.

    ``process``: ``step_rewards`` of the reward model's step scores, each at its step's last token;
    ``outcome``: its last step's score (an ORM's solution score) at the last response token;
    ``answer``: 1.0 or 0.0 for the graded final answer at the last response token. See the module
    docstring for empty rollouts and NaN scores.
    """
    if reward not in REWARDS:
        raise ValueError(f"unknown reward {reward!r}; valid: {', '.join(REWARDS)}")
    correct = []
    for r in rollouts:
        p = problems[r.problem_id]
        correct.append(grade_answer(extract_answer(r.text, p.kind), p.answer, p.kind))
    with_steps = [i for i, r in enumerate(rollouts) if r.steps]
    step_scores: dict[int, list[float]] = {}
    if reward != "answer" and with_steps:
        if reward_model is None:
            raise ValueError(f"the {reward} reward needs a reward model")
        got = reward_model.score(
            [problems[rollouts[i].problem_id].question for i in with_steps],
            [rollouts[i].steps for i in with_steps],
        )
        for i, scores in zip(with_steps, got, strict=True):
            r = rollouts[i]
            if len(scores) != len(r.steps):
                raise ValueError(
                    f"reward model gave {len(scores)} scores for {len(r.steps)} steps "
                    f"(a rollout of problem {r.problem_id})"
                )
            step_scores[i] = [float(s) if math.isfinite(s) else 0.0 for s in scores]
    positions, values = [], []
    for i, r in enumerate(rollouts):
        last = r.n_response - 1
        if not r.steps:  # no step at all: one wrong step (module docstring)
            positions.append([last])
            values.append([0.0])
        elif reward == "process":
            positions.append(list(r.step_ends))
            values.append(step_rewards(step_scores[i], step_reward))
        elif reward == "outcome":
            positions.append([last])
            values.append([step_scores[i][-1]])
        else:
            positions.append([last])
            values.append([1.0 if correct[i] else 0.0])
    return positions, values, correct


def token_rewards(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    chosen: torch.Tensor,
    positions: list[list[int]],
    scores: list[list[float]],
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (B, T) and the per-token KL estimate ``logp - ref_logp`` on chosen tokens.

    >>> logp, ref = torch.tensor([[-1.0, -2.0, -0.5]]), torch.tensor([[-1.5, -2.0, -1.0]])
    >>> r, kl = token_rewards(logp, ref, torch.tensor([[1.0, 0.0, 1.0]]), [[1, 2]], [[0.25, 1.0]], 0.5)
    >>> r.tolist(), kl.tolist()  # -0.5 * KL on tokens 0 and 2; the scores at tokens 1 and 2
    ([[-0.25, 0.25, 0.75]], [[0.5, 0.0, 0.5]])
    """
    kl = (logp - ref_logp) * chosen  # (B, T)
    rewards = -kl_coef * kl  # (B, T)
    for b, (pos, sc) in enumerate(zip(positions, scores, strict=True)):
        at = torch.tensor(pos, dtype=torch.long, device=rewards.device)
        rewards[b].index_put_(
            (at,), torch.tensor(sc, dtype=rewards.dtype, device=rewards.device), accumulate=True
        )
    return rewards, kl


def collate(rollouts: list[Rollout], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Rollouts as tensors, prompts left-padded and responses right-padded so that every response
    starts at column P: ``input_ids``, ``attention_mask``, ``position_ids`` (B, P + T); per response
    token (B, T): ``targets`` (its id), ``mask`` (a response token), ``chosen`` (the policy chose it);
    ``n_prompt`` and ``n_response`` (B,)."""
    B, P, T = len(rollouts), max(r.n_prompt for r in rollouts), max(r.n_response for r in rollouts)
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)
    attn = torch.zeros(B, P + T, dtype=torch.long)
    chosen = torch.zeros(B, T)
    for b, r in enumerate(rollouts):
        ids[b, P - r.n_prompt : P + r.n_response] = torch.tensor(r.ids)
        attn[b, P - r.n_prompt : P + r.n_response] = 1
        chosen[b, : r.n_response] = torch.tensor(r.chosen, dtype=torch.float)
    out = {
        "input_ids": ids,
        "attention_mask": attn,
        "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),  # left padding: positions count real tokens
        "targets": ids[:, P:],
        "mask": attn[:, P:].float(),
        "chosen": chosen,
        "n_prompt": torch.tensor([r.n_prompt for r in rollouts]),
        "n_response": torch.tensor([r.n_response for r in rollouts]),
    }
    return {k: v.to(device) for k, v in out.items()}


def select_rows(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """A minibatch of ``collate``'s rows (and of any (B, T) tensor added to it), with the padding
    columns no row of it uses cut away."""
    sub = {k: v[rows] for k, v in batch.items()}
    P, T = batch["input_ids"].shape[1] - batch["mask"].shape[1], batch["mask"].shape[1]
    p, t = int(sub["n_prompt"].max()), int(sub["n_response"].max())
    for k, v in sub.items():
        if v.dim() == 2:
            sub[k] = v[:, P - p : P + t] if v.shape[1] == P + T else v[:, :t]
    return sub


def length_groups(
    batch: dict[str, torch.Tensor], mb: int, gen: torch.Generator | None = None
) -> list[torch.Tensor]:
    """Row indices in minibatches of similar length (a random long rollout would pad the whole
    minibatch to its length); with ``gen``, random among equal lengths and in random order."""
    lengths = (batch["n_prompt"] + batch["n_response"]).cpu().float()
    noise = torch.rand(len(lengths), generator=gen) if gen is not None else torch.zeros(len(lengths))
    groups = list(torch.argsort(lengths + noise).split(mb))
    if gen is not None:
        groups = [groups[i] for i in torch.randperm(len(groups), generator=gen)]
    return [g.to(batch["mask"].device) for g in groups]


def chunked(fn, batch: dict[str, torch.Tensor], mb: int) -> torch.Tensor:
    """``fn`` over minibatch-sized row groups of ``batch`` (memory), put back together as (B, T)."""
    out = torch.zeros_like(batch["mask"])
    for rows in length_groups(batch, mb):
        part = fn(select_rows(batch, rows))  # (b, t)
        out[rows, : part.shape[1]] = part
    return out


def response_logprobs(model, batch, temperature: float, entropy: bool = False):
    """log pi(a_t|s_t) (B, T) at ``temperature`` and, if asked, the policy's entropy per token (B, T).

    The LM head runs only where a response token is predicted (the last T + 1 positions, less the
    very last), which matters with a large vocabulary.
    """
    T = batch["mask"].shape[1]
    out = model(**{k: batch[k] for k in MODEL_INPUTS}, logits_to_keep=T + 1)
    logprobs = (out.logits[:, :-1].float() / temperature).log_softmax(-1)  # (B, T, V)
    logp = logprobs.gather(-1, batch["targets"].unsqueeze(-1)).squeeze(-1)  # (B, T)
    if not entropy:
        return logp, None
    return logp, -(logprobs.exp() * logprobs).sum(-1).detach()  # (B, T)


def greedy_eval(sampler, problems: list[Problem], max_new_tokens: int) -> float:
    """Fraction of ``problems`` the policy solves at T=0 (the papers' greedy accuracy)."""
    from prmkit.sample import make_solution

    rows = sampler.generate(
        [format_prompt(p.question) for p in problems], 1, temperature=0.0, max_new_tokens=max_new_tokens
    )
    return sum(
        bool(make_solution(p, 0, r[0].text).correct) for p, r in zip(problems, rows, strict=True)
    ) / len(problems)


def iteration_problems(problems: list[Problem], it: int, k: int, seed: int) -> list[Problem]:
    """The ``k`` problems of iteration ``it``: consecutive slices of per-epoch shuffles (same on resume)."""
    out, start = [], it * k
    while len(out) < k:
        epoch, offset = divmod(start + len(out), len(problems))
        order = list(range(len(problems)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.extend(problems[i] for i in order[offset : offset + k - len(out)])
    return out
