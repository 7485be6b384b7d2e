"""What PPO and GRPO share: the clipped surrogate loss, the resumable state file, and the iteration loop.

``train_loop`` runs one policy-gradient method from a policy directory: it loads the policy and a frozen
copy as the KL reference, samples ``samples_per_problem`` rollouts for ``problems_per_iteration``
training problems per iteration through the policy backend (``HFPolicy`` on the live weights, or a
``vllm`` engine handed the live weights after every update; calculator on), scores them
(``rollout.score_rollouts``), hands them to the method's ``optimise``, and writes one metrics line per
iteration to ``OUT.checkpoints/metrics.jsonl`` (line 0: the starting greedy accuracy). Every
``save_every`` iterations it saves policy, the method's other modules (PPO's critic), optimiser,
schedule, RNG states and the iteration to ``OUT.checkpoints/state.pt``; a killed run continues from
there, dropping the metric lines of iterations it redoes, and only with the settings, policy and problems
it started with (``run_config``, claimed in ``state.meta.json``). ``OUT`` appears whole, an ordinary model
directory with ``metrics.jsonl`` and ``prmkit_rl.json``, when training finishes.

The method supplies ``setup(policy) -> (modules, param_groups)`` (modules saved with the state;
param groups for AdamW, the policy's first) and ``optimise(policy, ref, opt, sched, batch, positions,
scores, it) -> metrics`` (rollouts in ``batch`` come in groups of ``samples_per_problem``, one per
problem); its config is a ``RolloutConfig`` (the fields the loop reads) with the method's own added.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from prmkit.io import (
    JsonlAppender,
    atomic_write_json,
    claim_output,
    fingerprint,
    read_jsonl,
    repair_tail,
    write_jsonl,
)
from prmkit.models import check_hub_fields
from prmkit.rl import rollout
from prmkit.training import checkpoint_dir
from prmkit.types import Problem


def masked_mean(x: torch.Tensor, mask: torch.Tensor, n_tokens: float | None = None) -> torch.Tensor:
    """Mean over the masked entries, or their sum over ``n_tokens`` when given (PPO's module docstring)."""
    return (x * mask).sum() / (n_tokens if n_tokens else mask.sum().clamp(min=1))


def ppo_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
    n_tokens: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate loss over masked tokens, and the fraction of tokens where the clip was active.

    >>> logp, adv = torch.log(torch.tensor([[1.5, 0.5, 1.1]])), torch.tensor([[1.0, -1.0, 2.0]])
    >>> loss, frac = ppo_policy_loss(logp, torch.zeros(1, 3), adv, torch.ones(1, 3), clip=0.2)
    >>> round(loss.item(), 4), round(frac.item(), 4)  # ratios 1.5 -> 1.2, 0.5 -> 0.8, 1.1 kept
    (-0.8667, 0.6667)
    """
    ratio = torch.exp(logp - old_logp)  # (B, T)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask, n_tokens)
    return loss, masked_mean((clipped > unclipped).float(), mask)


def save_state(path: Path, iteration: int, **parts) -> None:
    """Tensors and plain values only (state dicts, the RNG states as a byte tensor and a tuple of ints),
    so ``load_state`` can read the file with torch's weights-only unpickler."""
    state = {name: part.state_dict() for name, part in parts.items()}
    state.update(iteration=iteration, torch_rng=torch.get_rng_state(), python_rng=random.getstate())
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill while saving leaves the previous state intact


def load_state(path: Path, device, method: str, **parts) -> int:
    """Restore what ``save_state`` wrote; the iteration to continue from (0 without a state).

    A run directory may come from someone else (a shared disk, a downloaded run), so the file is read
    with ``weights_only=True``: a pickle that would build any object other than tensors, containers and
    numbers (and so could run code) is refused with a ValueError naming the file, never executed."""
    import pickle

    if not path.exists():
        return 0
    name = method.upper()
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        called = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))  # torch's text; not its advice
        why = f"it would call {called.group(1)}" if called else "it is not a file of tensors and plain values"
        raise ValueError(
            f"{path}: not a {name} state prmkit wrote (refused to unpickle it: {why}); "
            f"delete it to start this {name} run over"
        ) from None
    expected = {*parts, "iteration", "torch_rng", "python_rng"}
    if not isinstance(state, dict) or not expected <= set(state):
        have = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not a {name} state prmkit wrote (expected {sorted(expected)}, got {have})")
    for part_name, part in parts.items():
        part.load_state_dict(state[part_name])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return state["iteration"]


