"""The ``hf`` backend: batched, KV-cached sampling from any Hugging Face causal LM, with a calculator.

Each batch of prompts is encoded once (left-padded prefill); the key/value cache is then expanded
to ``n`` rows per prompt, so n completions of a prompt or of a solution prefix share one prefill.
Decoding is one forward pass per token for all live rows; finished rows are dropped from the batch
(and from the cache) as they accumulate.

Calculator sampling (Cobbe et al.): when a row has written ``<<expr=``, the exact result and ``>>``
are forced as that row's next tokens inside the batched loop, computed by ``prmkit.calculator``'s
safe parser (never ``eval``). An expression the calculator rejects leaves the row to write on.

We write the decoding loop ourselves rather than call ``model.generate``: ``generate`` expands
``num_return_sequences`` before prefill (n times the prefill work) and has no per-row forced-token
hook that composes with its cache; the loop here is short and does exactly these two things.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prmkit.calculator import MAX_EXPR_CHARS, calculate
from prmkit.policy.base import Completion, Policy, register_policy

CALC_OPEN, CALC_CLOSE = "<<", ">>"


class _Calculator:
    """Per-row state for forcing calculator results; cheap unless a row just wrote an ``=``."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pieces: dict[int, str] = {}

    def piece(self, token_id: int) -> str:
        p = self.pieces.get(token_id)
        if p is None:
            p = self.tokenizer.decode([token_id])
            self.pieces[token_id] = p
        return p

    def forced_ids(self, text: str) -> list[int]:
        """Tokens to force after ``text`` (which ends in a token containing '='), or []."""
        start = text.rfind(CALC_OPEN)
        if start < 0 or CALC_CLOSE in text[start:]:
            return []
        segment = text[start + 2 :]
        eq = segment.find("=")
        if eq != len(segment) - 1:  # the model already wrote past the '=' (or an earlier one)
            return []
        result = calculate(segment[:eq])
        if result is None:
            return []
        return self.tokenizer.encode(result + CALC_CLOSE, add_special_tokens=False)


def _sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token per row from logits (R, V): greedy at T=0, else temperature + nucleus sampling; and
    each token's log-probability under the tempered distribution (before the nucleus cut; at T=0 the
    model's own), read from the distribution the draw already computed."""
    if temperature <= 0:
        tokens = logits.argmax(dim=-1)
        lf = logits.float()
        return tokens, lf.gather(-1, tokens[:, None]).squeeze(-1) - lf.logsumexp(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (R, V)
    tempered = probs
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        cum = sorted_p.cumsum(dim=-1)
        sorted_p[(cum - sorted_p) > top_p] = 0.0  # keep the smallest set whose mass reaches top_p
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    # inverse-CDF draw: one uniform per row and a binary search, several times faster than
    # torch.multinomial on CPU at these sizes
    cdf = probs.cumsum(dim=-1)  # (R, V)
    u = torch.rand(cdf.shape[0], 1, generator=gen, device=cdf.device) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)
    return tokens, tempered.gather(-1, tokens[:, None]).squeeze(-1).log()


