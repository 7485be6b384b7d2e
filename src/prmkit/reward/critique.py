"""Math-Minos (Gao et al. 2024) stage 1: teach a verifier to write step-level critiques first.

Each training example is a solution followed by its critique::

    Question: ...\\nAnswer:\\n<step 1>\\n<step 2>\\nCritique:\\n<critique text><eos>

with the loss on the critique tokens (and EOS) only, via ``prmkit.policy.sft.tokenize_sft``. Critiques
come from the world oracle, ``critique_text(problem, steps, judge(problem, steps))``, for world
problems, or from a user's JSONL of ``{problem_id, sample_id, critique}`` (``load_critiques``).

Stage 2 is the ordinary ORM/PRM training of ``prmkit.reward.train`` started from the stage-1
weights: ``train_reward(RewardConfig(init=<stage-1 dir>, kind="orm" | "prm"), ...)``, or
``prmkit train orm --init <stage-1 dir>``. Scoring never generates a critique: the stage-2 model
scores with ``StepRewardModel.score`` in one forward pass, as in the paper.

Departures: Math-Minos' critiques are GPT-4's free text, prompted with the step labels; the world's
are templated and exact (``prmkit.world.critique``). A solution with no critique (not a world
problem and absent from the user's file) is skipped with a count, not an error, unless none is left.
The stage-1 directory is an ordinary causal LM plus ``prmkit_critique.json`` (marker and settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prmkit.models import format_prompt
from prmkit.training import check_training
from prmkit.types import Problem, Solution

MARKER = "\nCritique:\n"
META = "prmkit_critique.json"


@dataclass(frozen=True)
class CritiqueConfig:
    init: str = ""  # model to start from (usually the generator)
    lr: float = 5e-4
    epochs: float = 2.0
    max_steps: int = -1  # overrides epochs when > 0
    batch_size: int = 16
    max_length: int = 768
    seed: int = 0
    save_steps: int = 200
    logging_steps: int = 50
    bf16: bool = False
    group_by_length: bool = False  # batches of similar-length examples: less padding, faster
    trust_remote_code: bool = False  # run Python code shipped with the init model (a hub model's auto_map)
    revision: str | None = None  # pin the init model's hub id to a branch, tag or commit

    def __post_init__(self):
        check_training(self, "critique")


def critique_prompt(question: str, steps: list[str]) -> str:
    """The text the critique continues.

    >>> critique_prompt("1+1?", ["1+1=2", "#### 2"])
    'Question: 1+1?\\nAnswer:\\n1+1=2\\n#### 2\\nCritique:\\n'
    """
    return format_prompt(question) + "\n".join(steps) + MARKER


def load_critiques(path: str | Path) -> dict[tuple[str, int], str]:
    """``{(problem_id, sample_id): critique}`` from a JSONL; a missing or mistyped field is a located error."""
    from prmkit.io import DataError, iter_jsonl, require_fields

    out: dict[tuple[str, int], str] = {}
    for lineno, obj in iter_jsonl(path):
        require_fields(path, lineno, obj, "problem_id", "sample_id", "critique")
        for name, kind in (("problem_id", str), ("sample_id", int), ("critique", str)):
            if not isinstance(obj[name], kind) or isinstance(obj[name], bool):
                raise DataError(path, lineno, f"expected {kind.__name__}, got {obj[name]!r:.40}", name)
        out[(obj["problem_id"], obj["sample_id"])] = obj["critique"]
    return out


def critique_pairs(
    solutions: list[Solution],
    problems: dict[str, Problem],
    critiques: dict[tuple[str, int], str] | None = None,
) -> tuple[list[tuple[str, str]], int]:
    """(prompt, critique) pairs and the number of solutions skipped for want of a critique.

    A user's critique wins; otherwise a world problem gets the oracle's.
    """
    from prmkit.world import critique_text, judge

    pairs, skipped = [], 0
    for s in solutions:
        if s.problem_id not in problems:
            raise ValueError(f"critique: {s.problem_id}/{s.sample_id} names an unknown problem")
        p = problems[s.problem_id]
        text = (critiques or {}).get(s.key)
        if text is None and p.source == "world" and s.steps:
            text = critique_text(p, s.steps, judge(p, s.steps))
        if text is None:
            skipped += 1
            continue
        pairs.append((critique_prompt(p.question, s.steps), text))
    return pairs, skipped


def train_critique(
    cfg: CritiqueConfig,
    solutions: list[Solution],
    problems: dict[str, Problem],
    out_dir: str | Path,
    critiques: dict[tuple[str, int], str] | None = None,
    default_init: str | None = None,
) -> Path:
    """Stage 1: fine-tune ``cfg.init`` to write critiques; the model lands in ``out_dir``."""
    import datasets
    from transformers import DataCollatorForSeq2Seq, Trainer

    from prmkit.io import atomic_write_json
    from prmkit.models import load_causal_lm, load_tokenizer, model_source
    from prmkit.policy.sft import tokenize_sft
    from prmkit.training import train_and_save, training_args

    out_dir = Path(out_dir)
    if (out_dir / META).exists():
        return out_dir
    init = cfg.init or default_init
    if not init:
        raise ValueError("critique: no model to start from; set critique.init or pass --init")
    pairs, skipped = critique_pairs(solutions, problems, critiques)
    if not pairs:
        raise ValueError(f"critique: no solution has a critique ({skipped} skipped); pass --critiques")
    hub = {"trust_remote_code": cfg.trust_remote_code, "revision": cfg.revision}
    tok = load_tokenizer(init, **hub)
    tok.padding_side = "right"
    model = load_causal_lm(init, dtype="float32", **hub)
    rows, truncated = tokenize_sft(tok, pairs, cfg.max_length)
    print(f"critique: {len(rows)} examples, {skipped} solutions without a critique, {truncated} truncated")
    trainer = Trainer(
        model=model,
        args=training_args(cfg, out_dir),
        train_dataset=datasets.Dataset.from_list(rows),
        data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
        processing_class=tok,
    )

    def save(tmp: Path, _metrics: dict) -> None:
        tok.padding_side = "left"
        trainer.save_model(str(tmp))
        tok.save_pretrained(str(tmp))
        meta = {
            "stage": "math-minos-1",
            "marker": MARKER,
            "init": init,
            "init_source": model_source(init, model, cfg.revision),
            "examples": len(rows),
            "skipped": skipped,
        }
        atomic_write_json(tmp / META, meta)

    return train_and_save(trainer, out_dir, save, cfg)  # "prmkit_critique.json exists" means finished
