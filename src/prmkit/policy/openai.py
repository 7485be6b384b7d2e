"""The ``openai`` backend: sampling through any OpenAI-compatible ``/v1/completions`` server.

``vllm serve``, SGLang and hosted APIs all speak it. The server is ``base_url`` (default: the
``OPENAI_BASE_URL`` environment variable, else ``http://127.0.0.1:8000/v1``, where ``vllm serve``
listens) with the key ``api_key`` (default ``OPENAI_API_KEY``, else "EMPTY" as vLLM expects); the
policy's ``model`` is the name the server gives the model (``vllm serve MODEL`` serves it as MODEL).

One request per prompt asks for all ``n`` samples (``n``, ``temperature``, ``top_p``, ``max_tokens``,
``stop``, ``seed``); up to ``concurrency`` requests are in flight at once (a thread pool over the
``openai`` client), and the client retries 408/409/429/5xx answers and broken connections with
exponential backoff (``max_retries``). The server's model and address are checked when the policy is
built, so a wrong URL or model name is one line at once, not an error after the first batch.

Calculator sampling (``calculator=True``, Cobbe et al.): the request stops at every ``=``; when the
text then ends inside an open ``<<expr=``, the exact result from ``prmkit.calculator`` and ``>>`` are
appended, and the sample continues alone (n=1) from prompt + text (vLLM's prefix caching makes the
resubmission cheap); the rounds are ``policy.calc``'s, shared with the ``vllm`` backend. A stop at ``=`` must be told from an end of text, so calculator sampling needs a
server that says which stop string matched (vLLM's ``stop_reason``, SGLang's ``matched_stop``); one
that does not is refused. User ``stop`` strings are then applied here, on the returned text.

Departures from the ``hf`` backend: the forced result is tokenised by the server together with the
rest of the text (``hf`` forces the exact result tokens); with ``n > 1`` the token count of each
sample's first round is the request's total shared evenly (the API reports usage per request).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prmkit.policy.base import Completion, Policy, register_policy
from prmkit.policy.calc import Draft, calculator_suffix, finish_drafts

__all__ = ["OpenAIPolicy", "calculator_suffix"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


@dataclass
class _Sample:
    text: str
    tokens: int
    finish: str  # "eos", "stop", "length", or "calc" (stopped at "=": continue)


class OpenAIPolicy(Policy):
    """Sample from an OpenAI-compatible completions server; see the module docstring."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        calculator: bool = True,
        max_new_tokens: int = 256,
        stop: tuple[str, ...] = (),
        concurrency: int = 16,
        max_retries: int = 5,
        timeout: float = 600.0,
        check: bool = True,
        batch_size: int | None = None,  # accepted for the shared sampling config; the server batches
        trust_remote_code: bool = False,
        revision: str | None = None,
    ):
        if trust_remote_code or revision is not None:
            raise ValueError(
                "the openai backend samples a model the server has loaded: trust_remote_code and revision "
                "belong to the server's command line (e.g. vllm serve --revision)"
            )
        try:
            import openai
        except ModuleNotFoundError:
            raise ValueError(
                "the openai backend needs the openai package: pip install 'prmkit[openai]'"
            ) from None
        if concurrency < 1:
            raise ValueError(f"openai backend: concurrency must be >= 1, got {concurrency}")
        self.model, self.calculator = str(model), calculator
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.max_new_tokens, self.stop, self.concurrency = max_new_tokens, tuple(stop), concurrency
        self.source = {"served_model": self.model, "base_url": self.base_url}  # for the run's metadata
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            max_retries=max_retries,
            timeout=timeout,
        )
        if check:
            self._check_model()

    def _error(self, e: Exception) -> ValueError:
        """One line for what went wrong with the server, naming the URL and the model."""
        import openai

        where = f"openai backend at {self.base_url}"
        if isinstance(e, openai.NotFoundError):
            return ValueError(
                f"{where}: model {self.model!r} or the completions route not found ({_message(e)})"
            )
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            return ValueError(f"{where}: the API key was refused (set OPENAI_API_KEY): {_message(e)}")
        if isinstance(e, openai.APIConnectionError):
            return ValueError(
                f"{where}: cannot reach the server ({e}); is it running, and OPENAI_BASE_URL right?"
            )
        if isinstance(e, openai.APIStatusError):
            return ValueError(f"{where}: HTTP {e.status_code} for model {self.model!r}: {_message(e)}")
        return ValueError(f"{where}: {e}")

    def _check_model(self) -> None:
        import openai

        try:
            names = [m.id for m in self.client.with_options(max_retries=1).models.list()]
        except openai.NotFoundError:
            return  # a server without /v1/models: the first request will tell
        except openai.OpenAIError as e:
            raise self._error(e) from None
        if self.model not in names:
            shown = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
            raise ValueError(f"openai backend at {self.base_url}: no model {self.model!r}; it serves {shown}")

    def _request(self, prompt: str, n: int, params: dict[str, Any]) -> list[_Sample]:
        import openai

        stop = ["="] if self.calculator else list(self.stop)
        try:
            resp = self.client.completions.create(
                model=self.model, prompt=prompt, n=n, stop=stop or None, **params
            )
        except openai.OpenAIError as e:
            raise self._error(e) from None
        used = getattr(resp.usage, "completion_tokens", None) or 0
        out = []
        for choice in sorted(resp.choices, key=lambda c: c.index):
            extra = choice.model_extra or {}
            matched = extra.get("stop_reason", extra.get("matched_stop", ...))
            if choice.finish_reason == "length":
                finish = "length"
            elif not self.calculator:  # a matched stop string, else the end of text (or a stop token)
                finish = (
                    ("stop" if self.stop else "eos")
                    if matched is ...
                    else ("stop" if isinstance(matched, str) else "eos")
                )
            elif matched is ...:
                raise ValueError(
                    f"openai backend at {self.base_url}: calculator sampling needs the server to report which stop "
                    "string matched (vLLM's stop_reason, SGLang's matched_stop); this one does not: sample with "
                    "calculator=false"
                )
            else:
                finish = "calc" if matched == "=" else "eos"
            out.append(_Sample(choice.text, round(used / max(1, len(resp.choices))), finish))
        return out

    def _complete(self, prompt: str, n: int, params: dict[str, Any], seed: int | None) -> list[Completion]:
        """``n`` samples of one prompt: one request, then the calculator's rounds (``policy.calc``), in
        which each sample stopped at an ``=`` continues alone (n=1) from prompt + text."""
        samples = self._request(prompt, n, params | ({"seed": seed} if seed is not None else {}))
        # the server cut the "=" it wrote: put it back, so the text ends where the model stopped
        drafts = [
            Draft(prompt, s.text + "=" * (s.finish == "calc"), s.tokens, s.finish,
                  None if seed is None else seed * 1_000_003 + k * 7919)
            for k, s in enumerate(samples)
        ]  # fmt: skip

        def resubmit(live: list[Draft], r: int) -> None:
            for d in live:
                more = params | {"max_tokens": params["max_tokens"] - d.tokens}
                if d.seed is not None:
                    more["seed"] = (d.seed + r + 1) % 2**31  # a fresh draw in every round
                nxt = self._request(d.prompt + d.text, 1, more)[0]
                d.text += nxt.text + "=" * (nxt.finish == "calc")
                d.tokens, d.finish = d.tokens + nxt.tokens, nxt.finish

        if self.calculator:  # without it the server applied the user's stop strings itself
            finish_drafts(drafts, params["max_tokens"], self.stop, resubmit)
        return [Completion(text=d.text, n_tokens=d.tokens, finish_reason=d.finish) for d in drafts]

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
        params = {
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_new_tokens or self.max_new_tokens,
        }
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts) * n, desc="sampling", unit="sample")

        def one(i: int) -> list[Completion]:
            out = self._complete(prompts[i], n, params, None if seed is None else (seed + i) % 2**31)
            if bar is not None:
                bar.update(n)
            return out

        with ThreadPoolExecutor(self.concurrency) as pool:
            results = list(pool.map(one, range(len(prompts))))
        if bar is not None:
            bar.close()
        return results


def _message(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") if isinstance(inner, dict) else None
        if msg:
            return " ".join(str(msg).split())[:300]
    return " ".join(str(e).split())[:300]


@register_policy("openai")
def _make_openai(model: str, **kwargs: Any) -> OpenAIPolicy:
    return OpenAIPolicy(model, **kwargs)
