"""Rejection-sampling fine-tuning (RFT, Yuan et al. 2023): Math-Shepherd's baseline for RL.

Sample ``k`` solutions per training problem from the generator at T > 0 (the sampling stage, calculator
on), keep the distinct correct ones, and fine-tune the generator on them with the SFT stage
(``policy.sft.train_sft``, starting from the generator's directory). Solutions are distinct when their
whitespace-normalised texts differ; the reference solution is kept too when ``with_reference`` (Yuan
et al. train on the SFT data plus the sampled paths), and a sample equal to it is not counted twice.

Resumable in both halves: sampling appends to ``OUT.checkpoints/samples.jsonl`` and continues at the
first problem without samples; fine-tuning resumes from the Trainer's last checkpoint in the same
folder. ``OUT/prmkit_rl.json`` records what was kept.

Departures: Yuan et al. sample 100 paths per problem and dedupe by the list of equations; here ``k``
is small (the world's problems have few distinct paths) and texts are compared whole. The default
learning rate is low: on the world, fine-tuning the converged generator again at 5e-4 cost 5 points of
greedy accuracy, at 5e-5 about 1.5 (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from prmkit.io import atomic_write_json
from prmkit.policy.sft import SFTConfig, train_sft
from prmkit.sample import SampleConfig, accuracy_summary, build_policy, sample_problems
from prmkit.training import checkpoint_dir
from prmkit.types import Problem, Solution


@dataclass(frozen=True)
class RFTConfig:
    k: int = 16  # samples per training problem
    max_problems: int = 0  # sample the first N training problems (0 = all)
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 64  # rows per generation batch
    max_per_problem: int = 0  # distinct correct solutions kept per problem (0 = all)
    with_reference: bool = True
    lr: float = 5e-5  # low: re-warming a converged generator to a high rate costs accuracy
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    train_batch_size: int = 16
    warmup_ratio: float = 0.03
    max_length: int = 512
    save_steps: int = 200
    seed: int = 0
    trust_remote_code: bool = False  # run Python code shipped with the generator (a hub model's auto_map)
    revision: str | None = None  # pin the generator's hub id to a branch, tag or commit

    def __post_init__(self):
        if self.max_per_problem < 0 or self.max_problems < 0:
            raise ValueError("rft: max_per_problem and max_problems must be >= 0 (0 = no limit)")
        if self.temperature <= 0:
            raise ValueError("rft.temperature must be > 0: at T=0 the k samples are one")
        self.sample_config()  # the two stages' own checks, with rft's names in the message
        self.sft_config("generator")

    def sample_config(self) -> SampleConfig:
        try:
            return SampleConfig(
                n=self.k,
                temperature=self.temperature,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                batch_size=self.batch_size,
                seed=self.seed,
                trust_remote_code=self.trust_remote_code,
                revision=self.revision,
            )
        except ValueError as e:
            raise ValueError(f"rft: {str(e).removeprefix('sample: ').replace('sample.', 'rft.')}") from None

    def sft_config(self, generator: str | Path) -> SFTConfig:
        try:
            return SFTConfig(
                model=str(generator),
                lr=self.lr,
                epochs=self.epochs,
                max_steps=self.max_steps,
                batch_size=self.train_batch_size,
                warmup_ratio=self.warmup_ratio,
                max_length=self.max_length,
                save_steps=self.save_steps,
                seed=self.seed,
                trust_remote_code=self.trust_remote_code,
                revision=self.revision,
            )
        except ValueError as e:
            raise ValueError(f"rft: {str(e).removeprefix('sft: ')}") from None


def _normalise(text: str) -> str:
    return " ".join(text.split())


def rft_dataset(
    problems: list[Problem], solutions: list[Solution], max_per_problem: int = 0, with_reference: bool = True
) -> tuple[list[Problem], dict[str, int]]:
    """Training examples (one ``Problem`` per kept solution) and counts of what was kept.

    >>> p = Problem(id="a", question="1+1?", answer="2", solution="1+1 = 2\\n#### 2")
    >>> texts = ["1+1=2\\n#### 2", "1+1=2\\n####  2", "1+1 = 2\\n#### 2", "#### 3"]  # 3rd: the reference
    >>> sols = [Solution("a", i, t, [], correct=i < 3) for i, t in enumerate(texts)]
    >>> train, stats = rft_dataset([p], sols)
    >>> [x.solution for x in train], stats["distinct_correct"]
    (['1+1 = 2\\n#### 2', '1+1=2\\n#### 2'], 1)
    """
    by_problem: dict[str, list[Solution]] = {}
    for s in solutions:
        by_problem.setdefault(s.problem_id, []).append(s)
    train: list[Problem] = []
    stats = {
        "problems": len(problems),
        "samples": len(solutions),
        "correct": 0,
        "distinct_correct": 0,
        "problems_with_correct": 0,
        "references": 0,
    }
    for p in problems:
        seen: set[str] = set()
        if with_reference and p.solution:
            seen.add(_normalise(p.solution))
            train.append(p)
            stats["references"] += 1
        kept = 0
        correct = [s for s in sorted(by_problem.get(p.id, []), key=lambda s: s.sample_id) if s.correct]
        stats["correct"] += len(correct)
        stats["problems_with_correct"] += bool(correct)
        for s in correct:
            key = _normalise(s.text)
            if key in seen or (max_per_problem and kept >= max_per_problem):
                continue
            seen.add(key)
            kept += 1
            train.append(replace(p, solution=s.text))
        stats["distinct_correct"] += kept
    stats["examples"] = len(train)
    return train, stats


def train_rft(
    cfg: RFTConfig,
    generator_dir: str | Path,
    problems: list[Problem],
    out_dir: str | Path,
    progress: bool = True,
) -> Path:
    """Sample, filter and fine-tune (module docstring); the new generator lands in ``out_dir``."""
    out_dir = Path(out_dir)
    ckpt = checkpoint_dir(out_dir)
    stats_path = ckpt / "rft.json"
    if not (out_dir / "config.json").exists():
        problems = problems[: cfg.max_problems] if cfg.max_problems else problems
        if not problems:
            raise ValueError("rft: no training problems")
        sample_cfg = cfg.sample_config()
        sols = sample_problems(
            build_policy(str(generator_dir), sample_cfg),
            problems,
            sample_cfg,
            ckpt / "samples.jsonl",
            progress=progress,
        )
        train, stats = rft_dataset(problems, sols, cfg.max_per_problem, cfg.with_reference)
        if not train:
            raise ValueError(
                f"rft: no correct sample among {len(sols)} solutions of {len(problems)} problems and no "
                "reference solutions; raise rft.k or rft.temperature"
            )
        stats["sampled_accuracy"] = accuracy_summary(sols, ks=())["accuracy"]
        atomic_write_json(stats_path, stats)
        train_sft(cfg.sft_config(generator_dir), train, out_dir)
    meta = out_dir / "prmkit_rl.json"
    if not meta.exists():  # also after a kill between the model's rename and this write
        stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.exists() else {}
        atomic_write_json(
            meta, {"method": "rft", "policy": str(generator_dir), "config": asdict(cfg), **stats}
        )
    return out_dir
