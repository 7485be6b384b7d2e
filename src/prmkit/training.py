"""What every training stage shares (generator SFT, PRM/ORM, value verifier, critique stage).

Each stage builds its own examples, collator and loss (the verifiers' auxiliary LM loss is the one
shared piece, ``next_token_loss``); this module gives them one set of
``transformers.TrainingArguments`` defaults, one checkpoint folder beside the output (``OUT.checkpoints``,
resumed from its newest ``checkpoint-N``, only with the settings and examples it began with), and one
way of finishing: rank 0 writes the model under a temporary name and renames it into place, so the
output directory existing means the stage finished.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

from prmkit.io import claim_output, fingerprint
from prmkit.models import check_hub_fields


def check_training(cfg: Any, stage: str) -> None:
    """Validate the fields every training config shares (``__post_init__`` of each stage's config)."""
    if cfg.epochs <= 0 and cfg.max_steps <= 0:
        raise ValueError(f"{stage}: set epochs > 0 or max_steps > 0")
    if cfg.lr <= 0 or cfg.batch_size < 1 or cfg.max_length < 8 or cfg.save_steps < 1:
        raise ValueError(f"{stage}: lr must be > 0, batch_size and save_steps >= 1, max_length >= 8")
    if not 0 <= getattr(cfg, "eval_fraction", 0) < 1:
        raise ValueError(f"{stage}.eval_fraction must be in [0, 1)")
    check_hub_fields(cfg, stage)


def next_token_loss(lm_logits, input_ids, target_mask):
    """Mean next-token cross-entropy of (B, T, V) ``lm_logits`` over the tokens of ``input_ids[:, 1:]``
    that ``target_mask`` (B, T-1) marks: token t is predicted from position t-1. The auxiliary LM loss
    of the verifiers (Cobbe et al.): ``reward/value.py`` and ``reward/train.py`` (``lm_coef``)."""
    import torch.nn.functional as F

    if not target_mask.any():
        return lm_logits.sum() * 0.0
    return F.cross_entropy(lm_logits[:, :-1].float()[target_mask], input_ids[:, 1:][target_mask])


def checkpoint_dir(out_dir: Path) -> Path:
    return out_dir.parent / f"{out_dir.name}.checkpoints"


def complete_checkpoint(path: Path) -> bool:
    """Whether the Trainer finished writing ``checkpoint-N``: it writes the folder in place, weights
    first and ``trainer_state.json`` last, so a kill while saving leaves a folder without a readable
    state. Resuming from one would load its weights and silently restart at step 0."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state


def last_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder the Trainer left, to resume from."""
    if not ckpt_dir.is_dir():
        return None
    ckpts = [p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    ckpts = [p for p in ckpts if complete_checkpoint(p)]
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[-1]))) if ckpts else None


def training_args(cfg: Any, out_dir: Path, evaluate: bool = False, **overrides: Any):
    """TrainingArguments from a stage config's common fields (epochs, max_steps, lr, batch_size,
    logging_steps, save_steps, bf16, group_by_length, seed); held-out evaluation every ``save_steps``
    when asked. ``group_by_length`` batches examples of similar length (``LengthGroupedSampler``: 50
    batches' worth sorted by length, then cut), so batches carry less padding."""
    import torch
    from transformers import TrainingArguments

    kw: dict[str, Any] = dict(
        output_dir=str(checkpoint_dir(out_dir)),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        lr_scheduler_type="cosine",
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=cfg.save_steps,
        bf16=cfg.bf16,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        seed=cfg.seed,
        report_to="none",
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )
    kw.update(overrides)
    return TrainingArguments(**kw)


def examples_fingerprint(dataset: Any) -> str:
    """``io.fingerprint`` of a ``datasets.Dataset``: its Arrow table's IPC stream, the same bytes for the
    same rows (a fraction of a second for 10^5 tokenised solutions, where their Python lists take ~15 s)."""
    import pyarrow as pa

    table = dataset.data.table
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return fingerprint(memoryview(sink.getvalue()), "examples", count=len(dataset))  # hashed in place


# what a resumed training may change: its length (train on), logging and checkpoint cadence
RESUME_FREE = ("epochs", "max_steps", "logging_steps", "save_steps")


def train_and_save(
    trainer: Any, out_dir: Path, save: Callable[[Path, dict], None], cfg: Any, evaluate: bool = False
) -> Path:
    """Train (resuming from the last checkpoint), evaluate on every rank if asked, then let rank 0
    ``save(tmp_dir, eval_metrics)`` and rename ``tmp_dir`` to ``out_dir``. The checkpoints are claimed
    for the stage's settings (``cfg`` but ``RESUME_FREE``) and the training examples, in
    ``OUT.checkpoints/training.meta.json``: resuming them with others is refused (``io.claim_output``)."""
    ckpt = checkpoint_dir(out_dir)
    claim = {k: v for k, v in asdict(cfg).items() if k not in RESUME_FREE}
    claim["examples"] = examples_fingerprint(trainer.train_dataset)
    claim_output(
        ckpt / "training",
        claim,
        write=trainer.is_world_process_zero(),
        defaults={f.name: f.default for f in fields(cfg) if f.default is not MISSING},
        remedy=f"resume with those settings and data, give another output directory, or delete {ckpt} "
        "to start over",
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(ckpt))
    metrics = trainer.evaluate() if evaluate else {}
    if not trainer.is_world_process_zero():  # under torchrun, rank 0 writes the model
        return out_dir
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    if tmp.exists():  # left by a run killed while saving
        shutil.rmtree(tmp)
    save(tmp, metrics)
    tmp.rename(out_dir)
    return out_dir
