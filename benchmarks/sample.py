"""Sampling speed: calculator overhead, and the batched sampler vs the GSM8K reference loop.

On the same 64 world test prompts and the same generator, in one run:
  (a) batched calculator sampling vs batched plain sampling (T=0.7, same seed): time ratio;
  (b) batched calculator sampling (n samples per prompt, as the demo draws its pools) vs the GSM8K
      reference repository's approach, reimplemented here only: batch 1, one token per
      ``model.generate`` call, the whole text re-encoded every step, no KV cache, calculator applied
      when the last token holds '='. The baseline runs on the first ``--baseline-prompts`` prompts and
      is compared per sample; the greedy one-sample-per-prompt batch is reported beside it.
Prints one JSON line.

    python benchmarks/sample.py --model runs/world/generator
Without --model, a small generator is trained for a few hundred steps on the world (cached in runs/).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from _world import world_prompts

from prmkit.calculator import calculate
from prmkit.models import load_causal_lm, load_tokenizer
from prmkit.policy.hf import HFPolicy


def reference_loop(model, tok, prompt: str, max_new: int) -> tuple[str, int]:
    """The GSM8K repository's calculator sampler: re-encode and generate one token at a time."""
    text, n = prompt, 0
    for _ in range(max_new):
        enc = tok([text], return_tensors="pt")
        out = model.generate(
            **enc, max_new_tokens=1, do_sample=False, use_cache=False, pad_token_id=tok.pad_token_id
        )
        last = out[0, -1].item()
        n += 1
        if last == tok.eos_token_id:
            break
        text = text + tok.decode([last])
        if "=" in tok.decode([last]):
            start = text.rfind("<<")
            if start >= 0 and ">>" not in text[start:]:
                result = calculate(text[start + 2 : -1])
                if result is not None:
                    text += result + ">>"
    return text[len(prompt) :], n


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="generator directory (default: train a small one)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--baseline-prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=16, help="samples per prompt (the demo's pool size)")
    args = ap.parse_args()
    torch.manual_seed(0)

    _, prompts, model_dir = world_prompts(args.prompts, args.model)
    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir, dtype="float32")

    def batched(calc: bool, temperature: float, ps=prompts, n=args.n):
        pol = HFPolicy(
            model, tok, calculator=calc, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens
        )
        return pol.generate(ps, n=n, temperature=temperature, seed=0)

    batched(True, 0.7, prompts[:8])  # warm-up
    # alternate the two and keep each one's best of --repeats: this machine is noisy
    t_calc = t_plain = float("inf")
    for _ in range(args.repeats):
        calc_out, t = timed(lambda: batched(True, 0.7))
        t_calc = min(t_calc, t)
        plain_out, t = timed(lambda: batched(False, 0.7))
        t_plain = min(t_plain, t)
    sampled_s_per_sample = t_calc / (len(prompts) * args.n)
    greedy_out, t_greedy = timed(lambda: batched(True, 0.0, n=1))
    k = args.baseline_prompts
    base_out, t_base = timed(
        lambda: [reference_loop(model, tok, p, args.max_new_tokens) for p in prompts[:k]]
    )

    def tokens(rows):
        return sum(c.n_tokens for r in rows for c in r)

    per_sample_base = t_base / k
    per_sample_greedy = t_greedy / len(prompts)
    agree = sum(b[0] == g[0].text for b, g in zip(base_out, greedy_out, strict=False)) / k
    print(
        json.dumps(
            {
                "benchmark": "sample",
                "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
                "prompts": len(prompts),
                "calc_vs_plain_time_ratio": round(t_calc / t_plain, 3),
                "calc_s": round(t_calc, 2),
                "plain_s": round(t_plain, 2),
                "calc_tokens": tokens(calc_out),
                "plain_tokens": tokens(plain_out),
                "calc_vs_plain_per_token_ratio": round(
                    (t_calc / tokens(calc_out)) / (t_plain / tokens(plain_out)), 3
                ),
                "samples_per_prompt": args.n,
                "batched_vs_reference_speedup": round(per_sample_base / sampled_s_per_sample, 1),
                "batched_s_per_sample": round(sampled_s_per_sample, 4),
                "greedy_batch1x64_vs_reference_speedup": round(per_sample_base / per_sample_greedy, 1),
                "batched_greedy_s_per_sample": round(per_sample_greedy, 4),
                "reference_s_per_sample": round(per_sample_base, 3),
                "reference_prompts": k,
                "reference_tokens": sum(n for _, n in base_out),
                "batched_greedy_tokens_same_prompts": sum(g[0].n_tokens for g in greedy_out[:k]),
                "greedy_text_agreement": agree,
            }
        )
    )


if __name__ == "__main__":
    main()
