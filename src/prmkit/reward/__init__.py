"""Reward models: Math-Shepherd-style step reward models (PRM and ORM, and released PRM formats),
token-level value verifiers (Cobbe et al.), Math-Minos critique pre-training, and their training.

``load_reward_model(path)`` gives whichever scorer a directory holds (its ``prmkit_reward.json`` says
which), and ``load_reward_model("likelihood:PATH")`` the generator at PATH scoring by its own
likelihood (``reward/likelihood.py``, no training); every one has ``score(questions, steps) ->
list[list[float]]``. ``score_solutions`` scores a list of sampled solutions into a resumable
``scores.jsonl``, with where the model came from in ``scores.meta.json``. Code shipped with a model runs only when asked (``trust_remote_code``).
"""

import json
from pathlib import Path

from prmkit.models import claimed_name
from prmkit.reward.likelihood import PREFIX as LIKELIHOOD_PREFIX
from prmkit.reward.likelihood import LikelihoodScorer
from prmkit.reward.model import META_FILE, StepRewardModel, format_for_scoring
from prmkit.reward.scoring import Encoded, Scorer, encode_solution
from prmkit.reward.value import ValueModel
from prmkit.types import Scores, solution_key

SCORE_CHUNK = 256  # solutions appended together; a killed run loses at most one chunk


BACKENDS = ("hf", "vllm")


def load_reward_model(
    path_or_id: str,
    trust_remote_code: bool = False,
    revision: str | None = None,
    backend: str = "hf",
    **kwargs,
):
    """A ``LikelihoodScorer`` for ``likelihood:PATH``, a ``ValueModel`` for a value verifier's directory,
    else a ``StepRewardModel`` (PRM, ORM, released); with ``backend="vllm"`` a PRM/ORM on vLLM's engine
    (``reward.vllm.VLLMScorer``). Code shipped with the model runs only with ``trust_remote_code``;
    ``revision`` pins a hub id."""
    if backend not in BACKENDS:
        raise ValueError(f"reward backend: unknown {backend!r}; valid: {', '.join(BACKENDS)}")
    path = _likelihood_path(path_or_id)
    if path is not None:
        if backend != "hf":
            raise ValueError(f"{path_or_id}: the likelihood scorer runs on the hf backend only")
        unknown = sorted(set(kwargs) - {"dtype", "device", "max_length"})
        if unknown:
            raise ValueError(f"{path_or_id}: the likelihood scorer takes no {', '.join(unknown)}")
        return LikelihoodScorer.from_pretrained(
            path, trust_remote_code=trust_remote_code, revision=revision, **kwargs
        )
    meta = Path(path_or_id) / META_FILE
    if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("kind") == "value":
        if backend != "hf":
            raise ValueError(f"{path_or_id}: a value verifier scores with the hf backend only")
        return ValueModel.from_pretrained(path_or_id, trust_remote_code=trust_remote_code)
    if backend == "vllm":
        from prmkit.reward.vllm import VLLMScorer

        return VLLMScorer(path_or_id, trust_remote_code=trust_remote_code, revision=revision, **kwargs)
    return StepRewardModel.from_pretrained(
        path_or_id, trust_remote_code=trust_remote_code, revision=revision, **kwargs
    )


def _likelihood_path(spec) -> str | None:
    """The generator's path of ``likelihood:PATH``; None for any other model."""
    spec = str(spec)
    return spec[len(LIKELIHOOD_PREFIX) :] if spec.startswith(LIKELIHOOD_PREFIX) else None


def _model_claim(model) -> dict[str, str]:
    """What a score file's claim records of ``model`` (``models.claimed_name``); ``likelihood:PATH`` as
    that path and ``scorer: likelihood``."""
    path = _likelihood_path(model)
    if path is None:
        return {"model": claimed_name(model)}
    return {"model": claimed_name(path), "scorer": "likelihood"}


def score_solutions(
    model, solutions, problems, out_path, batch_size: int = 16, progress: bool = True, origin: str = "score",
    trust_remote_code: bool = False, revision: str | None = None, ray=None, backend: str = "hf", **kwargs,
):  # fmt: skip
    """Append ``{problem_id, sample_id, scores}`` for every solution not yet in ``out_path`` (resumes),
    loading the reward model ``model`` (a path or id; ``trust_remote_code``, ``revision`` and ``kwargs`` go
    to ``load_reward_model``) only when work is left, and recording where it came from (a local path, or
    a hub id and its commit) in ``io.meta_path(out_path)``. ``origin`` (the samples file) heads error
    messages. ``backend`` "vllm" scores on vLLM's engine (``reward.vllm``). With an enabled ``ray``
    (``distributed.RayConfig``) the model is loaded in Ray workers, which score shards of each chunk;
    this process still writes every record. Returns (newly scored, already there)."""
    from prmkit.io import open_appender, write_source

    missing = sorted({s.problem_id for s in solutions} - set(problems))
    if missing:
        raise ValueError(f"{origin}: {len(missing)} problems of the samples not found, e.g. {missing[0]}")
    # what scores depend on
    claim = {**_model_claim(model), "revision": revision, "backend": backend, **kwargs}
    # chunks of fixed bounds, each appended in one write: a chunk cut short by a kill is scored again
    # whole, in the same length-sorted batches, so the scores equal an uninterrupted run's to the bit
    starts = range(0, len(solutions), SCORE_CHUNK)
    units = [[s.key for s in solutions[i : i + SCORE_CHUNK]] for i in starts]
    appender, done = open_appender(out_path, key=solution_key, units=units, config=claim)
    todo = [s for s in solutions if s.key not in done]
    left = {s.key for s in todo}
    bar = rm = None
    try:
        with appender:
            if todo:
                hub = {
                    "trust_remote_code": trust_remote_code,
                    "revision": revision,
                    "backend": backend,
                    **kwargs,
                }
                if ray is not None and ray.enabled:
                    from prmkit.distributed import RayScorer

                    rm = RayScorer(str(model), ray, **hub)
                else:
                    rm = load_reward_model(str(model), **hub)
                write_source(out_path, getattr(rm, "source", {}), **kwargs)
                if progress:  # after the model loaded: a refused model prints one line only
                    from tqdm.auto import tqdm

                    bar = tqdm(total=len(todo), desc=f"scoring {Path(out_path).name}", unit="solution")
            for start in starts:
                chunk = [s for s in solutions[start : start + SCORE_CHUNK] if s.key in left]
                if not chunk:
                    continue
                scores = rm.score(
                    [problems[s.problem_id].question for s in chunk],
                    [s.steps for s in chunk],
                    batch_size=batch_size,
                )
                appender.write_many(
                    Scores(s.problem_id, s.sample_id, sc) for s, sc in zip(chunk, scores, strict=True)
                )
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
        if hasattr(rm, "close"):  # Ray workers
            rm.close()
    return len(todo), len(solutions) - len(todo)


__all__ = [
    "LIKELIHOOD_PREFIX",
    "Encoded",
    "Scorer",
    "encode_solution",
    "LikelihoodScorer",
    "StepRewardModel",
    "ValueModel",
    "format_for_scoring",
    "load_reward_model",
    "score_solutions",
]
