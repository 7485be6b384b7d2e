"""Ray: sampling, annotation and scoring sharded over worker processes, with one writer.

A stage (``sample``, ``annotate``, ``score``) runs as usual in the driver process, which keeps the only
appender of its output file and its resume logic; only the model calls go to Ray actors. ``RayPolicy``
is a ``Policy`` whose ``generate`` splits the prompts into shards, one task per shard, over a pool of
actors that each built the real backend (``hf``, ``vllm`` or ``openai``) once; ``RayScorer`` does the
same for a reward model's ``score``. The driver appends a chunk's records only when all of its shards
are back, so a worker that dies has its shard redone (Ray restarts the actor and retries the call, up
to ``max_restarts`` times) and no record is written twice; a killed driver resumes from the file as
any run does.

Workers: ``workers: N`` actors of ``cpus_per_worker`` CPUs each (torch in a worker uses that many
threads), or one actor per GPU with ``gpus_per_worker: 1``; ``workers: -1`` starts as many as the
cluster's CPUs (or GPUs) hold. ``address`` joins a running cluster (``auto``, ``ray://host:10001``);
without it a local cluster is started for the run and stopped after it.

Draws: shard k samples with seed ``seed + k``, so shard 0 of a single-shard call draws exactly what the
process would alone. With a fixed ``shard`` size the records do not depend on the number of workers;
the default (an even split over the workers) makes the worker count, like the ``hf`` backend's
``batch_size``, a speed knob that changes which random numbers a sample gets, not their distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prmkit.policy.base import Completion, Policy


@dataclass(frozen=True)
class RayConfig:
    workers: int = 0  # actors; 0: no Ray (the stage runs in this process); -1: as many as the cluster holds
    address: str | None = None  # a running cluster ("auto", "ray://host:10001"); None: start a local one
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # 1: one actor per GPU
    shard: int = 0  # prompts (solutions, when scoring) per task; 0: an even split over the workers
    max_restarts: int = 3  # a worker that dies is restarted and its shard redone, this many times

    def __post_init__(self):
        if self.workers < -1:
            raise ValueError(
                f"ray.workers must be >= 1, 0 (no Ray) or -1 (as many as fit), got {self.workers}"
            )
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ValueError("ray: cpus_per_worker must be > 0 and gpus_per_worker >= 0")
        if self.shard < 0 or self.max_restarts < 0:
            raise ValueError("ray: shard and max_restarts must be >= 0")

    @property
    def enabled(self) -> bool:
        return self.workers != 0


def split(n_items: int, workers: int, shard: int) -> list[range]:
    """Contiguous shards of ``n_items``: ``shard`` items each, else one per worker (sizes differing by
    at most one).

    >>> split(5, 2, 0), split(5, 9, 2), split(0, 2, 0)
    ([range(0, 3), range(3, 5)], [range(0, 2), range(2, 4), range(4, 5)], [])
    """
    size = shard or math.ceil(n_items / max(1, workers))
    return [range(i, min(i + size, n_items)) for i in range(0, n_items, max(1, size))]


class _Worker:
    """A Ray actor: builds a policy or a reward model once, then runs shards of calls on it."""

    def __init__(self, kind: str, model: str, kwargs: dict[str, Any], threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        if kind == "policy":
            from prmkit.policy import make_policy

            kwargs = dict(kwargs)
            self.obj = make_policy(kwargs.pop("backend"), model, **kwargs)
        else:
            from prmkit.reward import load_reward_model

            self.obj = load_reward_model(model, **kwargs)

    def source(self) -> dict:
        return dict(getattr(self.obj, "source", {}))

    def generate(self, prompts: list[str], n: int, kwargs: dict[str, Any]) -> list[list[Completion]]:
        return self.obj.generate(prompts, n, **kwargs)

    def score(self, questions: list[str], steps: list[list[str]], batch_size: int) -> list[list[float]]:
        return self.obj.score(questions, steps, batch_size=batch_size)


class _Pool:
    """Actors of one kind over a Ray cluster (joined or started here); ``map`` runs shards in order."""

    def __init__(self, cfg: RayConfig, kind: str, model: str, kwargs: dict[str, Any]):
        try:
            import ray
        except ModuleNotFoundError:
            raise ValueError("ray.workers needs Ray: pip install 'prmkit[ray]'") from None
        self.cfg, self.started = cfg, False
        if not ray.is_initialized():
            ray.init(address=cfg.address, include_dashboard=False, log_to_driver=False)
            self.started = True
        n = cfg.workers
        if n == -1:
            res = ray.cluster_resources()
            n = int(res.get("GPU", 0) // cfg.gpus_per_worker) if cfg.gpus_per_worker else 0
            n = n or int(res.get("CPU", 1) // cfg.cpus_per_worker)
        if n < 1:
            raise ValueError(f"ray: the cluster at {cfg.address or 'local'} has room for no worker")
        actor = ray.remote(
            num_cpus=cfg.cpus_per_worker,
            num_gpus=cfg.gpus_per_worker,
            max_restarts=cfg.max_restarts,
            max_task_retries=cfg.max_restarts,
        )(_Worker)
        threads = max(1, int(cfg.cpus_per_worker))
        self.actors = [actor.remote(kind, str(model), kwargs, threads) for _ in range(n)]
        self.source = self._get([a.source.remote() for a in self.actors])[0]  # every worker loaded its model

    def _get(self, refs):
        import ray

        try:
            return ray.get(refs)
        except ray.exceptions.RayError as e:
            raise _as_ours(e) from None

    def map(self, method: str, shards: list[tuple]) -> list:
        """``method(*args)`` for every shard, at most one shard per actor at a time; results in order."""
        import ray
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        try:
            return list(pool.map(lambda a, args: getattr(a, method).remote(*args), shards))
        except ray.exceptions.RayError as e:
            raise _as_ours(e) from None

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self.started:
            ray.shutdown()
            self.started = False


def _as_ours(e: Exception) -> Exception:
    """A worker's own ValueError / OSError (a bad model, a bad prompt) as itself; any other failure as
    one line."""
    import ray

    cause = getattr(e, "cause", None)
    if isinstance(cause, ValueError | OSError):
        return cause
    if isinstance(e, ray.exceptions.RayActorError):
        return ValueError(f"ray: a worker died and could not be restarted: {' '.join(str(e).split())[:300]}")
    lines = str(e).strip().splitlines()
    return ValueError(f"ray worker failed: {lines[-1] if lines else type(e).__name__}")


class RayPolicy(Policy):
    """A policy whose ``generate`` runs in shards on Ray actors, each holding a ``backend`` policy."""

    def __init__(self, backend: str, model: str, cfg: RayConfig, **kwargs: Any):
        self.cfg = cfg
        self.pool = _Pool(cfg, "policy", model, {"backend": backend, **kwargs})
        self.source = self.pool.source

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
        shards = split(len(prompts), len(self.pool.actors), self.cfg.shard)
        args = [
            (
                [prompts[i] for i in r],
                n,
                {
                    "temperature": temperature,
                    "top_p": top_p,
                    "max_new_tokens": max_new_tokens,
                    "seed": None if seed is None else (seed + k) % 2**63,
                },
            )
            for k, r in enumerate(shards)
        ]
        return [row for part in self.pool.map("generate", args) for row in part]

    def close(self) -> None:
        self.pool.close()


class RayScorer:
    """A reward model whose ``score`` runs in shards on Ray actors, each holding the loaded model."""

    def __init__(self, model: str, cfg: RayConfig, **kwargs: Any):
        self.cfg = cfg
        self.pool = _Pool(cfg, "reward", model, kwargs)
        self.source = self.pool.source

    def score(self, questions: list[str], steps: list[list[str]], batch_size: int = 16) -> list[list[float]]:
        shards = split(len(questions), len(self.pool.actors), self.cfg.shard)
        args = [([questions[i] for i in r], [steps[i] for i in r], batch_size) for r in shards]
        return [row for part in self.pool.map("score", args) for row in part]

    def close(self) -> None:
        self.pool.close()
