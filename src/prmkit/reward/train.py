"""Training a PRM or ORM on step labels (Math-Shepherd, PRM800K) through ``transformers.Trainer``.

Each labelled solution becomes ``scoring.encode_solution(tokenizer, question, steps, tag)`` with a target in [0, 1] at
every supervised tag. The loss reads the logits of the two label tokens ("+", "-") at the tags,
log-softmaxes them and takes the cross-entropy against the soft target (p for "+", 1 - p for "-"):

    loss = -mean_over_tags( p * log P(+) + (1 - p) * log P(-) )

Hard labels (Math-Shepherd HE, PRM800K) are the case p in {0, 1}; soft labels (SE) train on the
fractions themselves. ``first_error_only`` supervises steps up to and including the first bad one
(PRM800K's convention); an ORM gets one target, the solution's correctness, at its last tag.
``step_weight`` < 1 weighs every supervised step but a solution's last one less in the (weighted) mean:
1 is the papers' PRM, every step alike; 0 leaves only the last step, an ORM on the same records.

``lm_coef > 0`` adds Cobbe et al.'s auxiliary language-modelling loss on the solution's tokens, read
from the same forward pass (the logits of the whole vocabulary are computed anyway)::

    loss = classification loss + lm_coef * mean_t CE(logits_{t-1}, x_t)

over the tokens after the prompt, except the tags themselves and the token after each tag, so the
positions the classifier is read at carry no LM target (their "+"/"-" logits stay the classifier's).
The helper is the value verifier's (``training.next_token_loss``); ``lm_coef = 0``, the default, is
the classification loss alone, as before the option existed.

Departures: TRL's PRM trainer casts labels to int (soft labels are lost) and classifies with a
token-classification head; here the LM head's "+"/"-" rows are the classifier, so the result loads
as an ordinary causal LM and scores like released Math-Shepherd PRMs. Steps with no label (None, e.g.
an early-stopped soft estimate) are not supervised. Held-out problems (``eval_fraction``, split by
problem so samples of one problem never straddle it) give eval loss and step accuracy at 0.5.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prmkit.models import STEP_TAG
from prmkit.reward.model import REWARD_KINDS, StepRewardModel, write_meta
from prmkit.reward.scoring import encode_solution
from prmkit.training import check_training, train_and_save, training_args
from prmkit.types import Problem, Solution, SolutionKey, StepLabels

LABEL_TYPES = ("hard", "soft")


@dataclass(frozen=True)
class RewardConfig:
    kind: str = "prm"
    init: str = ""  # model to start from; "" = the generator path the caller passes
    label: str = "hard"
    first_error_only: bool = False
    lm_coef: float = 0.0  # weight of the auxiliary LM loss on the solution tokens (Cobbe et al.); 0 = off
    step_weight: float = 1.0  # loss weight of each step but the last, relative to the last step's; 1 = alike
    lr: float = 5e-4
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    batch_size: int = 16
    max_length: int = 512
    eval_fraction: float = 0.05
    seed: int = 0
    save_steps: int = 200
    logging_steps: int = 50
    bf16: bool = False
    group_by_length: bool = False  # batches of similar-length examples: less padding, faster
    trust_remote_code: bool = False  # run Python code shipped with the init model (a hub model's auto_map)
    revision: str | None = None  # pin the init model's hub id to a branch, tag or commit

    def __post_init__(self):
        if self.kind not in REWARD_KINDS:
            raise ValueError(f"kind: unknown {self.kind!r}; valid: {', '.join(REWARD_KINDS)}")
        if self.label not in LABEL_TYPES:
            raise ValueError(f"{self.kind}.label: unknown {self.label!r}; valid: {', '.join(LABEL_TYPES)}")
        if not self.lm_coef >= 0:
            raise ValueError(f"{self.kind}.lm_coef must be >= 0, got {self.lm_coef}")
        if not 0 <= self.step_weight <= 1:
            raise ValueError(f"{self.kind}.step_weight must be in [0, 1], got {self.step_weight}")
        check_training(self, self.kind)


def step_targets(rec: StepLabels, cfg: RewardConfig) -> list[float | None]:
    """The target P(good) per step (None = not supervised).

    >>> r = StepLabels("p", 0, ["a", "b", "c"], [1, 0, 1], [0.75, 0.0, 0.5], final_correct=False)
    >>> step_targets(r, RewardConfig()), step_targets(r, RewardConfig(label="soft"))
    ([1.0, 0.0, 1.0], [0.75, 0.0, 0.5])
    >>> step_targets(r, RewardConfig(first_error_only=True)), step_targets(r, RewardConfig(kind="orm"))
    ([1.0, 0.0, None], [None, None, 0.0])
    """
    n = len(rec.steps)
    if len(rec.hard) != n or len(rec.soft) != n:
        raise ValueError(
            f"reward: labels of {rec.problem_id}/{rec.sample_id} have {len(rec.hard)} hard and "
            f"{len(rec.soft)} soft values for {n} steps"
        )
    if cfg.kind == "orm":
        final = rec.target if rec.target is not None else rec.final_correct
        if final is None:
            final = rec.hard[-1] if n else None
        return [None] * (n - 1) + [None if final is None else float(final)] if n else []
    values = rec.hard if cfg.label == "hard" else rec.soft
    targets = [None if v is None else float(v) for v in values]
    if cfg.first_error_only:
        bad = [i for i in range(n) if rec.hard[i] == 0 or (rec.hard[i] is None and rec.soft[i] == 0)]
        if bad:
            targets[bad[0] + 1 :] = [None] * (n - bad[0] - 1)
    return targets


def prm_supervised(labels: list[StepLabels], scores: dict[SolutionKey, list[float]]) -> list[StepLabels]:
    """ORM labels from a PRM's step scores (``io.read_scores``): each solution's target is the PRM's min step score (Lightman et al.'s
    "ORM supervised by a large PRM"); solutions the PRM did not score are dropped.

    >>> r = StepLabels("p", 0, ["a", "b"], [1, 1], [1.0, 1.0], final_correct=True)
    >>> prm_supervised([r], {("p", 0): [0.9, 0.25]})[0].target
    0.25
    """
    import dataclasses
    import math

    out = []
    for r in labels:
        row = scores.get(r.key)
        if row and not any(math.isnan(x) for x in row):
            out.append(dataclasses.replace(r, target=min(row)))
    if not out:
        raise ValueError("reward: the PRM scores match none of the labelled solutions")
    return out


def outcome_labels(solutions: list[Solution]) -> list[StepLabels]:
    """Training records from graded samples: the graded answer as the final label and as the last step's
    (the one Monte-Carlo label that needs no completion: a whole solution is its own rollout, as
    ``annotate`` labels it), no other step labelled. Cobbe et al. label every sampled solution by its
    answer alone, so an ORM needs no annotation. Ungraded and step-less solutions are dropped.

    >>> r = outcome_labels([Solution("p", 0, "a\\nb", ["a", "b"], "3", True)])[0]
    >>> r.hard, r.soft, r.final_correct
    ([None, 1], [None, 1.0], True)
    """
    return [
        StepLabels(
            s.problem_id,
            s.sample_id,
            s.steps,
            [None] * (len(s.steps) - 1) + [int(bool(s.correct))],
            [None] * (len(s.steps) - 1) + [float(bool(s.correct))],
            final_correct=bool(s.correct),
        )  # fmt: skip
        for s in solutions
        if s.steps and s.correct is not None
    ]


def with_pool(labels: list[StepLabels], pool: list[Solution]) -> list[StepLabels]:
    """A PRM's records: the annotated solutions, then every other graded pool solution with only its last
    step labelled (``outcome_labels``), so the PRM sees the ORM's solutions as well as the step labels.

    >>> lab = StepLabels("p", 0, ["a", "b"], [1, 0], [0.5, 0.0], final_correct=False)
    >>> pool = [Solution("p", i, "a\\nb", ["a", "b"], "3", True) for i in (0, 1)]
    >>> [(r.sample_id, r.soft) for r in with_pool([lab], pool)]
    [(0, [0.5, 0.0]), (1, [None, 1.0])]
    """
    seen = {r.key for r in labels}
    return labels + [r for r in outcome_labels(pool) if r.key not in seen]


def build_examples(
    labels: list[StepLabels],
    problems: dict[str, Problem],
    cfg: RewardConfig,
    tokenizer,
    tag: str = STEP_TAG,
) -> list[dict[str, Any]]:
    """Token rows with the supervised tag positions and their targets; skipped records are dropped.

    Each row: ``input_ids``, ``attention_mask``, ``tag_positions`` (indices of supervised tags),
    ``targets`` (P(good) per listed tag), ``problem_id``, with ``cfg.lm_coef > 0`` ``lm_mask``
    (1 at the tokens the LM loss predicts: ``lm_targets``), and with ``cfg.step_weight < 1`` ``weights``
    (1 at the solution's last step, ``step_weight`` at the others). Tags cut by ``max_length`` are
    dropped, and a row left with no supervised tag is dropped too.
    """
    tag_id = tokenizer.convert_tokens_to_ids(tag)
    rows = []
    for rec in labels:
        if rec.skipped:
            continue
        targets = step_targets(rec, cfg)
        if rec.problem_id not in problems:
            raise ValueError(f"reward: labels of {rec.problem_id}/{rec.sample_id} name an unknown problem")
        try:
            enc = encode_solution(tokenizer, problems[rec.problem_id].question, rec.steps, tag, tag_id=tag_id)
        except ValueError as e:
            raise ValueError(f"reward: {rec.problem_id}/{rec.sample_id}: {e}") from None
        ids = enc.ids[: cfg.max_length]
        last = len(targets) - 1
        kept = [
            (t, y, 1.0 if i == last else cfg.step_weight)
            for i, (t, y) in enumerate(zip(enc.positions, targets, strict=True))
            if y is not None and t < len(ids)
        ]
        if kept and any(w > 0 for _, _, w in kept):
            row = {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "tag_positions": [t for t, _, _ in kept],
                "targets": [y for _, y, _ in kept],
                "problem_id": rec.problem_id,
            }
            if cfg.lm_coef > 0:
                row["lm_mask"] = lm_targets(ids, enc.n_prompt, tag_id)
            if cfg.step_weight < 1:
                row["weights"] = [w for _, _, w in kept]
            rows.append(row)
    return rows


def warn_unsupervised_soft(labels: list[StepLabels], cfg: RewardConfig) -> None:
    """Warn when soft targets leave most Monte-Carlo-labelled steps unsupervised: ``binary_search`` and
    ``early_stop`` keep a soft estimate only where every completion of a step was drawn, mostly at bad
    steps, so a soft PRM learns few good steps and its intermediate scores sink."""
    if cfg.kind != "prm" or cfg.label != "soft":
        return
    pairs = [(h, s) for r in labels if not r.skipped for h, s in zip(r.hard, r.soft, strict=True)]
    labelled = sum(h is not None for h, _ in pairs)
    lost = sum(h is not None and s is None for h, s in pairs)
    if lost * 2 > labelled:
        warnings.warn(
            f"{cfg.kind}.label=soft: {lost} of {labelled} labelled steps have no soft estimate (an "
            "early-stopped annotation) and are not supervised; label=hard supervises every one",
            stacklevel=3,
        )


def lm_targets(ids: list[int], n_prompt: int, tag_id: int) -> list[int]:
    """1 at the tokens the auxiliary LM loss predicts: the solution's (after the prompt), except each
    tag and the token after it, which the tag's position (the classifier's) would predict.

    >>> lm_targets([5, 6, 7, 8, 99, 9, 7, 99, 9], n_prompt=2, tag_id=99)
    [0, 0, 1, 1, 0, 0, 1, 0, 0]
    """
    return [
        int(t >= n_prompt and x != tag_id and (t == 0 or ids[t - 1] != tag_id)) for t, x in enumerate(ids)
    ]


def soft_label_loss(logits, targets, weights=None):
    """Cross-entropy of (B, T, 2) "+"/"-" logits against targets (B, T) in [0, 1]; < 0 = unsupervised.
    With ``weights`` (B, T), the weighted mean over the supervised tags; without, the plain mean."""
    logp = logits.float().log_softmax(-1)  # (B, T, 2)
    mask = targets >= 0  # (B, T)
    p = targets[mask]  # (N,)
    nll = -(p * logp[mask][:, 0] + (1 - p) * logp[mask][:, 1])  # (N,)
    if not nll.numel():
        return logits.sum() * 0.0
    if weights is None:
        return nll.mean()
    w = weights[mask]  # (N,)
    return (w * nll).sum() / w.sum().clamp_min(1e-8)


def collate_rewards(features: list[dict[str, Any]], pad_id: int):
    """Right-padded batch with float ``labels`` (B, T): the target at tags, -100 elsewhere; when the
    rows have one (``lm_coef > 0``), the boolean ``lm_mask`` (B, T) of the LM loss's tokens; and when
    they have them (``step_weight < 1``), the float ``weights`` (B, T) of the tags' losses."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    labels = torch.full((len(features), width), -100.0)
    for b, f in enumerate(features):
        n = len(f["input_ids"])
        ids[b, :n] = torch.tensor(f["input_ids"])
        mask[b, :n] = 1
        labels[b, f["tag_positions"]] = torch.tensor(f["targets"], dtype=torch.float)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if "lm_mask" in features[0]:
        lm = torch.zeros((len(features), width), dtype=torch.bool)
        for b, f in enumerate(features):
            lm[b, : len(f["lm_mask"])] = torch.tensor(f["lm_mask"], dtype=torch.bool)
        batch["lm_mask"] = lm
    if "weights" in features[0]:
        w = torch.zeros((len(features), width))
        for b, f in enumerate(features):
            w[b, f["tag_positions"]] = torch.tensor(f["weights"], dtype=torch.float)
        batch["weights"] = w
    return batch


