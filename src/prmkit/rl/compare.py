"""The demo's RL section: SFT against RFT, outcome and process PPO, outcome and process GRPO over several
seeds, and RL + verification.

Math-Shepherd's comparison: every method starts from the SFT generator and trains on the train split;
each is run once per seed (its config's ``seed`` + 0, 1, ... ``seeds - 1``) and judged by greedy
accuracy on the report's test problems. PPO's own held-out curve uses other test-split problems
(``held_out``), never the ones reported. ``outcome`` PPO takes the ORM's score as its reward,
``process`` PPO the PRM's step scores, ``answer`` PPO the graded final answer (no verifier);
``grpo-outcome``, ``grpo-process`` and ``grpo-answer`` are GRPO with the same rewards (``grpo`` stage,
held-out curve as PPO's). Each method's runs use its own seeds only, so adding one leaves the others'
numbers as they were.

"RL + verification": the first seed's process-PPO policy samples ``bon_samples`` solutions per test
problem, the PRM picks one (by ``demo.prm_aggregation``, min by default), and the result stands beside
the SFT generator's best-of-N at the same N.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prmkit.evaluate.stats import spread
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


def run_rl(
    cfg: RLConfig,
    ppo: PPOConfig,
    rft: RFTConfig,
    generator: Path,
    train: list[Problem],
    test: list[Problem],
    held_out: list[Problem],
    models: dict[str, Path],
    sample: SampleConfig,
    run_dir: Path,
    timer,
    sft_greedy: float | None = None,
    grpo: GRPOConfig | None = None,
    prm_aggregation: str = "min",
) -> dict[str, Any]:
    """Train every method for every seed (each resumes or is skipped when finished), evaluate, and return
    ``{"greedy": {label: {"seeds": [...], "mean", "std", "ci95"}}, "verification": {...}}``."""
    out = run_dir / "rl"
    if sft_greedy is None:  # the demo measured it already unless demo.greedy is off
        sft_greedy = greedy_accuracy(generator, test, sample, out / "samples_test_greedy_sft.jsonl")
    greedy = {"SFT": [sft_greedy]}
    policies: dict[tuple[str, int], Path] = {}
    for method in cfg.methods:
        for seed in range(cfg.seeds):
            name = f"{method}-seed{seed}"
            path = out / name
            done = (path / "config.json").exists()
            if method == "rft":
                policies[(method, seed)] = timer.run(
                    f"rl_{name}",
                    train_rft,
                    replace(rft, seed=rft.seed + seed),
                    generator,
                    train,
                    path,
                    done=done,
                )
            else:
                reward = reward_of(method)
                verifier = REWARD_MODEL[reward]
                if verifier and verifier not in models:
                    raise ValueError(f"rl: {LABELS[method]} needs the {verifier}; add it to demo.verifiers")
                if method.startswith("grpo-"):
                    base, trainer = grpo or GRPOConfig(reward="answer"), train_grpo
                else:
                    base, trainer = ppo, train_ppo
                per_run = dict(
                    reward=reward,
                    reward_model=str(models[verifier]) if verifier else "",
                    seed=base.seed + seed,
                )
                policies[(method, seed)] = timer.run(
                    f"rl_{name}",
                    trainer,
                    replace(base, **per_run),
                    generator,
                    train,
                    path,
                    eval_problems=held_out,
                    done=done,
                )
            acc = timer.run(
                f"rl_{name}_eval",
                greedy_accuracy,
                policies[(method, seed)],
                test,
                sample,
                out / f"samples_test_greedy_{name}.jsonl",
            )
            greedy.setdefault(LABELS[method], []).append(acc)
    result: dict[str, Any] = {"greedy": {k: {"seeds": v, **spread(v)} for k, v in greedy.items()}}
    if cfg.bon_samples and ("process", 0) in policies and "PRM" in models:
        result["verification"] = _rl_verification(
            cfg, policies[("process", 0)], test, models["PRM"], sample, out, timer, prm_aggregation
        )
    return result


def _rl_verification(
    cfg: RLConfig,
    policy: Path,
    test: list[Problem],
    prm: Path,
    sample: SampleConfig,
    out: Path,
    timer,
    how: str = "min",
):
    from prmkit.evaluate.bon import bon_report
    from prmkit.io import read_scores
    from prmkit.reward import score_solutions

    scfg = replace(sample, n=cfg.bon_samples)
    sols = timer.run(
        "rl_verification_sample", sample_problems, build_policy(str(policy), scfg), test, scfg,
        out / "samples_test_process-seed0.jsonl",
    )  # fmt: skip
    by_id = {p.id: p for p in test}
    scores_path = out / "scores_test_process-seed0_prm.jsonl"
    timer.run("rl_verification_score", score_solutions, prm, sols, by_id, scores_path, 32)
    rows, table = bon_report(sols, by_id, {"PRM": read_scores(scores_path)}, {"PRM": [how]})
    return {
        "policy": "process-seed0",
        "aggregation": how,
        "samples_per_problem": cfg.bon_samples,
        "bon": rows,
        "bon_table": table,
    }
