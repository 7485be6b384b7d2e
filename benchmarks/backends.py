"""Sampling backends side by side: ``hf`` vs ``vllm`` on the same prompts and model, in one run.

  (a) sampling: the same world test prompts, n samples each at T=0.7 with the calculator, on both
      backends: samples/s and tokens/s (best of --repeats), and greedy text agreement (n=1, T=0);
  (b) annotation: the same sampled solutions labelled per_step with N completions per prefix, by ``hf``,
      by ``vllm`` with prefix caching and by ``vllm`` without it: generated tokens/s of each.
The engine's start (model load, cache allocation) is timed apart and left out of the rates.
Prints one JSON line.

    python benchmarks/backends.py --model runs/world/generator      # needs vLLM (make setup-vllm)
Without --model, a small generator is trained for a few hundred steps on the world (cached in runs/, shared
with benchmarks/sample.py). vLLM's CPU attention needs a head size of 32 or more ("small" has 32).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from _world import world_prompts

from prmkit.annotate import AnnotateConfig, annotate
from prmkit.policy.hf import HFPolicy
from prmkit.sample import make_solution


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def tokens(rows) -> int:
    return sum(c.n_tokens for r in rows for c in r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="generator directory (default: train a small one)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=16, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=256, help="hf backend rows per batch")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--solutions", type=int, default=32, help="solutions annotated in (b)")
    ap.add_argument("--annotate-n", type=int, default=8)
    args = ap.parse_args()
    from prmkit.policy.vllm import VLLMPolicy

    problems, prompts, model_dir = world_prompts(args.prompts, args.model)
    common = dict(temperature=0.7, max_new_tokens=args.max_new_tokens, seed=0)

    hf = HFPolicy(
        str(model_dir), batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, dtype="float32"
    )
    vllm_pol, t_start = timed(
        lambda: VLLMPolicy(model_dir, max_new_tokens=args.max_new_tokens, dtype="float32", enforce_eager=True)
    )
    out: dict = {
        "benchmark": "backends",
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "model": str(model_dir),
        "parameters": sum(p.numel() for p in hf.model.parameters()),
        "prompts": len(prompts),
        "n": args.n,
        "vllm_engine_start_s": round(t_start, 1),
    }
    vllm_pol.generate(prompts[:4], n=2, **common)  # warm-up (first-call allocations)
    hf.generate(prompts[:4], n=2, **common)
    for name, pol in (("hf", hf), ("vllm", vllm_pol)):
        best, rows = float("inf"), None
        for _ in range(args.repeats):
            rows, t = timed(lambda pol=pol: pol.generate(prompts, n=args.n, **common))
            best = min(best, t)
        out[name] = {
            "s": round(best, 2),
            "samples_per_s": round(len(prompts) * args.n / best, 1),
            "tokens_per_s": round(tokens(rows) / best, 1),
            "tokens": tokens(rows),
            "accuracy": round(
                sum(
                    make_solution(p, 0, c.text).correct
                    for p, r in zip(problems, rows, strict=True)
                    for c in r
                )
                / (len(prompts) * args.n),
                3,
            ),
        }
    out["vllm_vs_hf_samples_per_s"] = round(out["vllm"]["samples_per_s"] / out["hf"]["samples_per_s"], 2)
    g_hf = hf.generate(prompts, temperature=0.0)
    g_vllm = vllm_pol.generate(prompts, temperature=0.0)
    out["greedy_text_agreement"] = round(
        sum(a[0].text == b[0].text for a, b in zip(g_hf, g_vllm, strict=True)) / len(prompts), 3
    )

    # (b) annotation: the same solutions (hf samples, right and wrong), per_step, N per prefix
    pool = hf.generate(prompts, n=4, **common)
    sols = [make_solution(p, k, c.text) for p, r in zip(problems, pool, strict=True) for k, c in enumerate(r)]
    sols = [s for s in sols if len(s.steps) >= 2][: args.solutions]
    cfg = AnnotateConfig(n=args.annotate_n, max_new_tokens=args.max_new_tokens, chunk=len(sols))
    out["annotate"] = {"solutions": len(sols), "n": args.annotate_n}

    soft: dict[str, list[float]] = {}

    def run_annotation(name: str, pol) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            labels, t = timed(
                lambda: annotate(pol, sols, problems, cfg, Path(tmp) / "l.jsonl", progress=False)
            )
        n_tok = sum(r.meta.get("tokens", 0) for r in labels)
        out["annotate"][name] = {"s": round(t, 2), "tokens": n_tok, "tokens_per_s": round(n_tok / t, 1)}
        soft[name] = [x for r in labels for x in r.soft[:-1]]  # the sampled steps (the last is graded)

    run_annotation("hf", hf)
    run_annotation("vllm_prefix_cache", vllm_pol)
    vllm_pol.close()
    nocache = VLLMPolicy(
        model_dir,
        max_new_tokens=args.max_new_tokens,
        dtype="float32",
        enforce_eager=True,
        enable_prefix_caching=False,
    )
    run_annotation("vllm_no_prefix_cache", nocache)
    nocache.close()
    a = out["annotate"]
    # the labels in distribution: mean soft estimate per backend, and how often the hard labels agree
    a["mean_soft_estimate"] = {k: round(sum(v) / len(v), 3) for k, v in soft.items()}
    a["hard_label_agreement_hf_vs_vllm"] = round(
        sum((x > 0) == (y > 0) for x, y in zip(soft["hf"], soft["vllm_prefix_cache"], strict=True))
        / len(soft["hf"]),
        3,
    )
    a["prefix_cache_speedup"] = round(
        a["vllm_prefix_cache"]["tokens_per_s"] / a["vllm_no_prefix_cache"]["tokens_per_s"], 2
    )
    print(json.dumps(out))


if __name__ == "__main__":  # vLLM starts its engine core with spawn: build it only in the main process
    main()
