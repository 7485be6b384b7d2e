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
    """One sampled continuation: its text, the tokens it cost and why it stopped."""

    text: str
    n_tokens: int
    finish_reason: str  # "eos", "stop", "length"


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
