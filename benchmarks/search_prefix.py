"""Does step-level beam search reuse its prefixes on the ``vllm`` backend? Prefix cache on against off.

Beam search sends every kept beam back to the policy once per step, prompt + steps so far; the ``hf``
backend prefills that prefix again each time (its key/value cache lives for one ``generate`` call),
while vLLM's prefix caching finds the blocks the previous step computed. This runs the same beam search
(same seed, so the same beams) on one engine with prefix caching and one without, and reports per run
the wall time, the prompt tokens the engine was asked to prefill and how many of them came from the
cache (vLLM's ``prefix_cache_queries`` / ``prefix_cache_hits`` counters). Prints one JSON line.

    python benchmarks/search_prefix.py --run-dir runs/world --problems 20      # in .venv-vllm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prmkit.config import load_recipe, stage_config
from prmkit.io import read_jsonl
from prmkit.policy.vllm import VLLMPolicy
from prmkit.reward import load_reward_model
from prmkit.search import STRATEGIES
from prmkit.steps import separator
from prmkit.types import Problem


def counters(llm) -> dict[str, float]:
    """vLLM's prefix-cache counters (token counts), summed over engines."""
    out: dict[str, float] = {}
    for m in llm.get_metrics():
        if m.name in ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits"):
            out[m.name.split(":")[1]] = out.get(m.name.split(":")[1], 0.0) + m.value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="runs/world", help="a demo run: generator/, prm/, world/test.jsonl")
    ap.add_argument("--recipe", default="recipes/world.yaml", help="its search: stage is the starting point")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="search.field=value")
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--block-size",
        type=int,
        default=None,
        help="the engine's KV block (default: VLLMPolicy's, 32 tokens on CPU)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = stage_config("search", load_recipe(args.recipe, ["search.strategy=beam_search", *args.sets]))
    run = Path(args.run_dir)
    problems = read_jsonl(run / "world" / "test.jsonl", Problem)[: args.problems]
    prm = load_reward_model(str(run / "prm"))
    rows = []
    for caching in (True, False):
        policy = VLLMPolicy(
            run / "generator", max_new_tokens=cfg.max_new_tokens, stop=(separator(problems[0].kind),),
            enable_prefix_caching=caching, disable_log_stats=False, seed=cfg.seed,
            **({"block_size": args.block_size} if args.block_size else {}),
        )  # fmt: skip
        try:
            before = counters(policy.llm)
            t0 = time.perf_counter()
            results = STRATEGIES[cfg.strategy](problems, cfg, policy, prm, seed=cfg.seed)
            wall = time.perf_counter() - t0
            after = counters(policy.llm)
        finally:
            policy.close()
        queried = after.get("prefix_cache_queries", 0.0) - before.get("prefix_cache_queries", 0.0)
        hits = after.get("prefix_cache_hits", 0.0) - before.get("prefix_cache_hits", 0.0)
        rows.append({
            "prefix_caching": caching, "wall_s": round(wall, 2),
            "sampled_tokens": sum(r.tokens for r in results), "prompt_tokens_queried": int(queried),
            "prompt_tokens_from_cache": int(hits), "hit_rate": round(hits / queried, 3) if queried else None,
            "accuracy": sum(r.correct for r in results) / len(results),
        })  # fmt: skip
    print(json.dumps({
        "problems": len(problems), "strategy": cfg.strategy, "n": cfg.n, "beam_width": cfg.beam_width,
        "block_size": args.block_size,
        "rows": rows, "speedup_from_cache": round(rows[1]["wall_s"] / rows[0]["wall_s"], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
