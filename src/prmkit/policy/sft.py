"""Generator fine-tuning on reference solutions (Cobbe et al.'s GSM8K generator), via the HF Trainer.

Each example is ``format_prompt(question) + solution + EOS``; the loss is on the solution tokens
only. The model is any Hugging Face causal LM path or hub id, or ``scratch:<size>`` for a tiny
Llama (``prmkit.models.MODEL_SIZES``) with a digit-level tokenizer trained on the problems' text.
Training goes through ``transformers.Trainer`` so checkpoints, resume, bf16 and multi-GPU come from
the library: a rerun of an interrupted job resumes from the last checkpoint, and a finished output
directory is left alone.

Departure from the paper: Cobbe et al. fine-tune 2 epochs at a small learning rate from GPT-3; the
world's models start from random weights, so the defaults train longer at a higher rate.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from prmkit.io import atomic_write_json
from prmkit.models import format_prompt, model_source
from prmkit.training import check_training, checkpoint_dir, last_checkpoint, train_and_save, training_args
from prmkit.types import Problem

SCRATCH = "scratch:"
SFT_META = "prmkit_sft.json"  # where the model started from: a path, or a hub id and its commit


@dataclass(frozen=True)
class SFTConfig:
    stage: ClassVar[str] = "sft"  # the recipe stage, named in errors

    model: str = "scratch:demo"
    epochs: float = 2.0
    max_steps: int = -1  # overrides epochs when > 0
    lr: float = 2e-3
    batch_size: int = 32
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    max_length: int = 512
    vocab_size: int = 1024
    save_steps: int = 200
    logging_steps: int = 50
    bf16: bool = False
    group_by_length: bool = False  # batches of similar-length examples: less padding, faster
    seed: int = 0
    trust_remote_code: bool = False  # run Python code shipped with the model (a hub model's auto_map)
    revision: str | None = None  # pin the model's hub id to a branch, tag or commit

    def __post_init__(self):
        check_training(self, self.stage)
        if self.grad_accum < 1:
            raise ValueError(f"{self.stage}: grad_accum must be >= 1")
        if self.model.startswith(SCRATCH):
            from prmkit.models import MODEL_SIZES

            size = self.model[len(SCRATCH) :]
            if size not in MODEL_SIZES:
                raise ValueError(
                    f"{self.stage}.model: unknown size {size!r}; valid: {', '.join(MODEL_SIZES)}"
                )


@dataclass(frozen=True)
class VerifierLMConfig(SFTConfig):
    """The demo's ``verifier_lm`` stage: a language model trained on the same reference solutions as the
    generator, as its own job, for every trained verifier to start from (``demo.verifier_init``); a
    larger or longer-trained one than the generator, as Cobbe et al. and Lightman et al. verify with."""

    stage: ClassVar[str] = "verifier_lm"


def _examples(problems: list[Problem]) -> list[tuple[str, str]]:
    pairs = [(format_prompt(p.question), p.solution) for p in problems if p.solution]
    if not pairs:
        raise ValueError("sft: none of the problems has a reference solution to train on")
    return pairs


def init_model(cfg: SFTConfig, problems: list[Problem]):
    """(model, tokenizer) to fine-tune: a pretrained one, or a tiny Llama with a new tokenizer."""
    from prmkit.models import load_causal_lm, load_tokenizer, new_model, train_tokenizer

    if cfg.model.startswith(SCRATCH):
        rng = random.Random(cfg.seed)
        texts = [p + s for p, s in _examples(problems)]
        rng.shuffle(texts)
        tok = train_tokenizer(texts[:20000], vocab_size=cfg.vocab_size)
        return new_model(tok, cfg.model[len(SCRATCH) :], seed=cfg.seed), tok
    hub = {"trust_remote_code": cfg.trust_remote_code, "revision": cfg.revision}
    return load_causal_lm(cfg.model, dtype="float32", **hub), load_tokenizer(cfg.model, **hub)


def tokenize_sft(tokenizer, pairs: list[tuple[str, str]], max_length: int) -> tuple[list[dict], int]:
    """Token ids with prompt positions masked out of the loss (-100); returns (rows, n_truncated)."""
    eos = tokenizer.eos_token_id
    rows, truncated = [], 0
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=True)["input_ids"]
    answers = tokenizer([a for _, a in pairs], add_special_tokens=False)["input_ids"]
    for p_ids, a_ids in zip(prompts, answers, strict=True):
        ids = p_ids + a_ids + [eos]
        labels = [-100] * len(p_ids) + a_ids + [eos]
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows, truncated


def train_sft(cfg: SFTConfig, problems: list[Problem], out_dir: str | Path) -> Path:
    """Fine-tune a generator on ``problems``' reference solutions; the model lands in ``out_dir``."""
    import datasets
    from transformers import DataCollatorForSeq2Seq, Trainer

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    resume = last_checkpoint(checkpoint_dir(out_dir))
    if resume and cfg.model.startswith(SCRATCH):  # the checkpoint's tokenizer; the Trainer restores weights
        from prmkit.models import load_tokenizer, new_model

        tok = load_tokenizer(resume)
        model = new_model(tok, cfg.model[len(SCRATCH) :], seed=cfg.seed)
    else:
        model, tok = init_model(cfg, problems)
    source = (
        {"scratch": cfg.model}
        if cfg.model.startswith(SCRATCH)
        else model_source(cfg.model, model, cfg.revision)
    )
    tok.padding_side = "right"
    rows, truncated = tokenize_sft(tok, _examples(problems), cfg.max_length)
    if truncated:
        print(
            f"{cfg.stage}: {truncated} of {len(rows)} examples longer than {cfg.max_length} tokens were truncated"
        )
    steps_per_epoch = math.ceil(len(rows) / (cfg.batch_size * cfg.grad_accum))
    total_steps = cfg.max_steps if cfg.max_steps > 0 else steps_per_epoch * cfg.epochs
    args = training_args(
        cfg,
        out_dir,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=int(cfg.warmup_ratio * total_steps),
        weight_decay=cfg.weight_decay,
        train_sampling_strategy="group_by_length",
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
        processing_class=tok,
    )

    def save(tmp: Path, _metrics: dict) -> None:
        tok.padding_side = "left"
        model.generation_config.pad_token_id = tok.pad_token_id
        trainer.save_model(str(tmp))
        tok.save_pretrained(str(tmp))
        atomic_write_json(tmp / SFT_META, {"model": source})

    return train_and_save(trainer, out_dir, save, cfg)  # "config.json exists" means finished