def step_metrics(eval_pred) -> dict[str, float]:
    """Step accuracy at threshold 0.5 over supervised held-out tags."""
    import numpy as np

    p_good, targets = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
    mask = targets >= 0
    acc = float(((p_good[mask] > 0.5) == (targets[mask] > 0.5)).mean()) if mask.any() else math.nan
    return {"step_accuracy": acc, "n_steps": float(mask.sum())}


def _split(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    pids = sorted({r["problem_id"] for r in rows})
    random.Random(seed).shuffle(pids)
    held = set(pids[: int(len(pids) * fraction)])
    return [r for r in rows if r["problem_id"] not in held], [r for r in rows if r["problem_id"] in held]


def train_reward(
    cfg: RewardConfig,
    labels: list[StepLabels],
    problems: dict[str, Problem],
    out_dir: str | Path,
    default_init: str | None = None,
) -> Path:
    """Train a PRM/ORM from ``cfg.init`` (or ``default_init``); the model lands in ``out_dir``."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    init = cfg.init or default_init
    if not init:
        raise ValueError(f"{cfg.kind}: no model to start from; set {cfg.kind}.init or pass --init")
    warn_unsupervised_soft(labels, cfg)  # before the model loads
    rm = StepRewardModel.from_pretrained(
        init, dtype="float32", kind=cfg.kind, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision
    )
    rows = build_examples(labels, problems, cfg, rm.tokenizer, rm.tag)
    if not rows:
        raise ValueError("reward: no supervised steps in the labels (all skipped or unlabelled?)")
    train_rows, eval_rows = _split(rows, cfg.eval_fraction, cfg.seed)
    print(f"reward: {len(train_rows)} training and {len(eval_rows)} held-out solutions ({cfg.kind})")
    trainer = reward_trainer(cfg, rm, train_rows, eval_rows, out_dir)

    def save(tmp: Path, metrics: dict) -> None:
        trainer.save_model(str(tmp))
        rm.tokenizer.save_pretrained(str(tmp))
        extra = {
            "label": cfg.label,
            "first_error_only": cfg.first_error_only,
            "lm_coef": cfg.lm_coef,
            "step_weight": cfg.step_weight,
            "eval": metrics,
            "init": rm.source,
        }
        write_meta(tmp, {**rm.meta(), **extra})

    # "config.json exists" means finished
    return train_and_save(trainer, out_dir, save, cfg, evaluate=bool(eval_rows))


def reward_trainer(
    cfg: RewardConfig,
    rm: StepRewardModel,
    train_rows: list[dict],
    eval_rows: list[dict],
    out_dir: Path,
    **overrides: Any,
):
    """The Trainer of ``train_reward`` for rows of ``build_examples``: ``cfg``'s arguments (``overrides``
    on top), the reward collator, and held-out step accuracy when there are ``eval_rows``."""
    import datasets

    args = training_args(
        cfg,
        out_dir,
        evaluate=bool(eval_rows),
        label_names=["labels"],
        remove_unused_columns=False,
        **overrides,
    )
    return make_trainer(
        rm.label_ids,
        cfg.lm_coef,
        model=rm.model,
        args=args,
        train_dataset=datasets.Dataset.from_list(train_rows),
        eval_dataset=datasets.Dataset.from_list(eval_rows) if eval_rows else None,
        data_collator=lambda fs: collate_rewards(fs, rm.tokenizer.pad_token_id),
        processing_class=rm.tokenizer,
        compute_metrics=step_metrics,
    )


def reward_loss(model, inputs: dict[str, Any], label_ids: list[int], lm_coef: float = 0.0):
    """(loss, label logits (B, T, 2)) of a batch from ``collate_rewards``, in one forward pass:
    ``soft_label_loss`` at the tags (weighted by ``inputs["weights"]`` when the batch has them), plus
    ``lm_coef`` times the LM loss at ``inputs["lm_mask"]``."""
    from prmkit.training import next_token_loss

    inputs = dict(inputs)
    targets, lm_mask = inputs.pop("labels"), inputs.pop("lm_mask", None)  # (B, T), (B, T)
    weights = inputs.pop("weights", None)  # (B, T) or None
    if lm_coef == 0:  # the classification loss alone: nothing else is computed
        logits = model(**inputs, use_cache=False).logits[..., label_ids]  # (B, T, 2)
        return soft_label_loss(logits, targets, weights), logits
    if lm_mask is None:
        raise ValueError("reward: lm_coef > 0 needs rows built with it (build_examples adds lm_mask)")
    full = model(**inputs, use_cache=False).logits  # (B, T, V)
    logits = full[..., label_ids]  # (B, T, 2)
    lm = next_token_loss(full, inputs["input_ids"], lm_mask[:, 1:])
    return soft_label_loss(logits, targets, weights) + lm_coef * lm, logits


def make_trainer(label_ids: list[int], lm_coef: float = 0.0, **kw: Any):
    """A ``transformers.Trainer`` whose loss is ``reward_loss`` (built lazily: the import is heavy);
    its eval predictions are P(good) per position, (B, T)."""
    from transformers import Trainer

    class RewardTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, logits = reward_loss(model, inputs, label_ids, lm_coef)
            return (loss, {"p_good": logits.detach().float().softmax(-1)[..., 0]}) if return_outputs else loss

    return RewardTrainer(**kw)
