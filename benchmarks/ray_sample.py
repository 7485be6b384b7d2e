"""Ray: the same sampling job on 1 and 2 workers of a local cluster (one CPU and one torch thread each).

The job is ``sample_problems`` (the stage itself: one writer appending per chunk) over the world's test
prompts, n samples each at T=0.7 with the calculator, on the ``hf`` backend; the shard size is fixed,
so both runs draw the very same samples (checked). Reported: wall time of each (workers already started
and their models loaded, which is timed apart), the speedup of 2 workers over 1, and the same job in
one process with 2 torch threads for reference. Prints one JSON line.

    python benchmarks/ray_sample.py --model runs/world/generator
Without --model, a small generator is trained for a few hundred steps on the world (cached in runs/).
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

from prmkit.distributed import RayConfig, RayPolicy
from prmkit.sample import SampleConfig, build_policy, sample_problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="generator directory (default: train a small one)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--shard", type=int, default=8, help="prompts per Ray task")
    args = ap.parse_args()
    import ray

    problems, _, model_dir = world_prompts(args.prompts, args.model)
    cfg = SampleConfig(n=args.n, max_new_tokens=160, chunk=args.prompts, batch_size=256)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out: dict = {
        "benchmark": "ray_sample",
        "machine": f"{platform.machine()} 2 CPUs",
        "prompts": len(problems),
    }
    out["n"], out["shard"] = args.n, args.shard
    texts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            t0 = time.perf_counter()
            pol = build_policy(str(model_dir), cfg, RayConfig(workers=workers, shard=args.shard))
            assert isinstance(pol, RayPolicy)
            start = time.perf_counter() - t0
            t0 = time.perf_counter()
            sols = sample_problems(pol, problems, cfg, Path(tmp) / f"w{workers}.jsonl", progress=False)
            wall = time.perf_counter() - t0
            pol.close()
            texts[workers] = [s.text for s in sols]
            out[f"workers_{workers}"] = {
                "s": round(wall, 2),
                "start_s": round(start, 1),
                "samples_per_s": round(len(sols) / wall, 1),
            }
        ray.shutdown()
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        sample_problems(
            build_policy(str(model_dir), cfg), problems, cfg, Path(tmp) / "alone.jsonl", progress=False
        )
        out["one_process_2_threads_s"] = round(time.perf_counter() - t0, 2)
    out["speedup_2_vs_1_workers"] = round(out["workers_1"]["s"] / out["workers_2"]["s"], 2)
    out["same_samples"] = texts[1] == texts[2]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