ROLLOUT_BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class RolloutConfig:
    """The fields ``train_loop`` reads, shared by PPO and GRPO (each adds its own and may change a
    default); ``check(stage)`` validates them, naming the stage."""

    reward: str = "process"  # process (PRM score per step), outcome (final score), answer (graded)
    reward_model: str = ""  # PRM/ORM/value directory; not used by "answer"
    step_reward: str = "score"  # process: each step's score (paper) or its change, "delta"
    kl_coef: float = 0.04
    clip: float = 0.2
    lr: float = 5e-5  # for the world's tiny models; the paper's 7B runs use rates below 1e-6
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    iterations: int = 40
    problems_per_iteration: int = 32
    samples_per_problem: int = 2
    minibatch_size: int = 16
    temperature: float = 0.7
    max_new_tokens: int = 256
    batch_size: int = 64  # rows per generation batch
    save_every: int = 10
    eval_problems: int = 100  # held-out problems for greedy accuracy (0 = none)
    eval_every: int = 10
    seed: int = 0
    trust_remote_code: bool = False  # run Python code shipped with the policy (a hub model's auto_map)
    revision: str | None = None  # pin the policy's hub id to a branch, tag or commit
    backend: str = "hf"  # rollouts: hf (the live weights) or vllm (an engine given them after every update)

    def check(self, stage: str) -> None:
        check_hub_fields(self, stage)
        if self.backend not in ROLLOUT_BACKENDS:
            raise ValueError(
                f"{stage}.backend: unknown {self.backend!r}; valid: {', '.join(ROLLOUT_BACKENDS)}"
            )
        for name, valid in (("reward", rollout.REWARDS), ("step_reward", rollout.STEP_REWARDS)):
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"{stage}.{name}: unknown {getattr(self, name)!r}; valid: {', '.join(valid)}"
                )
        if self.reward != "answer" and not self.reward_model:
            raise ValueError(
                f"{stage}.reward={self.reward} needs {stage}.reward_model (a PRM or ORM directory)"
            )
        if self.kl_coef < 0 or self.clip <= 0 or self.max_grad_norm <= 0:
            raise ValueError(f"{stage}: kl_coef must be >= 0; clip and max_grad_norm > 0")
        if self.lr <= 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"{stage}: lr must be > 0, warmup_ratio in [0, 1)")
        counts = (self.iterations, self.problems_per_iteration, self.samples_per_problem, self.minibatch_size)
        if min(*counts, self.max_new_tokens, self.batch_size, self.save_every) < 1:
            raise ValueError(f"{stage}: iterations, batch sizes, max_new_tokens, save_every must be >= 1")
        if self.temperature <= 0 or self.eval_problems < 0 or self.eval_every < 1:
            raise ValueError(
                f"{stage}: temperature must be > 0 (sampled rollouts), eval_problems >= 0, eval_every >= 1"
            )


# what a resumed run may change: its length (train on), and knobs of speed and bookkeeping
RESUME_FREE = ("iterations", "batch_size", "backend", "save_every", "eval_every")


def run_config(method: str, cfg: Any, source: dict, problems: list[Problem], evals: list[Problem]) -> dict:
    """What a resumed run must share with the one that saved its state: the stage's settings but
    ``RESUME_FREE`` (the reward model by ``models.claimed_name``), the policy's model, and the training
    and held-out problems (``io.fingerprint`` of their ids)."""
    from prmkit.models import claimed_name

    settings = {k: v for k, v in asdict(cfg).items() if k not in RESUME_FREE}
    if settings.get("reward_model"):
        settings["reward_model"] = claimed_name(settings["reward_model"])
    fields = {f"{method}.{k}": v for k, v in settings.items()}
    problem_ids = {
        k: fingerprint([p.id for p in ps], "problems")
        for k, ps in (("problems", problems), ("held_out", evals))
    }
    return {**fields, "policy": source, **problem_ids}


def _rollout_sampler(cfg: Any, policy, tok, policy_dir, device):
    """The policy backend rollouts are sampled from, calculator on: ``hf`` samples from the live weights
    themselves; ``vllm`` is an engine started from ``policy_dir`` whose weights ``_sync`` replaces with the
    live ones (``VLLMPolicy.load_weights``) whenever they have changed."""
    if cfg.backend == "vllm":
        from prmkit.policy.vllm import VLLMPolicy

        return VLLMPolicy(
            str(policy_dir),
            max_new_tokens=cfg.max_new_tokens,
            trust_remote_code=cfg.trust_remote_code,
            revision=cfg.revision,
            dtype="float32",  # the policy trains in float32: rollouts from the same numbers
            seed=cfg.seed,
        )
    from prmkit.policy.hf import HFPolicy

    return HFPolicy(
        policy, tok, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, device=str(device)
    )


def _sync(cfg: Any, sampler, policy, ckpt: Path) -> None:
    """Hand the live weights to a ``vllm`` rollout engine (through a checkpoint it reloads in place)."""
    if cfg.backend == "vllm":
        weights = ckpt / "rollout_weights"
        policy.save_pretrained(str(weights))
        sampler.load_weights(weights)


