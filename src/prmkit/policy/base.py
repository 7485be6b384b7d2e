"""The policy interface and the backend registry.

A policy turns prompts into sampled completions: ``sample(prompts, n) -> list[list[str]]``, n per
prompt. Completions from a solution prefix go through the same call (the prompt is the question
prompt plus the prefix). Backends register under a name and are built by ``make_policy(name,
...)``, never by branching on model ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Completion:
    """One sampled continuation: its text, the tokens it cost and why it stopped.

    Backends that see the tokens (``hf``, ``vllm``) also give them: ``token_ids``, the policy's tokens
    in order (a stop string cut from ``text`` keeps its tokens here; the end-of-sequence token is never
    included); ``forced``, per token, True where the calculator wrote it rather than the policy; and
    ``logprobs``, per token, the log-probability of the distribution sampled from (temperature applied;
    at temperature 0 the model's own), NaN for a forced token. A backend that sees only text (``openai``)
    leaves the three empty, and consumers re-tokenise ``text`` (``rl.rollout``)."""

    text: str
    n_tokens: int
    finish_reason: str  # "eos", "stop", "length"
    token_ids: tuple[int, ...] = ()
    forced: tuple[bool, ...] = ()
    logprobs: tuple[float, ...] = ()


class Policy(ABC):
    """Samples completions; subclasses implement ``generate``."""

    @abstractmethod
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
        """``n`` completions for each prompt, with token counts."""

    def sample(self, prompts: list[str], n: int = 1, **kwargs: Any) -> list[list[str]]:
        """``n`` completion texts for each prompt."""
        return [[c.text for c in row] for row in self.generate(prompts, n, **kwargs)]

    def close(self) -> None:
        """Release what the backend holds beyond memory (an engine process, Ray workers); a no-op here."""
        return None


_REGISTRY: dict[str, Callable[..., Policy]] = {}


def register_policy(name: str) -> Callable[[Callable[..., Policy]], Callable[..., Policy]]:
    def deco(factory: Callable[..., Policy]) -> Callable[..., Policy]:
        _REGISTRY[name] = factory
        return factory

    return deco


def policy_names() -> list[str]:
    return sorted(_REGISTRY)


def make_policy(backend: str, model: str, **kwargs: Any) -> Policy:
    """Build a registered backend (``hf``, ...) for a model path or hub id."""
    if backend not in _REGISTRY:
        raise ValueError(f"unknown policy backend {backend!r}; valid: {', '.join(policy_names())}")
    return _REGISTRY[backend](model, **kwargs)
