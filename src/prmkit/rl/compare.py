"""The demo's RL section: SFT against RFT, outcome and process PPO, outcome and process GRPO over several
seeds, and RL + verification.

Math-Shepherd's comparison: every method starts from the SFT generator and trains on the train split;
each is run once per seed (its config's ``seed`` + 0, 1, ... ``seeds - 1``) and judged by greedy
accuracy on the report's test problems. PPO's own held-out curve uses other test-split problems
(``held_out``), never the ones reported. ``outcome`` PPO takes the ORM's score as its reward,
``process`` PPO the PRM's step scores, ``answer`` PPO the graded final answer (no verifier);
``grpo-outcome``, ``grpo-process`` and ``grpo-answer`` are GRPO with the same rewards (``grpo`` stage,
held-out curve as PPO's). Each method's runs use its own seeds only, so adding one leaves the others'
numbers as they were. Each run is a job (``jobs.Job``), so the demo runs them side by side on its
``demo.workers`` processes.

"RL + verification": the first seed's process-PPO policy samples ``bon_samples`` solutions per test
problem, the PRM picks one (by ``demo.prm_aggregation``, min by default), and the result stands beside
the SFT generator's best-of-N at the same N.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prmkit.evaluate.stats import spread
from prmkit.jobs import Job, Timer, finished
from prmkit.rl.grpo import GRPOConfig, train_grpo
from prmkit.rl.ppo import PPOConfig, train_ppo
from prmkit.rl.rft import RFTConfig, train_rft
from prmkit.sample import SampleConfig, build_policy, greedy_accuracy, sample_problems
from prmkit.types import Problem

METHODS = ("rft", "outcome", "process", "answer", "grpo-outcome", "grpo-process", "grpo-answer")
LABELS = {
    "rft": "RFT",
    "outcome": "outcome PPO",
    "process": "process PPO",
    "answer": "answer PPO",
    "grpo-outcome": "outcome GRPO",
    "grpo-process": "process GRPO",
    "grpo-answer": "answer GRPO",
}
REWARD_MODEL = {"outcome": "ORM", "process": "PRM", "answer": None}  # the verifier each reward reads


@dataclass(frozen=True)
class RLConfig:
    methods: tuple[str, ...] = ()  # () = no RL section; valid: METHODS
    seeds: int = 3
    bon_samples: int = 16  # RL + verification: samples per test problem (0 = skip)

    def __post_init__(self):
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"rl.methods: unknown {', '.join(unknown)}; valid: {', '.join(METHODS)}")
        if self.seeds < 1 or self.bon_samples < 0:
            raise ValueError("rl: seeds must be >= 1 and bon_samples >= 0")

    def verifiers(self) -> set[str]:
        """The demo verifiers the chosen methods need (``prm``, ``orm``)."""
        return {REWARD_MODEL[reward_of(m)].lower() for m in self.methods if REWARD_MODEL.get(reward_of(m))}


def reward_of(method: str) -> str:
    """The reward a method's runs take: ``grpo-process`` -> ``process``; PPO's methods are their reward."""
    return method.removeprefix("grpo-")


def rl_run(
    method: str, seed: int, cfg: PPOConfig | GRPOConfig | RFTConfig, generator: Path, train: list[Problem],
    test: list[Problem], held_out: list[Problem], sample: SampleConfig, out: Path,
) -> float:  # fmt: skip
    """Train (or resume, or find finished) one method's run for one seed in ``out/{method}-seed{seed}``
    from the generator; its greedy accuracy on ``test``."""
    name = f"{method}-seed{seed}"
    path = out / name
    if method == "rft":
        policy = train_rft(cfg, generator, train, path)
    elif method.startswith("grpo-"):
        policy = train_grpo(cfg, generator, train, path, eval_problems=held_out)
    else:
        policy = train_ppo(cfg, generator, train, path, eval_problems=held_out)
    return greedy_accuracy(policy, test, sample, out / f"samples_test_greedy_{name}.jsonl")


def rl_jobs(
    cfg: RLConfig,
    ppo: PPOConfig,
    rft: RFTConfig,
    generator: Path,
    train: list[Problem],
    test: list[Problem],
    held_out: list[Problem],
    models: dict[str, Path | str],
    sample: SampleConfig,
    run_dir: Path,
    grpo: GRPOConfig | None = None,
    prm_aggregation: str = "min",
    trained_by: dict[str, str] | None = None,
) -> list[Job]:
    """One job per method and seed, ``rl_{method}-seed{k}`` (training and the greedy evaluation), and RL +
    verification after the first process-PPO run; ``rl_summary`` reads their results. ``trained_by``:
    verifier (``PRM``, ``ORM``) -> the job that trains it, which a run with its reward waits for."""
    trained_by = trained_by or {}
    out = run_dir / "rl"
    jobs = []
    for method in cfg.methods:
        verifier = REWARD_MODEL.get(reward_of(method))
        if verifier and verifier not in models:
            raise ValueError(f"rl: {LABELS[method]} needs the {verifier}; add it to demo.verifiers")
        for seed in range(cfg.seeds):
            if method == "rft":
                run = replace(rft, seed=rft.seed + seed)
            else:
                base = (grpo or GRPOConfig(reward="answer")) if method.startswith("grpo-") else ppo
                run = replace(
                    base, reward=reward_of(method), reward_model=str(models[verifier]) if verifier else "",
                    seed=base.seed + seed,
                )  # fmt: skip
            args = (method, seed, run, generator, train, test, held_out, sample, out)
            name = f"{method}-seed{seed}"
            done = (out / name / "config.json").exists() and finished(
                out / f"samples_test_greedy_{name}.jsonl", len(test)
            )
            after = (trained_by[verifier],) if verifier in trained_by else ()
            jobs.append(Job(f"rl_{name}", rl_run, args, after=after, done=done))
    if cfg.bon_samples and "process" in cfg.methods and "PRM" in models:
        args = (cfg, out / "process-seed0", test, models["PRM"], sample, out, prm_aggregation)
        done = finished(out / "scores_test_process-seed0_prm.jsonl", len(test) * cfg.bon_samples)
        after = ("rl_process-seed0", *([trained_by["PRM"]] if "PRM" in trained_by else []))
        jobs.append(Job("rl_verification", rl_verification, args, after=after, done=done))
    return jobs


def rl_summary(
    cfg: RLConfig, results: dict[str, Any], generator: Path, test: list[Problem], sample: SampleConfig,
    run_dir: Path, sft_greedy: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``{"greedy": {label: {"seeds": [...], "mean", "std", "ci95"}}, "verification": {...}}`` from the
    results of ``rl_jobs``' jobs; the SFT generator's greedy accuracy is measured unless given."""
    if sft_greedy is None:  # the demo measured it already unless demo.greedy is off
        sft_greedy = greedy_accuracy(
            generator, test, sample, run_dir / "rl" / "samples_test_greedy_sft.jsonl"
        )
    greedy = {"SFT": [sft_greedy]}
    for method in cfg.methods:
        greedy[LABELS[method]] = [results[f"rl_{method}-seed{seed}"] for seed in range(cfg.seeds)]
    result: dict[str, Any] = {"greedy": {k: {"seeds": v, **spread(v)} for k, v in greedy.items()}}
    if "rl_verification" in results:
        result["verification"] = results["rl_verification"]
    return result


