"""`prmkit serve` under a bounded load on 127.0.0.1, without and with an API key.

Starts ``prmkit serve`` in a subprocess on a free port (a tiny random PRM made in a temporary
directory, or ``--model``), then ``--clients`` threads, each on one keep-alive connection, send
``--requests`` requests: ``/score`` with 1-4 world solutions or ``/get_reward`` with 1-4 queries,
and a share ``--malformed`` of bad ones (broken JSON, wrong types, missing fields, too many steps, too
long, an oversized body, a wrong aggregation). Then the same load against a server with
``--api-key`` (every request carrying the key), plus requests without it or with a wrong one.

Reports throughput, p50/p99 latency, errors (a valid request not answered 200, or a bad one answered
other than 4xx, or a broken connection: must be 0), the share of malformed requests answered 4xx;
with the key: unauthorised answers to keyed requests (must be 0) and 401s to keyless ones.
Prints one JSON line.

    python benchmarks/serve.py                       # tiny random PRM
    python benchmarks/serve.py --model runs/world/prm
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from prmkit.models import format_prompt
from prmkit.steps import split_steps
from prmkit.world import WorldConfig, generate_split

MAX_BODY = 65_536  # the benchmark server's body limit, so an oversized request is cheap to send


def tiny_prm(out: Path, problems) -> Path:
    from prmkit.models import new_model, train_tokenizer
    from prmkit.reward import StepRewardModel

    tok = train_tokenizer([p.question + "\n" + p.solution for p in problems], vocab_size=400)
    return StepRewardModel(new_model(tok, "test"), tok).save_pretrained(out)


def start_server(model: str, key: str | None, threads: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "prmkit.cli", "serve", "--model", model, "--port", "0", "--log-level", "warning",
           "--threads", str(threads), "--max-body-bytes", str(MAX_BODY), "--max-steps", "32",
           "--max-chars", "4000"]  # fmt: skip
    if key:
        cmd += ["--api-key", key]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # "prmkit serve: MODEL on http://127.0.0.1:PORT (...)"
        if " on http://" in line:
            url = line.split(" on ", 1)[1].split()[0]
            break
    else:
        raise SystemExit(f"prmkit serve exited with {proc.wait()} before listening")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    for _ in range(200):
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, url
        except OSError:
            time.sleep(0.05)
    raise SystemExit("prmkit serve did not answer /health")


def make_requests(problems, n: int, malformed: float, seed: int) -> list[tuple[str, bytes, bool]]:
    """(path, body, solutions, valid) for ``n`` requests, a ``malformed`` share of them bad, in random order."""
    rng = random.Random(seed)
    sols = [(p.question, split_steps(p.solution)) for p in problems]
    bad_bodies = [
        ("/score", b'{"solutions": [{"question": "q", "steps": ['),
        ("/score", b'{"solutions": [{"question": 1, "steps": ["a"]}]}'),
        ("/score", b'{"solutions": [{"question": "q", "steps": "a\\nb"}]}'),
        ("/score", b'{"solutions": [{"steps": ["a"]}]}'),
        ("/score", json.dumps({"solutions": [{"question": "q", "steps": ["1"] * 40}]}).encode()),
        ("/score", json.dumps({"solutions": [{"question": "q" * 5000, "steps": ["1"]}]}).encode()),
        ("/score", json.dumps({"solutions": [{"question": "q", "steps": ["x" * (MAX_BODY + 1)]}]}).encode()),
        ("/score", b'{"solutions": [], "aggregation": "max"}'),
        ("/get_reward", b'{"query": "not a list"}'),
        ("/get_reward", b'{"query": ["no response marker in this query"]}'),
    ]
    out = []
    for i in range(n):
        if i < round(n * malformed):
            path, body = bad_bodies[i % len(bad_bodies)]
            out.append((path, body, 0, False))
            continue
        pick = rng.sample(sols, rng.randint(1, 4))
        if rng.random() < 0.5:
            body = {"solutions": [{"question": q, "steps": s} for q, s in pick]}
            out.append(("/score", json.dumps(body).encode(), len(pick), True))
        else:
            body = {"query": [format_prompt(q) + "\n".join(s) for q, s in pick],
                    "prompts": [format_prompt(q) for q, _ in pick]}  # fmt: skip
            out.append(("/get_reward", json.dumps(body).encode(), len(pick), True))
    rng.shuffle(out)
    return out


def direct_rate(model: str, problems, threads: int, n: int = 256) -> float:
    """Solutions per second of ``score`` called in-process in batches of 64: the server's ceiling."""
    import torch

    from prmkit.reward import load_reward_model

    torch.set_num_threads(threads)
    rm = load_reward_model(model)
    qs, ss = [p.question for p in problems[:n]], [split_steps(p.solution) for p in problems[:n]]
    rm.score(qs[:16], ss[:16])
    t0 = time.perf_counter()
    for i in range(0, n, 64):
        rm.score(qs[i : i + 64], ss[i : i + 64])
    return round(n / (time.perf_counter() - t0), 1)


def run_load(url: str, requests, clients: int, key: str | None) -> dict:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    results: list[tuple[bool, int, float]] = []  # (valid, status or -1 for a broken connection, seconds)
    lock, it = threading.Lock(), iter(requests)

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                break
            path, body, _, valid = job
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=60)
            except OSError:
                status = -1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
            with lock:
                results.append((valid, status, time.perf_counter() - t0))
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(r[2] for r in results)
    bad = [s for v, s, _ in results if not v]
    errors = sum(1 for v, s, _ in results if (v and s != 200) or (not v and not 400 <= s < 500))
    return {
        "throughput_rps": round(len(results) / wall, 1),
        "solutions_per_s": round(sum(r[2] for r in requests) / wall, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        "errors": errors,
        "malformed": len(bad),
        "malformed_4xx_share": round(sum(400 <= s < 500 for s in bad) / max(1, len(bad)), 4),
        "status_401": sum(s == 401 for _, s, _ in results),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a reward model directory (default: a tiny random PRM)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--malformed", type=float, default=0.1)
    ap.add_argument(
        "--threads", type=int, default=1, help="the server's torch threads (1: no oversubscription)"
    )
    ap.add_argument("--keyless", type=int, default=20, help="requests without (or with a wrong) key")
    args = ap.parse_args()
    problems = generate_split(WorldConfig(n_train=300), "train")
    requests = make_requests(problems, args.requests, args.malformed, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(tiny_prm(Path(tmp) / "prm", problems))
        out: dict = {
            "requests": args.requests,
            "clients": args.clients,
            "model": args.model or "tiny random PRM",
            "load_avg_1m": round(os.getloadavg()[0], 2),  # other work on the machine slows every number
            "threads": args.threads,
            "direct_solutions_per_s": direct_rate(model, problems, args.threads),
        }
        for key in (None, "bench-key-0123456789"):
            proc, url = start_server(model, key, args.threads)
            try:
                run_load(url, requests[:50], args.clients, key)  # warm-up
                res = run_load(url, requests, args.clients, key)
                if key:
                    valid = [r for r in requests if r[3]]
                    keyless = run_load(url, valid[: args.keyless // 2], 2, None)
                    wrong = run_load(url, valid[: args.keyless - args.keyless // 2], 2, "wrong-key")
                    res["unauthorised_with_key"] = res.pop("status_401")
                    res["keyless_401"] = f"{keyless['status_401'] + wrong['status_401']}/{args.keyless}"
                else:
                    res.pop("status_401")
                out["with_key" if key else "no_key"] = res
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
