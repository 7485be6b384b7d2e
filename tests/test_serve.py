"""`prmkit serve`: routes, OpenRLHF's protocol, batching, every class of bad request, the API key, the
limits, the timeout; and one real uvicorn server on 127.0.0.1 under concurrent clients."""

import asyncio
import importlib.util
import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from prmkit.models import STEP_TAG, format_prompt, new_model  # noqa: E402
from prmkit.reward import StepRewardModel, ValueModel, load_reward_model  # noqa: E402
from prmkit.serve import ApiError, Batcher, ServeConfig, _Job, bind, create_app, make_server, split_query  # noqa: E402
from prmkit.steps import split_steps  # noqa: E402
from prmkit.verify import aggregate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prm(world):
    _, tok = world
    return StepRewardModel(new_model(tok, "test", seed=1), tok)


@pytest.fixture(scope="module")
def pool(world):
    problems, _ = world
    return [(p.question, split_steps(p.solution)) for p in problems[:6]]


def client(scorer, **kw) -> TestClient:
    return TestClient(create_app(scorer, ServeConfig(**kw)))


def close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


class FakeScorer:
    """Scores every step 0.5, optionally after a delay or with an error; records its calls."""

    max_length = 10_000

    def __init__(self, delay: float = 0.0, error: Exception | None = None):
        self.delay, self.error, self.calls = delay, error, []

    def score(self, questions, steps, batch_size=16):
        self.calls.append(len(questions))
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [[0.5] * len(s) for s in steps]


