"""The ``openai`` backend against an in-process OpenAI-compatible server on 127.0.0.1: request fields,
calculator sampling, retries, bounded concurrency, clear errors; and the tiny hf model served through it."""

import json
import threading
import time

import pytest

pytest.importorskip("openai")
pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from prmkit.models import format_prompt, new_model  # noqa: E402
from prmkit.policy import make_policy  # noqa: E402
from prmkit.policy.hf import HFPolicy  # noqa: E402
from prmkit.policy.openai import OpenAIPolicy, calculator_suffix  # noqa: E402
from prmkit.serve import bind, make_server  # noqa: E402

SCRIPT = "Tom buys 3 + 4 = <<3+4=8>>8 pens.\nThen 8 * 2 = <<8*2=17>>17.\n#### 17"
PROMPT = format_prompt("Tom has pens.")


class Fake:
    """A fake completions server: the model writes SCRIPT one character per token (or asks ``engine``)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail: list[int] = []  # statuses to answer before serving
        self.report_stop = True
        self.engine = None
        self.inflight = self.max_inflight = 0
        self.delay = 0.0
        self.lock = threading.Lock()

    def complete(self, body: dict) -> dict:
        if self.engine is not None:
            return self.engine(body)
        prompt, stops = body["prompt"], body.get("stop") or []
        text = SCRIPT[len(prompt) - len(PROMPT) :]  # continue the script where the text stands
        finish, matched = "stop", None
        cuts = [(text.find(s), s) for s in stops if s in text]
        if cuts:
            at, matched = min(cuts)
            text = text[:at]
        if len(text) > body["max_tokens"]:
            text, finish, matched = text[: body["max_tokens"]], "length", None
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        if self.report_stop:
            choice["stop_reason"] = matched
        n = body.get("n", 1)
        used = (len(text) + (matched is not None)) * n
        return {
            "id": "c", "object": "text_completion", "created": 0, "model": body["model"],
            "choices": [choice | {"index": i} for i in range(n)],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": used, "total_tokens": len(prompt) + used},
        }  # fmt: skip


def fake_app(fake: Fake) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "tiny", "object": "model", "created": 0, "owned_by": "me"}]}

    @app.post("/v1/completions")
    def completions(body: dict):
        with fake.lock:
            fake.requests.append(body)
            fake.inflight += 1
            fake.max_inflight = max(fake.max_inflight, fake.inflight)
            status = fake.fail.pop(0) if fake.fail else None
        try:
            time.sleep(fake.delay)
            if status is not None:
                return JSONResponse({"error": {"message": "try later", "code": status}}, status)
            if body.get("model") != "tiny":
                return JSONResponse(
                    {"error": {"message": f"The model `{body.get('model')}` does not exist."}}, 404
                )
            return fake.complete(body)
        finally:
            with fake.lock:
                fake.inflight -= 1

    return app


@pytest.fixture(scope="module")
def server():
    fake = Fake()
    sock = bind("127.0.0.1", 0)
    srv = make_server(fake_app(fake), log_level="warning")
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.02)
    yield fake, f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fake(server):
    fake, _ = server
    fake.requests.clear()
    fake.fail, fake.report_stop, fake.engine, fake.delay, fake.max_inflight = [], True, None, 0.0, 0
    return fake


def test_calculator_suffix():
    assert calculator_suffix("x = <<48/2") == "24>>"
    assert calculator_suffix("x = <<48/2=24>>24 and y ") is None  # no open expression
    assert calculator_suffix("<<2**99999") is None  # the safe calculator refuses


def test_plain_sampling_sends_the_request_fields(server, fake):
    _, url = server
    pol = OpenAIPolicy("tiny", base_url=url, calculator=False, max_new_tokens=500)
    out = pol.generate([PROMPT], n=3, temperature=0.5, top_p=0.9, seed=7)
    assert [c.text for c in out[0]] == [SCRIPT] * 3 and out[0][0].finish_reason == "eos"
    assert out[0][0].n_tokens == len(SCRIPT)
    body = fake.requests[0]
    assert (body["n"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
        3,
        0.5,
        0.9,
        500,
        7,
    )
    assert body.get("stop") is None
    cut = OpenAIPolicy("tiny", base_url=url, calculator=False, stop=("####",)).generate(
        [PROMPT], max_new_tokens=500
    )
    assert cut[0][0].text == SCRIPT.split("####")[0] and cut[0][0].finish_reason == "stop"
    short = pol.generate([PROMPT], max_new_tokens=5)[0][0]
    assert (short.text, short.finish_reason, short.n_tokens) == (SCRIPT[:5], "length", 5)


def test_calculator_results_are_forced(server, fake):
    _, url = server
    pol = OpenAIPolicy("tiny", base_url=url, calculator=True, max_new_tokens=500)
    out = pol.generate([PROMPT], n=2, seed=1)[0]
    want = "Tom buys 3 + 4 = <<3+4=7>>8 pens.\nThen 8 * 2 = <<8*2=16>>17.\n#### 17"
    assert [c.text for c in out] == [want, want] and out[0].finish_reason == "eos"
    assert fake.requests[0]["stop"] == ["="] and fake.requests[0]["n"] == 2
    assert all(r["n"] == 1 for r in fake.requests[1:])  # each sample continues alone
    assert len({r["seed"] for r in fake.requests[1:]}) == len(fake.requests) - 1  # a fresh seed per round
    # a user stop string is applied on the returned text; the token budget holds across rounds
    stopped = OpenAIPolicy("tiny", base_url=url, stop=("\n",)).generate([PROMPT], max_new_tokens=500)[0][0]
    assert stopped.text == "Tom buys 3 + 4 = <<3+4=7>>8 pens." and stopped.finish_reason == "stop"
    capped = pol.generate([PROMPT], max_new_tokens=20)[0][0]
    assert capped.finish_reason == "length" and capped.n_tokens <= 20


def test_calculator_needs_the_matched_stop(server, fake):
    _, url = server
    fake.report_stop = False
    with pytest.raises(ValueError, match="stop_reason.*calculator=false"):
        OpenAIPolicy("tiny", base_url=url).generate([PROMPT])
    out = OpenAIPolicy("tiny", base_url=url, calculator=False).generate([PROMPT], max_new_tokens=500)
    assert out[0][0].text == SCRIPT


def test_retries_on_429_and_5xx(server, fake):
    _, url = server
    fake.fail = [429, 503]
    out = OpenAIPolicy("tiny", base_url=url, calculator=False).generate([PROMPT], max_new_tokens=500)
    assert out[0][0].text == SCRIPT and len(fake.requests) == 3
    fake.fail = [500] * 3
    with pytest.raises(ValueError, match="HTTP 500"):
        OpenAIPolicy("tiny", base_url=url, calculator=False, max_retries=2).generate([PROMPT])


def test_bounded_concurrency(server, fake):
    _, url = server
    fake.delay = 0.05
    pol = OpenAIPolicy("tiny", base_url=url, calculator=False, concurrency=2)
    out = pol.generate([PROMPT] * 6, max_new_tokens=500)
    assert len(out) == 6 and fake.max_inflight == 2


def test_clear_errors_for_wrong_model_or_url(server, fake):
    _, url = server
    with pytest.raises(ValueError, match=r"no model 'big'; it serves 'tiny'"):
        OpenAIPolicy("big", base_url=url)
    with pytest.raises(ValueError, match=r"model 'big' or the completions route not found \(The model `big`"):
        OpenAIPolicy("big", base_url=url, check=False).generate([PROMPT])
    closed = bind("127.0.0.1", 0)
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ValueError, match="cannot reach the server"):
        OpenAIPolicy("tiny", base_url=f"http://127.0.0.1:{port}/v1")


def test_registry_and_environment(server, fake, monkeypatch):
    _, url = server
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    pol = make_policy("openai", "tiny", calculator=False, batch_size=64, max_new_tokens=500)
    assert isinstance(pol, OpenAIPolicy) and pol.base_url == url
    assert pol.sample([PROMPT], n=2) == [[SCRIPT, SCRIPT]]


@pytest.mark.slow
def test_tiny_hf_model_served_through_the_api(server, fake, world):
    """The fake server samples with the hf backend; the openai backend gives back the same texts."""
    _, url = server
    problems, tok = world
    hf = HFPolicy(new_model(tok, "test", seed=3), tok, calculator=False)

    def engine(body):
        comps = hf.generate([body["prompt"]], n=body["n"], temperature=body["temperature"],
                            max_new_tokens=body["max_tokens"], seed=body.get("seed"))[0]  # fmt: skip
        return {
            "id": "c", "object": "text_completion", "created": 0, "model": "tiny",
            "choices": [{"index": i, "text": c.text, "logprobs": None, "stop_reason": None,
                         "finish_reason": "length" if c.finish_reason == "length" else "stop"}
                        for i, c in enumerate(comps)],
            "usage": {"prompt_tokens": 1, "completion_tokens": sum(c.n_tokens for c in comps), "total_tokens": 1},
        }  # fmt: skip

    fake.engine = engine
    prompts = [format_prompt(p.question) for p in problems[:3]]
    direct = hf.generate(prompts, temperature=0.0, max_new_tokens=12)
    got = OpenAIPolicy("tiny", base_url=url, calculator=False).generate(
        prompts, temperature=0.0, max_new_tokens=12
    )
    assert [[c.text for c in r] for r in got] == [[c.text for c in r] for r in direct]
    assert [r[0].n_tokens for r in got] == [r[0].n_tokens for r in direct]


def test_cli_sample_through_the_openai_backend(server, fake, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from prmkit.cli import app

    _, url = server
    probs = tmp_path / "p.jsonl"
    probs.write_text('{"question": "Tom has pens.", "answer": "17"}\n')
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    args = [
        "sample",
        "--model",
        "tiny",
        "--problems",
        str(probs),
        "--source",
        "jsonl",
        "--out",
        str(tmp_path / "s.jsonl"),
    ]
    sets = ["--set", "sample.backend=openai", "--set", "sample.n=2", "--set", "sample.max_new_tokens=200"]
    r = CliRunner().invoke(app, args + sets)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [row["text"] for row in rows] == [
        "Tom buys 3 + 4 = <<3+4=7>>8 pens.\nThen 8 * 2 = <<8*2=16>>17.\n#### 17"
    ] * 2
    assert all(row["correct"] for row in rows)
    r = CliRunner().invoke(app, [*args, "--set", "sample.backend=openai", "--model", "big"])
    assert r.exit_code == 2 and "no model 'big'" in r.output
