"""``prmkit serve``: a batched HTTP scoring server for PRMs, ORMs and value verifiers.

RL frameworks that train 7B+ policies (OpenRLHF, verl) call a reward model over HTTP; this server puts
any scorer ``load_reward_model`` reads behind three routes:

- ``POST /score``: ``{"solutions": [{"question": q, "steps": [s1, s2]}, {"question": q, "solution":
  "s1\\ns2"}], "aggregation": "min"}`` -> ``{"aggregation": "min", "results": [{"step_scores": [p1, p2],
  "score": min(p1, p2)}, ...]}``; a ``solution`` text is split into steps by ``ServeConfig.steps``; a
  step cut by the model's context is ``null``; ``aggregation`` (min, prod, last, mean) is optional.
- ``POST /get_reward``: OpenRLHF's remote reward model protocol (``--remote_rm_url``, since 2026
  ``--reward.remote_url``). OpenRLHF posts ``{"query": [prompt + response], "prompts": [prompt],
  "labels": [label]}`` (older versions only ``query``) and reads ``{"rewards": [r], "scores": [r],
  "extra_logs": {...}}``, one value per query. The query is split by ``split_query``: the response is
  what follows the prompt (or, without ``prompts``, the last ``response_marker``), cut of end-of-text
  tokens and split into steps; the question is read from the prompt by ``question_regex`` (default:
  prmkit's ``Question: ...\\nAnswer:\\n`` layout, else the whole prompt). The reward is the aggregated
  step score (``aggregation``); ``labels`` are ignored (a PRM needs no reference answer).
- ``GET /health``: ``{"status": "ok"}``, without the key.

Batching: every request's solutions join an asyncio queue; one batcher task takes the queued requests
(up to ``max_batch`` solutions, waiting at most ``max_wait_ms`` for more once the first arrived) and
scores them in one ``score`` call on one worker thread, so the event loop keeps accepting requests
while the model runs and concurrent clients share forward passes.

Security (what the server lets in): it binds 127.0.0.1 unless told otherwise; with an API key every
route but ``/health`` needs ``Authorization: Bearer <key>`` (compared with ``hmac.compare_digest``;
401 otherwise); the body size (413), solutions per request, steps, characters and tokens per solution
(422) are bounded; malformed JSON (400) and wrong fields or types (422) get a one-line message, never
a stack trace; a request that waits longer than ``timeout_s`` gets 504 and the server goes on; more
than ``max_pending`` queued solutions get 503. No route reads or writes files, and the OpenAPI pages
are off.

    >>> split_query("Question: Tom has 3.\\nAnswer:\\n3+4=7\\n#### 7</s>", "Question: Tom has 3.\\nAnswer:\\n", ServeConfig())
    ('Tom has 3.', ['3+4=7', '#### 7'])
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import logging
import math
import re
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from prmkit.steps import split_steps
from prmkit.verify import AGGREGATIONS, aggregate

log = logging.getLogger("prmkit.serve")

# End-of-text markers a policy's decoded text may end with (OpenRLHF decodes with special tokens).
END_MARKERS = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<eos>", "<|end|>")
PRMKIT_QUESTION = r"(?s).*Question: (.*)\nAnswer:\n"  # the last question of prmkit's prompt layout


@dataclass(frozen=True)
class ServeConfig:
    """How ``prmkit serve`` scores and what it accepts. ``max_tokens=None`` means the model's context."""

    aggregation: str = "min"
    steps: str = "gsm8k"  # how a text is split into steps: gsm8k (lines), math, sep:<s>
    batch_size: int = 16  # solutions per forward pass
    max_batch: int = 64  # solutions gathered into one score call
    max_wait_ms: float = 5.0  # how long the batcher waits for more requests once one arrived
    max_pending: int = 4096  # queued solutions beyond which requests get 503
    max_body_bytes: int = 4 * 2**20
    max_solutions: int = 256  # per request
    max_steps: int = 128  # per solution
    max_chars: int = 20_000  # per solution (question + steps, or the OpenRLHF query)
    max_tokens: int | None = None
    timeout_s: float = 60.0
    api_key: str | None = field(default=None, repr=False)
    response_marker: str = "\nAnswer:\n"
    question_regex: str | None = None
    end_markers: tuple[str, ...] = END_MARKERS

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"serve.aggregation: unknown {self.aggregation!r}; valid: {', '.join(AGGREGATIONS)}"
            )
        split_steps("", self.steps)  # raises on an unknown step format
        for name in ("batch_size", "max_batch", "max_pending", "max_body_bytes", "max_solutions",
                     "max_steps", "max_chars"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"serve.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"serve.max_tokens must be >= 1, got {self.max_tokens}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise ValueError("serve: max_wait_ms must be >= 0 and timeout_s > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("serve.api_key is empty; give a key or none")
        if not self.response_marker:
            raise ValueError("serve.response_marker is empty")
        if self.question_regex is not None:
            try:
                groups = re.compile(self.question_regex).groups
            except re.error as e:
                raise ValueError(f"serve.question_regex {self.question_regex!r}: {e}") from None
            if groups < 1:
                raise ValueError(
                    f"serve.question_regex {self.question_regex!r} needs a group for the question"
                )


class ApiError(Exception):
    """An answer other than 200: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def split_query(query: str, prompt: str | None, cfg: ServeConfig) -> tuple[str, list[str]]:
    """(question, steps) of an OpenRLHF query (prompt + response text); ``prompt`` may be None.

    The response is what follows ``prompt`` when the query starts with it, else what follows the last
    ``cfg.response_marker``; trailing end-of-text markers are cut. The question is group 1 of
    ``cfg.question_regex`` in the prompt, or by default the last ``Question: ...\\nAnswer:\\n`` of the
    prompt, else the whole prompt.

    >>> split_query("<s>Question: 2+2?\\nAnswer:\\n2+2=4\\n#### 4", None, ServeConfig())
    ('2+2?', ['2+2=4', '#### 4'])
    """
    if prompt is not None and prompt and query.startswith(prompt):
        response = query[len(prompt) :]
    elif cfg.response_marker in query:
        head, marker, response = query.rpartition(cfg.response_marker)
        prompt = head + marker
    else:
        raise ValueError(
            f"neither starts with its prompt nor holds the response marker {cfg.response_marker!r}"
        )
    response = response.strip()
    cut = True
    while cut:  # "...#### 7<|im_end|>\n<|endoftext|>"
        cut = False
        for m in cfg.end_markers:
            if response.endswith(m):
                response, cut = response[: -len(m)].rstrip(), True
    m = re.search(cfg.question_regex or PRMKIT_QUESTION, prompt)
    if m is None and cfg.question_regex is not None:
        raise ValueError(f"the prompt does not match question_regex {cfg.question_regex!r}")
    question = m.group(1) if m is not None else prompt
    return question.strip(), split_steps(response, cfg.steps)


# Request bodies, checked strictly (no number taken for a string) with one-line messages.
class _Solution(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    question: str
    steps: list[str] | None = None
    solution: str | None = None

    @model_validator(mode="after")
    def _one_of(self):
        if (self.steps is None) == (self.solution is None):
            raise ValueError("give either 'steps' (a list of strings) or 'solution' (a text), not both")
        return self


class _ScoreRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    solutions: list[_Solution]
    aggregation: Literal["min", "prod", "last", "mean"] | None = None


class _RewardRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")  # OpenRLHF may send more fields
    query: list[str]
    prompts: list[str] | None = None
    labels: Any = None  # ignored: a PRM needs no reference answer


def _validate(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "body"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ApiError(422, f"{loc}: {err['msg']}{more}") from None


async def _read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body; 413 past ``limit`` bytes (read no further), 400 when not JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested arrays
        raise ApiError(400, f"malformed JSON: {str(e)[:200]}") from None


@dataclass
class _Job:
    where: str  # "solutions" or "query": names the items in messages
    questions: list[str]
    steps: list[list[str]]
    future: asyncio.Future


class Batcher:
    """Gathers concurrent requests into ``score`` calls run one at a time on one worker thread."""

    def __init__(self, scorer, cfg: ServeConfig):
        self.scorer, self.cfg = scorer, cfg
        self.queue: asyncio.Queue[_Job] | None = None
        self.pending = 0  # solutions queued or being scored
        self.executor: ThreadPoolExecutor | None = None
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prmkit-score")
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, where: str, questions: list[str], steps: list[list[str]]) -> list[list[float]]:
        """Step scores of the solutions; 503 when the queue is full, 504 past ``timeout_s``."""
        assert self.queue is not None, "Batcher.start() first"
        n = len(questions)
        if n == 0:
            return []
        if self.pending + n > self.cfg.max_pending:
            raise ApiError(503, f"server busy: {self.pending} solutions queued; retry later")
        job = _Job(where, questions, steps, asyncio.get_running_loop().create_future())
        self.pending += n
        try:
            await self.queue.put(job)
            # a timed-out job's future is cancelled, so the batcher skips it if it has not started
            return await asyncio.wait_for(job.future, self.cfg.timeout_s)
        except TimeoutError:
            raise ApiError(504, f"scoring took longer than {self.cfg.timeout_s:g} s") from None
        finally:
            self.pending -= n

    async def _loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0].questions)
            deadline = loop.time() + self.cfg.max_wait_ms / 1000
            while size < self.cfg.max_batch:
                try:
                    job = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self.queue.get(), left)
                    except TimeoutError:
                        break
                batch.append(job)
                size += len(job.questions)
            batch = [j for j in batch if not j.future.done()]
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self._score_jobs, batch)
            except Exception:  # the pool itself failed (e.g. shut down): answer, never hang
                log.exception("scoring batch failed")
                results = [ApiError(500, "internal error while scoring")] * len(batch)
            for job, res in zip(batch, results, strict=True):
                if job.future.done():  # timed out or the client went away
                    continue
                if isinstance(res, ApiError):
                    job.future.set_exception(res)
                else:
                    job.future.set_result(res)

    def _score(self, questions: list[str], steps: list[list[str]]) -> list[list[float]]:
        with warnings.catch_warnings():  # truncation is reported per request below, not as a warning
            warnings.simplefilter("ignore", UserWarning)
            return self.scorer.score(questions, steps, batch_size=self.cfg.batch_size)

    def _score_jobs(self, jobs: list[_Job]) -> list[list[list[float]] | ApiError]:
        """One ``score`` call for all jobs; if it fails, each job alone, so one bad request fails alone."""
        qs = [q for j in jobs for q in j.questions]
        ss = [s for j in jobs for s in j.steps]
        try:
            flat = self._score(qs, ss)
        except Exception:
            return [self._score_alone(j) for j in jobs]
        out: list[list[list[float]] | ApiError] = []
        start = 0
        for j in jobs:
            out.append(self._check_cut(j, flat[start : start + len(j.questions)]))
            start += len(j.questions)
        return out

    def _score_alone(self, job: _Job) -> list[list[float]] | ApiError:
        try:
            return self._check_cut(job, self._score(job.questions, job.steps))
        except ValueError:  # an input the scorer refuses (e.g. a step holding the step tag): find which
            for i, (q, s) in enumerate(zip(job.questions, job.steps, strict=True)):
                try:
                    self._score([q], [s])
                except ValueError as e:
                    return ApiError(422, f"{job.where}[{i}]: {e}")
            return ApiError(422, f"{job.where}: the scorer refused the request")
        except Exception:
            log.exception("scoring failed")
            return ApiError(500, "internal error while scoring")

    def _check_cut(self, job: _Job, scores: list[list[float]]) -> list[list[float]] | ApiError:
        """422 for a solution whose scored text ran past ``max_tokens`` (its last score is nan)."""
        for i, s in enumerate(scores):
            if s and math.isnan(s[-1]):
                return ApiError(
                    422,
                    f"{job.where}[{i}]: longer than {self.scorer.max_length} tokens once formatted for scoring",
                )
        return scores


def _check_solution(where: str, i: int, question: str, steps: list[str], cfg: ServeConfig) -> None:
    if len(steps) > cfg.max_steps:
        raise ApiError(422, f"{where}[{i}]: {len(steps)} steps, over the limit of {cfg.max_steps}")
    chars = len(question) + sum(len(s) for s in steps)
    if chars > cfg.max_chars:
        raise ApiError(422, f"{where}[{i}]: {chars} characters, over the limit of {cfg.max_chars}")


def _check_count(where: str, n: int, cfg: ServeConfig) -> None:
    if n > cfg.max_solutions:
        raise ApiError(422, f"{where}: {n} solutions, over the limit of {cfg.max_solutions} per request")


def _floats(xs: list[float]) -> list[float | None]:
    return [None if math.isnan(x) else x for x in xs]


def create_app(scorer, cfg: ServeConfig) -> FastAPI:
    """The FastAPI app over ``scorer`` (anything with ``score(questions, steps, batch_size)`` and
    ``max_length``). ``cfg.max_tokens`` (when given) lowers ``max_length`` in the app's copy of it."""
    if cfg.max_tokens is not None:  # a shallow copy shares the weights and leaves the caller's scorer alone
        scorer = copy.copy(scorer)
        scorer.max_length = min(cfg.max_tokens, scorer.max_length)
    batcher = Batcher(scorer, cfg)
    key = cfg.api_key.encode() if cfg.api_key else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="prmkit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal server error"}, 500)

    def authorize(request: Request) -> None:
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                           {"WWW-Authenticate": "Bearer"})  # fmt: skip

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/score")
    async def score(request: Request) -> JSONResponse:
        authorize(request)
        body = await _read_json(request, cfg.max_body_bytes)
        req = _validate(_ScoreRequest, {"solutions": body} if isinstance(body, list) else body)
        how = req.aggregation or cfg.aggregation
        _check_count("solutions", len(req.solutions), cfg)
        qs, ss = [], []
        for i, sol in enumerate(req.solutions):
            steps = sol.steps if sol.steps is not None else split_steps(sol.solution, cfg.steps)
            _check_solution("solutions", i, sol.question, steps, cfg)
            qs.append(sol.question)
            ss.append(steps)
        scores = await batcher.submit("solutions", qs, ss)
        results = [{"step_scores": _floats(s), "score": aggregate(s, how)} for s in scores]
        return JSONResponse({"aggregation": how, "results": results})

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        authorize(request)
        req = _validate(_RewardRequest, await _read_json(request, cfg.max_body_bytes))
        _check_count("query", len(req.query), cfg)
        if req.prompts is not None and len(req.prompts) != len(req.query):
            raise ApiError(422, f"prompts: {len(req.prompts)} prompts for {len(req.query)} queries")
        qs, ss = [], []
        for i, query in enumerate(req.query):
            if len(query) > cfg.max_chars:
                raise ApiError(422, f"query[{i}]: {len(query)} characters, over the limit of {cfg.max_chars}")
            try:
                q, steps = split_query(query, req.prompts[i] if req.prompts else None, cfg)
            except ValueError as e:
                raise ApiError(422, f"query[{i}]: {e}") from None
            _check_solution("query", i, q, steps, cfg)
            qs.append(q)
            ss.append(steps)
        scores = await batcher.submit("query", qs, ss)
        rewards = [aggregate(s, cfg.aggregation) for s in scores]
        return JSONResponse(
            {"rewards": rewards, "scores": rewards, "extra_logs": {"prm_steps": [len(s) for s in ss]}}
        )

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it with ``getsockname()``)."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def make_server(app: FastAPI, log_level: str = "info", max_connections: int = 1024):
    """A ``uvicorn.Server`` for ``app``: run it with ``server.run(sockets=[bind(host, port)])``."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level=log_level, limit_concurrency=max_connections, timeout_keep_alive=5, access_log=False
    )
    return uvicorn.Server(config)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def run_server(
    model: str, cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
    threads: int | None = None, **load_kwargs: Any,
) -> None:  # fmt: skip
    """Load ``model`` (kwargs go to ``load_reward_model``) and serve it until interrupted; ``threads``
    sets torch's intra-op threads (on a CPU shared with other work, 1 avoids oversubscription)."""
    from prmkit.reward import load_reward_model

    if threads is not None:
        if threads < 1:
            raise ValueError(f"serve: threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    sock = bind(host, port)  # before loading: a taken port fails at once
    scorer = load_reward_model(model, **load_kwargs)
    app = create_app(scorer, cfg)
    bound = sock.getsockname()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}"
    if not is_loopback(host) and cfg.api_key is None:
        print(
            f"prmkit serve: WARNING: listening on {host} without an API key; anyone who reaches it may score"
        )
    key = "on" if cfg.api_key else "off"
    print(
        f"prmkit serve: {model} on {url} (POST /score, POST /get_reward, GET /health; API key {key})",
        flush=True,
    )
    make_server(app, log_level).run(sockets=[sock])