def summary(metrics: list[dict]) -> dict:
    evals = [m for m in metrics if "greedy_accuracy" in m]
    return {
        "iterations": max((m["iteration"] for m in metrics), default=0),
        "greedy_accuracy_start": evals[0]["greedy_accuracy"] if evals else None,
        "greedy_accuracy_end": evals[-1]["greedy_accuracy"] if evals else None,
        "seconds": round(sum(m.get("t_total", 0.0) for m in metrics), 1),
    }


def _draw(cfg: Any, sampler, tok, problems, by_id, reward_model, it: int, keep, max_draws: int):
    """Iteration ``it``'s rollouts, their reward positions and scores, in ``problems_per_iteration``
    groups (``train_loop``'s ``keep`` and ``max_draws``), and what was drawn: every drawn rollout and
    its correctness, the scoring seconds, and with ``keep`` the draws taken and the fraction of drawn
    groups kept (``signal_groups``)."""
    k, n = cfg.problems_per_iteration, cfg.samples_per_problem
    n_draws = max_draws if keep is not None else 1
    kept: list[tuple] = []  # (rollouts, positions, scores) of a group ``keep`` took, in draw order
    spare: list[tuple] = []  # the groups it turned down
    drawn: dict[str, Any] = {"rollouts": [], "correct": [], "t_score": 0.0}
    for d in range(n_draws):
        slot = it * n_draws + d  # one draw an iteration: slot = it, as without dynamic sampling
        rollouts = rollout.sample_rollouts(
            sampler,
            tok,
            rollout.iteration_problems(problems, slot, k, cfg.seed),
            n,
            cfg.temperature,
            seed=cfg.seed * 1_000_003 + slot,
        )
        t1 = time.perf_counter()
        positions, scores, correct = rollout.score_rollouts(
            rollouts, by_id, cfg.reward, reward_model, cfg.step_reward
        )
        drawn["t_score"] += time.perf_counter() - t1
        drawn["rollouts"] += rollouts
        drawn["correct"] += correct
        for g in range(0, k * n, n):
            group = (rollouts[g : g + n], positions[g : g + n], scores[g : g + n])
            (kept if keep is None or keep(group[2]) else spare).append(group)
        if len(kept) >= k:
            break
    if keep is not None:
        drawn.update(draws=d + 1, signal_groups=len(kept) / ((d + 1) * k))
    groups = (kept + spare)[:k]  # short of k kept groups after the last draw: topped up
    rollouts, positions, scores = ([x for grp in groups for x in grp[i]] for i in range(3))
    return rollouts, positions, scores, drawn