def run_rl(cfg: RLConfig, ppo: PPOConfig, rft: RFTConfig, generator: Path, train: list[Problem], test: list[Problem],
           held_out: list[Problem], models: dict[str, Path | str], sample: SampleConfig, run_dir: Path, timer: Timer,
           sft_greedy: float | None = None, grpo: GRPOConfig | None = None, prm_aggregation: str = "min",
) -> dict[str, Any]:  # fmt: skip
    """Every method for every seed (each resumes or is skipped when finished) on ``timer``'s workers,
    evaluated: ``rl_summary``'s result."""
    jobs = rl_jobs(
        cfg, ppo, rft, generator, train, test, held_out, models, sample, run_dir, grpo, prm_aggregation
    )
    return rl_summary(cfg, timer.run_all(jobs), generator, test, sample, run_dir, sft_greedy)


def rl_verification(
    cfg: RLConfig, policy: Path, test: list[Problem], prm: Path | str, sample: SampleConfig, out: Path,
    how: str = "min",
) -> dict[str, Any]:  # fmt: skip
    """RL + verification: ``bon_samples`` samples per test problem from ``policy``, scored by the PRM, its
    best-of-N (by ``how``) beside the generator's at the same N."""
    from prmkit.evaluate.bon import bon_report
    from prmkit.io import read_scores
    from prmkit.reward import score_solutions

    scfg = replace(sample, n=cfg.bon_samples)
    sols = sample_problems(
        build_policy(str(policy), scfg), test, scfg, out / "samples_test_process-seed0.jsonl"
    )
    by_id = {p.id: p for p in test}
    scores_path = out / "scores_test_process-seed0_prm.jsonl"
    score_solutions(prm, sols, by_id, scores_path, 32)
    rows, table = bon_report(sols, by_id, {"PRM": read_scores(scores_path)}, {"PRM": [how]})
    return {
        "policy": "process-seed0",
        "aggregation": how,
        "samples_per_problem": cfg.bon_samples,
        "bon": rows,
        "bon_table": table,
    }