class HFPolicy(Policy):
    """Sample from a Hugging Face causal LM; see the module docstring."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        calculator: bool = True,
        batch_size: int = 64,
        max_new_tokens: int = 256,
        stop: tuple[str, ...] = (),
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        revision: str | None = None,
    ):
        from prmkit.models import load_causal_lm, load_tokenizer, model_source

        self.source: dict[str, Any] = {}
        if isinstance(model, str | Path):  # code shipped with the model runs only with trust_remote_code
            name, hub = model, {"trust_remote_code": trust_remote_code, "revision": revision}
            model = load_causal_lm(name, dtype=dtype, **hub)
            tokenizer = tokenizer or load_tokenizer(name, **hub)
            self.source = model_source(name, model, revision)
        if tokenizer is None:
            raise ValueError("HFPolicy needs a tokenizer when given a model object")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = torch.device(device)
        self.calculator = _Calculator(tokenizer) if calculator else None
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.stop = tuple(stop)
        self.eos_ids = {tokenizer.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.eos_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos]) - {None}

    def generate(
        self,
        prompts: list[str],
        n: int = 1,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> list[list[Completion]]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        max_new = max_new_tokens or self.max_new_tokens
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed)
        # Prompts of similar length share a batch (less padding); n rows per prompt, in chunks of n.
        per_batch = max(1, self.batch_size // n)
        n_chunk = min(n, self.batch_size)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[Completion]] = [[] for _ in prompts]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts) * n, desc="sampling", unit="sample")
        for b in range(0, len(order), per_batch):
            idx = order[b : b + per_batch]
            done = 0
            while done < n:
                k = min(n_chunk, n - done)
                rows = self._generate_batch([prompts[i] for i in idx], k, temperature, top_p, max_new, gen)
                for j, i in enumerate(idx):
                    out[i].extend(rows[j * k : (j + 1) * k])
                done += k
                if bar is not None:
                    bar.update(k * len(idx))
        if bar is not None:
            bar.close()
        return out

    @torch.inference_mode()
    def _generate_batch(
        self,
        prompts: list[str],
        n: int,
        temperature: float,
        top_p: float,
        max_new: int,
        gen: torch.Generator | None,
    ) -> list[Completion]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True)
        ids = enc["input_ids"].to(self.device)  # (B, T)
        mask = enc["attention_mask"].to(self.device)  # (B, T)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        cache = out.past_key_values
        logits = out.logits[:, -1, :]  # (B, V)
        if n > 1:  # share the prefill: expand the cache, not the prompt
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)
            mask = mask.repeat_interleave(n, dim=0)
        rows = logits.shape[0]
        next_pos = mask.sum(-1)  # (R,) position of the next token
        tokens: list[list[int]] = [[] for _ in range(rows)]
        calc, stop = self.calculator, self.stop
        # A row's text starts with its prompt's tail, so a prefix ending in "<<expr=" is completed too.
        texts = [prompts[r // n][-2 * MAX_EXPR_CHARS :] for r in range(rows)]
        forced: list[list[int]] = [[] for _ in range(rows)]
        if calc is not None:
            forced = [calc.forced_ids(t) if t.endswith("=") else [] for t in texts]
        was_forced: list[list[bool]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        finish = ["length"] * rows
        active = list(range(rows))
        for step in range(max_new):
            drawn, drawn_lp = _sample_next(logits, temperature, top_p, gen)
            nxt, lp = drawn.tolist(), drawn_lp.tolist()
            keep: list[int] = []
            for j, r in enumerate(active):
                by_calc = bool(forced[r])
                if by_calc:
                    nxt[j] = forced[r].pop(0)
                t = nxt[j]
                if t in self.eos_ids:
                    finish[r] = "eos"
                    continue
                tokens[r].append(t)
                was_forced[r].append(by_calc)
                logprobs[r].append(float("nan") if by_calc else lp[j])
                if calc is not None or stop:
                    piece = calc.piece(t) if calc is not None else self.tokenizer.decode([t])
                    texts[r] = (texts[r] + piece)[-2 * MAX_EXPR_CHARS :]
                    if calc is not None and "=" in piece and not forced[r]:
                        forced[r] = calc.forced_ids(texts[r])
                    if stop and any(texts[r].endswith(s) for s in stop):
                        finish[r] = "stop"
                        continue
                keep.append(j)
            if len(keep) < len(active):
                if not keep:
                    break
                keep_t = torch.tensor(keep, device=self.device)
                active = [active[j] for j in keep]
                nxt = [nxt[j] for j in keep]
                mask, next_pos = mask[keep_t], next_pos[keep_t]
                cache.batch_select_indices(keep_t)
            if step == max_new - 1:
                break
            step_ids = torch.tensor(nxt, device=self.device).unsqueeze(-1)  # (R, 1)
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
            out = self.model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=next_pos.unsqueeze(-1),
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits, next_pos = out.past_key_values, out.logits[:, -1, :], next_pos + 1
        results = []
        for r in range(rows):
            text = self.tokenizer.decode(tokens[r], skip_special_tokens=True)
            for s in stop:
                if finish[r] == "stop" and text.endswith(s):
                    text = text[: -len(s)]
            results.append(
                Completion(
                    text=text,
                    n_tokens=len(tokens[r]),
                    finish_reason=finish[r],
                    token_ids=tuple(tokens[r]),
                    forced=tuple(was_forced[r]),
                    logprobs=tuple(logprobs[r]),
                )
            )
        return results


@register_policy("hf")
def _make_hf(model: str, **kwargs: Any) -> HFPolicy:
    return HFPolicy(model, **kwargs)