def train_loop(
    method: str,
    cfg: Any,
    policy_dir: str | Path,
    problems: list[Problem],
    out_dir: str | Path,
    setup: Callable[[Any], tuple[dict[str, torch.nn.Module], list[dict]]],
    optimise: Callable[..., dict],
    epochs: int,
    eval_problems: list[Problem] | None = None,
    progress: bool = True,
    keep: Callable[[list[list[float]]], bool] | None = None,
    max_draws: int = 1,
) -> Path:
    """Train the policy in ``policy_dir`` on ``problems`` with ``method``; see the module docstring.

    ``epochs`` passes over each iteration's rollouts in minibatches size the learning-rate schedule.
    ``keep``, given a group's reward scores, says whether the group goes into the batch (dynamic
    sampling, DAPO): an iteration then draws ``problems_per_iteration`` more problems, up to
    ``max_draws`` times, until that many groups are kept, and tops the batch up with turned-down groups
    if the draws run out, so every batch has the same size. Draw d of iteration i takes the problems
    and sampling seed of slot ``i * max_draws + d`` (the same on resume); without ``keep`` slot i.
    The rollout statistics (``accuracy``, ``steps``, ...) are over every drawn rollout.
    A finished ``out_dir`` is returned as is.
    """
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from prmkit.models import load_causal_lm, load_tokenizer, model_source

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    if not problems:
        raise ValueError(f"{method}: no training problems")
    evals = (eval_problems or [])[: cfg.eval_problems]
    ckpt = checkpoint_dir(out_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hub = {"trust_remote_code": cfg.trust_remote_code, "revision": cfg.revision}
    tok = load_tokenizer(policy_dir, **hub)
    if not getattr(tok, "is_fast", False):
        raise ValueError(
            f"{method}: {policy_dir} needs a fast tokenizer (character offsets place the rewards)"
        )
    policy = load_causal_lm(policy_dir, dtype="float32", **hub).to(device)
    ref = load_causal_lm(policy_dir, dtype="float32", **hub).to(device).requires_grad_(False)
    source = model_source(policy_dir, policy, cfg.revision)
    state_path, metrics_path = ckpt / "state.pt", ckpt / "metrics.jsonl"
    claim_output(
        state_path,
        run_config(method, cfg, source, problems, evals),
        remedy=f"resume with those settings, give another output directory, or delete {ckpt} to start over",
    )
    modules, param_groups = setup(policy)
    modules = {k: m.to(device) for k, m in modules.items()}
    reward_model = None
    if cfg.reward != "answer":
        from prmkit.reward import load_reward_model

        reward_model = load_reward_model(cfg.reward_model, trust_remote_code=cfg.trust_remote_code)
    opt = torch.optim.AdamW(param_groups, weight_decay=0.0)
    rollouts_per_it = cfg.problems_per_iteration * cfg.samples_per_problem
    total = cfg.iterations * epochs * math.ceil(rollouts_per_it / cfg.minibatch_size)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)

    parts = dict(policy=policy, **modules, optimizer=opt, scheduler=sched)
    start = load_state(state_path, device, method, **parts)
    # iterations after the last saved state are redone: drop their metric lines (and a line torn by a kill)
    repair_tail(metrics_path)
    kept = [m for m in read_jsonl(metrics_path) if m["iteration"] <= start] if metrics_path.exists() else []
    write_jsonl(metrics_path, kept)
    policy.eval()  # no dropout anywhere: rho = 1 before the first update
    for m in modules.values():
        m.eval()
    sampler = _rollout_sampler(cfg, policy, tok, policy_dir, device)
    if start > 0:  # resumed: the engine started from the policy directory, not from the saved state
        _sync(cfg, sampler, policy, ckpt)
    writer = None
    with contextlib.suppress(ImportError):  # TensorBoard if it is installed; the JSONL is the record anyway
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(ckpt / "tensorboard"))
    log = JsonlAppender(metrics_path)
    if start == 0 and evals and not kept:  # kept: a run killed before its first save measured it
        log.write(
            {"iteration": 0, "greedy_accuracy": rollout.greedy_eval(sampler, evals, cfg.max_new_tokens)}
        )
    by_id = {p.id: p for p in problems}
    bar = tqdm(
        total=cfg.iterations, initial=start, desc=f"{method} ({cfg.reward})", unit="it", disable=not progress
    )
    for it in range(start, cfg.iterations):
        t0 = time.perf_counter()
        rollouts, positions, scores, drawn = _draw(
            cfg, sampler, tok, problems, by_id, reward_model, it, keep, max_draws
        )
        t1 = time.perf_counter()
        batch = rollout.collate(rollouts, tok.pad_token_id, device)
        m = optimise(policy, ref, opt, sched, batch, positions, scores, it)
        _sync(cfg, sampler, policy, ckpt)
        t2 = time.perf_counter()
        m.update(rollout.rollout_stats(drawn["rollouts"], drawn["correct"]), iteration=it + 1)
        m.update(lr=sched.get_last_lr()[0], t_generate=t1 - t0 - drawn["t_score"], t_score=drawn["t_score"])
        m.update({k: drawn[k] for k in ("draws", "signal_groups") if k in drawn}, t_optimise=t2 - t1)
        if evals and ((it + 1) % cfg.eval_every == 0 or it + 1 == cfg.iterations):
            m["greedy_accuracy"] = rollout.greedy_eval(sampler, evals, cfg.max_new_tokens)
        m["t_total"] = time.perf_counter() - t0
        m = {k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}
        log.write(m)
        if writer is not None:
            for k, v in m.items():
                writer.add_scalar(f"{method}/{k}", v, it + 1)
        if (it + 1) % cfg.save_every == 0 or it + 1 == cfg.iterations:
            save_state(state_path, it + 1, **parts)
        bar.update(1)
        bar.set_postfix(reward=f"{m['reward_score']:.3f}", kl=f"{m['kl']:.3f}", acc=f"{m['accuracy']:.2f}")
    log.close()
    bar.close()
    sampler.close()
    if writer is not None:
        writer.close()

    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    if tmp.exists():  # left by a run killed while saving
        shutil.rmtree(tmp)
    policy.generation_config.pad_token_id = tok.pad_token_id
    policy.save_pretrained(str(tmp))
    tok.padding_side = "left"
    tok.save_pretrained(str(tmp))
    shutil.copy(metrics_path, tmp / "metrics.jsonl")
    metrics = read_jsonl(metrics_path)
    atomic_write_json(
        tmp / "prmkit_rl.json",
        {"method": method, "policy": str(policy_dir), "policy_source": source, "config": asdict(cfg)}
        | summary(metrics),
    )
    tmp.rename(out_dir)  # "config.json exists" means finished
    return out_dir