def test_score_route_equals_direct_scores(prm, pool):
    qs, ss = [q for q, _ in pool], [s for _, s in pool]
    direct = prm.score(qs, ss)
    body = {"solutions": [{"question": q, "steps": s} for q, s in pool[:3]]}
    body["solutions"] += [{"question": q, "solution": "\n".join(s)} for q, s in pool[3:]]
    with client(prm) as c:
        r = c.post("/score", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["aggregation"] == "min"
        for res, d in zip(out["results"], direct, strict=True):
            assert close(res["step_scores"], d)
            assert res["score"] == pytest.approx(min(d), abs=1e-5)
        r = c.post("/score", json={"solutions": body["solutions"][:2], "aggregation": "prod"})
        assert [x["score"] for x in r.json()["results"]] == pytest.approx(
            [aggregate(d, "prod") for d in direct[:2]]
        )
        r = c.post("/score", json=body["solutions"][:1])  # a bare list is the solutions
        assert r.status_code == 200 and len(r.json()["results"]) == 1
        r = c.post("/score", json={"solutions": [{"question": "q", "steps": []}]})  # no step: score 0
        assert r.json()["results"] == [{"step_scores": [], "score": 0.0}]
        assert c.get("/health").json() == {"status": "ok"}


def test_value_model_is_served(world, pool):
    _, tok = world
    vm = ValueModel(new_model(tok, "test", seed=2), tok)
    direct = vm.score([pool[0][0]], [pool[0][1]])[0]
    with client(vm, aggregation="last") as c:
        res = c.post("/score", json={"solutions": [{"question": pool[0][0], "steps": pool[0][1]}]}).json()
    assert close(res["results"][0]["step_scores"], direct) and res["results"][0]["score"] == pytest.approx(
        direct[-1]
    )


def test_split_query():
    cfg = ServeConfig()
    prompt = format_prompt("Tom has 3 apples.")
    assert split_query(prompt + "3+4=7\n#### 7<|im_end|>\n<|endoftext|>", prompt, cfg) == (
        "Tom has 3 apples.",
        ["3+4=7", "#### 7"],
    )
    # few-shot: the last question; a prompt the query does not start with falls back to the marker
    few = "Question: a?\nAnswer:\n#### 1\n\n" + prompt
    assert split_query(few + "#### 7", "other", cfg) == ("Tom has 3 apples.", ["#### 7"])
    chat = ServeConfig(
        question_regex=r"<\|im_start\|>user\n(.*?)<\|im_end\|>", response_marker="<|im_start|>assistant\n"
    )
    query = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n2+2=4\n#### 4<|im_end|>"
    assert split_query(query, None, chat) == ("What is 2+2?", ["2+2=4", "#### 4"])
    with pytest.raises(ValueError, match="response marker"):
        split_query("no marker here", None, cfg)
    with pytest.raises(ValueError, match="question_regex"):
        split_query("x\nAnswer:\n1", None, ServeConfig(question_regex=r"Q: (.*)"))
    assert split_query("plain prompt\nAnswer:\n", None, cfg) == ("plain prompt\nAnswer:", [])


def test_get_reward_follows_openrlhf_protocol(prm, pool):
    qs, ss = [q for q, _ in pool], [s for _, s in pool]
    want = [min(d) for d in prm.score(qs, ss)]
    prompts = [format_prompt(q) for q in qs]
    queries = [p + "\n".join(s) + "</s>" for p, s in zip(prompts, ss, strict=True)]
    with client(prm) as c:
        r = c.post("/get_reward", json={"query": queries, "prompts": prompts, "labels": ["1"] * len(qs)})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["rewards"] == pytest.approx(want, abs=1e-5) and out["scores"] == out["rewards"]
        assert out["extra_logs"]["prm_steps"] == [len(s) for s in ss]
        old = c.post("/get_reward", json={"query": queries}).json()  # older OpenRLHF: query only
        assert old["rewards"] == pytest.approx(want, abs=1e-5)


def _ok(r, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "Traceback" not in detail and 'File "' not in detail
    for w in words:
        assert w in detail, detail


BAD = [
    ("/score", b'{"solutions": [', 400, "malformed JSON"),
    ("/score", b"\xff\xfe", 400, "malformed JSON"),
    ("/score", b"[" * 100_000 + b"]" * 100_000, 400, "malformed JSON"),
    ("/score", b"42", 422, "body"),
    ("/score", b"{}", 422, "solutions: Field required"),
    ("/score", b'{"solutions": [{"steps": ["a"]}]}', 422, "solutions[0].question"),
    ("/score", b'{"solutions": [{"question": "q", "steps": "a"}]}', 422, "solutions[0].steps"),
    ("/score", b'{"solutions": [{"question": "q", "steps": [1, 2]}]}', 422, "solutions[0].steps[0]"),
    ("/score", b'{"solutions": [{"question": 7, "steps": ["a"]}]}', 422, "solutions[0].question"),
    ("/score", b'{"solutions": [{"question": "q"}]}', 422, "either"),
    ("/score", b'{"solutions": [{"question": "q", "steps": ["a"], "solution": "a"}]}', 422, "either"),
    ("/score", b'{"solutions": [], "aggregate": "min"}', 422, "aggregate"),
    ("/score", b'{"solutions": [], "aggregation": "max"}', 422, "aggregation"),
    (
        "/score",
        ('{"solutions": [{"question": "q", "steps": ["a ' + STEP_TAG + '"]}]}').encode(),
        422,
        "solutions[0]",
    ),
    ("/get_reward", b'{"query": "one string"}', 422, "query"),
    ("/get_reward", b'{"prompts": ["p"]}', 422, "query: Field required"),
    ("/get_reward", b'{"query": ["a\\nAnswer:\\n1"], "prompts": ["x", "y"]}', 422, "prompts"),
    ("/get_reward", b'{"query": ["no marker"]}', 422, "query[0]", "response marker"),
]


@pytest.mark.parametrize(("route", "body", "status", "words"), [(b[0], b[1], b[2], b[3:]) for b in BAD])
def test_bad_requests_get_4xx_with_a_message(prm, route, body, status, words):
    with client(prm) as c:
        _ok(c.post(route, content=body, headers={"content-type": "application/json"}), status, *words)
        ok = c.post("/score", json={"solutions": [{"question": "q", "steps": ["1+1=2"]}]})
        assert ok.status_code == 200  # the server goes on


def test_wrong_method_and_route(prm):
    with client(prm) as c:
        assert c.get("/score").status_code == 405
        assert c.post("/nothing", json={}).status_code == 404
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404


def test_limits(prm):
    q = "Tom has 3 apples."
    sol = {"question": q, "steps": ["1+1=2"]}
    with client(prm, max_body_bytes=2000, max_solutions=2, max_steps=3, max_chars=300, max_tokens=40) as c:
        _ok(c.post("/score", content=b"x" * 2001), 413, "2001 bytes")
        _ok(c.post("/score", json=[sol] * 3), 422, "3 solutions", "limit of 2")
        _ok(c.post("/score", json=[{"question": "q", "steps": ["1"] * 4}]), 422, "solutions[0]", "4 steps")
        _ok(c.post("/score", json=[{"question": "q" * 301, "steps": []}]), 422, "301 characters")
        _ok(c.post("/get_reward", json={"query": ["q" * 301]}), 422, "query[0]", "301 characters")
        long = {"question": q, "steps": ["1+2+3+4+5+6+7+8 = 36"] * 3}
        _ok(c.post("/score", json=[sol, long]), 422, "solutions[1]", "40 tokens")
        assert c.post("/score", json=[sol]).status_code == 200
    assert prm.max_length == 1024  # the app's copy was limited, not the caller's scorer


def test_api_key(prm):
    body = {"solutions": [{"question": "q", "steps": ["1+1=2"]}]}
    with client(prm, api_key="s3cret") as c:
        r = c.post("/score", json=body)
        _ok(r, 401, "API key")
        assert r.headers["www-authenticate"] == "Bearer"
        _ok(c.post("/score", json=body, headers={"Authorization": "Bearer wrong"}), 401)
        _ok(c.post("/get_reward", json={"query": []}, headers={"Authorization": "Basic s3cret"}), 401)
        _ok(c.post("/score", content=b"{", headers={"Authorization": "Bearer s3cre"}), 401)  # key before body
        assert c.post("/score", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200
    with client(prm) as c:  # no key configured: none needed
        assert c.post("/score", json=body).status_code == 200


def test_timeout_then_the_server_goes_on():
    slow = FakeScorer(delay=0.5)
    with client(slow, timeout_s=0.1) as c:
        _ok(c.post("/score", json=[{"question": "q", "steps": ["a"]}]), 504, "0.1 s")
        slow.delay = 0.0
        time.sleep(0.5)
        assert c.post("/score", json=[{"question": "q", "steps": ["a"]}]).json()["results"][0]["score"] == 0.5


def test_scorer_crash_is_a_500_without_details():
    bad = FakeScorer(error=RuntimeError("/secret/path exploded"))
    with client(bad) as c:
        r = c.post("/score", json=[{"question": "q", "steps": ["a"]}])
        _ok(r, 500, "internal error")
        assert "secret" not in r.text
        bad.error = None
        assert c.post("/score", json=[{"question": "q", "steps": ["a"]}]).status_code == 200


def _run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_score_calls():
    fake = FakeScorer(delay=0.05)

    async def go():
        b = Batcher(fake, ServeConfig(max_batch=64, max_wait_ms=20))
        await b.start()
        try:
            return await asyncio.gather(
                *(b.submit("solutions", ["q"] * 2, [["a"] * (i + 1)] * 2) for i in range(8))
            )
        finally:
            await b.stop()

    out = _run(go())
    assert out == [[[0.5] * (i + 1)] * 2 for i in range(8)]
    assert sum(fake.calls) == 16 and len(fake.calls) <= 2  # 8 requests in one or two score calls


def test_queue_full_is_503():
    async def go():
        b = Batcher(FakeScorer(), ServeConfig(max_pending=1))
        await b.start()
        try:
            await b.submit("solutions", ["q", "q"], [["a"], ["a"]])
        finally:
            await b.stop()

    with pytest.raises(ApiError) as e:
        _run(go())
    assert e.value.status == 503


def test_one_bad_request_in_a_batch_fails_alone(prm):
    b = Batcher(prm, ServeConfig())
    good = _Job("solutions", ["q"], [["1+1=2"]], None)
    bad = _Job("query", ["q", "q"], [["1"], [f"2 {STEP_TAG}"]], None)
    res_good, res_bad = b._score_jobs([good, bad])
    assert len(res_good) == 1 and close(res_good[0], prm.score(["q"], [["1+1=2"]])[0])
    assert (
        isinstance(res_bad, ApiError) and res_bad.status == 422 and res_bad.message.startswith("query[1]: ")
    )


def test_config_is_validated():
    with pytest.raises(ValueError, match="aggregation"):
        ServeConfig(aggregation="max")
    with pytest.raises(ValueError, match="step format"):
        ServeConfig(steps="lines")
    with pytest.raises(ValueError, match="max_solutions"):
        ServeConfig(max_solutions=0)
    with pytest.raises(ValueError, match="group"):
        ServeConfig(question_regex="Q: .*")
    with pytest.raises(ValueError, match="api_key"):
        ServeConfig(api_key=" ")
    assert "secret" not in repr(ServeConfig(api_key="secret"))


def test_cli_refuses_bad_options():
    from prmkit.cli import app

    r = CliRunner().invoke(app, ["serve", "--model", "nowhere", "--aggregation", "max"])
    assert r.exit_code == 2 and "serve.aggregation" in r.output


def _post(url: str, body: dict, key: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_real_server_on_loopback_under_concurrent_clients(prm, pool, tmp_path, monkeypatch):
    path = prm.save_pretrained(tmp_path / "prm")
    scorer = load_reward_model(str(path), device="cpu", dtype="float32")
    sock = bind("127.0.0.1", 0)
    server = make_server(create_app(scorer, ServeConfig(api_key="k", max_wait_ms=10)), log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            assert json.loads(r.read()) == {"status": "ok"}
        direct = prm.score([q for q, _ in pool], [s for _, s in pool])
        bodies = [{"solutions": [{"question": q, "steps": s}]} for q, s in pool] * 3
        with ThreadPoolExecutor(8) as ex:
            answers = list(ex.map(lambda b: _post(url + "/score", b, "k"), bodies))
        for i, (status, out) in enumerate(answers):
            assert status == 200
            assert close(out["results"][0]["step_scores"], direct[i % len(pool)])
        assert _post(url + "/score", bodies[0])[0] == 401
        status, out = _post(
            url + "/get_reward", {"query": [format_prompt(pool[0][0]) + "\n".join(pool[0][1])]}, "k"
        )
        assert status == 200 and out["rewards"][0] == pytest.approx(min(direct[0]), abs=1e-5)
        # the verl recipe: compute_score(data_source, solution_str, ground_truth, extra_info)
        spec = importlib.util.spec_from_file_location("verl_reward", ROOT / "recipes" / "verl_reward.py")
        verl = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(verl)
        monkeypatch.setenv("PRMKIT_SERVE_URL", url)
        monkeypatch.setenv("PRMKIT_API_KEY", "k")
        got = verl.compute_score("gsm8k", "\n".join(pool[1][1]), "7", {"question": pool[1][0]})
        assert got == pytest.approx(min(direct[1]), abs=1e-5)
        monkeypatch.setenv("PRMKIT_API_KEY", "wrong")
        with pytest.raises(RuntimeError, match="401"):
            verl.compute_score("gsm8k", "1", "1", {"question": "q"})
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
