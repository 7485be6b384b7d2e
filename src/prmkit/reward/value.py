"""Token-level value verifiers (Cobbe et al. 2021): P(solution correct) at every solution token.

A causal LM gets a scalar head, ``value_head = Linear(hidden, 1)``, on its final hidden states. At
each solution token t the value is ``v_t = sigmoid(value_head(dropout(h_t)))``; training minimises

    loss = mean_t BCE(v_t, y) + lm_coef * mean_t CE(logits_t, x_{t+1})

over the solution's tokens (never the prompt's), where y is the solution's correctness. ``head="last"``
supervises the value only at the last token: the paper's solution-level verifier, which it found
worse than the token-level one. The LM loss is the paper's auxiliary objective (on, coefficient 1).

Step boundaries. A solution is tokenised piece by piece (``scoring.encode_solution`` without a tag):
``format_prompt(question)``, then each step followed by "\\n", each piece on its own, and the ids
concatenated. The pieces are what the model is trained and scored on, so the value of step i is read
at the last token of piece i (its "\\n") and all steps of a solution are scored in one forward pass,
like ``StepRewardModel``; no step tag is used.

Departures: residual dropout (paper 0.2) is not something Llama has. ``resid_dropout`` sets every
dropout field of the model's config that exists (``attention_dropout``, ``resid_pdrop``,
``hidden_dropout`` ...) and the live modules' rates (for Llama: only ``attention_dropout`` on the
attention probabilities), and applies ``Dropout(resid_dropout)`` to the final hidden states before the
value head; the LM head sees undropped states. The head lives on the LM as the submodule
``value_head`` while training, so the Trainer's optimiser, checkpoints and resume handle it; the
final directory holds the plain LM plus ``value_head.safetensors`` and ``prmkit_reward.json``
(``kind: "value"``). The paper trains with mixed correct/incorrect samples of a fixed generator, as here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prmkit.reward.model import META_FILE, write_meta
from prmkit.reward.scoring import check_lengths, encode_solution, read_at, score_encoded
from prmkit.training import check_training, next_token_loss
from prmkit.types import Problem, Solution, StepLabels

HEADS = ("token", "last")
HEAD_FILE = "value_head.safetensors"
DROPOUT_FIELDS = ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout",
                  "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout")  # fmt: skip


@dataclass(frozen=True)
class ValueConfig:
    init: str = ""  # model to start from (usually the generator)
    lm_coef: float = 1.0
    resid_dropout: float = 0.2
    head: str = "token"
    lr: float = 5e-4
    epochs: float = 2.0
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
        if self.head not in HEADS:
            raise ValueError(f"value.head: unknown {self.head!r}; valid: {', '.join(HEADS)}")
        if self.lm_coef < 0 or not 0 <= self.resid_dropout < 1:
            raise ValueError("value: lm_coef must be >= 0 and resid_dropout in [0, 1)")
        check_training(self, "value")


def verifier_loss(values_logit, lm_logits, input_ids, targets, lm_coef: float):
    """BCE of (B, T) value logits against ``targets`` (B, T; < 0 = unsupervised) plus ``lm_coef`` times
    the next-token CE of (B, T, V) ``lm_logits`` at the supervised positions' successors."""
    import torch.nn.functional as F

    mask = targets >= 0  # (B, T)
    if not mask.any():
        return values_logit.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(values_logit.float()[mask], targets[mask].float())
    if lm_coef == 0:
        return bce
    # token t is predicted from position t-1; the LM mask is the value mask of the whole solution span
    lm_mask = mask[:, 1:] | (targets[:, 1:] == -1)  # (B, T-1)
    return bce + lm_coef * next_token_loss(lm_logits, input_ids, lm_mask)


def attach_head(lm, resid_dropout: float | None = None):
    """Add ``value_head`` (Linear(hidden, 1)) and ``value_dropout`` to ``lm`` if missing; with
    ``resid_dropout``, set that rate everywhere (see the module docstring)."""
    import torch

    if not hasattr(lm, "value_head"):
        lm.value_head = torch.nn.Linear(lm.config.hidden_size, 1).to(lm.dtype)
    if not hasattr(lm, "value_dropout"):
        lm.value_dropout = torch.nn.Dropout(0.0)
    if resid_dropout is None:
        return lm
    lm.value_dropout.p = resid_dropout
    for name in DROPOUT_FIELDS:
        if isinstance(getattr(lm.config, name, None), float):
            setattr(lm.config, name, resid_dropout)
    for module in lm.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = resid_dropout
        elif isinstance(getattr(module, "attention_dropout", None), float):  # Llama's attention
            module.attention_dropout = resid_dropout
    return lm


def forward_values(lm, input_ids, attention_mask, with_logits: bool = False):
    """Value logits (B, T) and, with ``with_logits``, the LM logits (B, T, V), from one forward."""
    hidden = lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    v = lm.value_head(lm.value_dropout(hidden)).squeeze(-1)  # (B, T)
    return (v, lm.get_output_embeddings()(hidden)) if with_logits else (v, None)


class ValueModel:
    """A value verifier: ``score(questions, steps)`` is the value at the last token of every step."""

    def __init__(self, lm, tokenizer, max_length: int | None = None):
        self.lm, self.tokenizer = attach_head(lm), tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_length = max_length or getattr(lm.config, "max_position_embeddings", None) or 4096
        self.source: dict[str, Any] = {}  # set by from_pretrained

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: str = "auto", device: str | None = None, trust_remote_code: bool = False
    ) -> ValueModel:
        """A value verifier's directory (local: its head file sits beside the LM)."""
        import torch
        from safetensors.torch import load_file

        from prmkit.models import load_causal_lm, load_tokenizer, model_source

        head = Path(path) / HEAD_FILE
        if not head.is_file():
            raise ValueError(f"{path}: no {HEAD_FILE}; is this a value model from prmkit train value?")
        lm = attach_head(load_causal_lm(path, dtype=dtype, trust_remote_code=trust_remote_code))
        lm.value_head.load_state_dict({k: v.to(lm.dtype) for k, v in load_file(str(head)).items()})
        lm = lm.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        vm = cls(lm.eval(), load_tokenizer(path, trust_remote_code=trust_remote_code))
        vm.source = model_source(path)
        return vm

    def save_pretrained(self, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """The LM as a plain HF directory, ``value_head.safetensors`` and ``prmkit_reward.json``."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        head, drop = self.lm._modules.pop("value_head"), self.lm._modules.pop("value_dropout")
        try:
            self.lm.save_pretrained(str(out_dir))
        finally:
            self.lm.value_head, self.lm.value_dropout = head, drop
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, str(out_dir / HEAD_FILE)
        )
        self.tokenizer.save_pretrained(str(out_dir))
        write_meta(out_dir, {"kind": "value", **(extra or {})})
        return out_dir

    def score(self, questions: list[str], steps: list[list[str]], batch_size: int = 16) -> list[list[float]]:
        """P(correct) at the end of each step, in input order; ``nan`` for steps cut by ``max_length``."""
        check_lengths("value", questions, steps)
        self.lm.eval()
        encoded = [encode_solution(self.tokenizer, q, s) for q, s in zip(questions, steps, strict=True)]

        def forward(ids, mask):  # (B, T)
            return forward_values(self.lm, ids, mask)[0].float().sigmoid()

        return score_encoded(
            encoded, forward, read_at, self.lm, self.tokenizer, self.max_length, batch_size, "value"
        )


def solution_target(rec: Solution | StepLabels) -> bool | None:
    """The solution's correctness: ``Solution.correct`` or ``StepLabels.final_correct``."""
    return rec.correct if isinstance(rec, Solution) else rec.final_correct


def build_value_examples(
    solutions: list[Solution | StepLabels], problems: dict[str, Problem], cfg: ValueConfig, tokenizer
) -> list[dict[str, Any]]:
    """Rows with ``input_ids`` and ``targets`` per token: y at supervised solution tokens, -1 at the
    other solution tokens (LM loss only, ``head="last"``), -100 on the prompt. Ungraded ones are dropped."""
    rows = []
    for rec in solutions:
        y = solution_target(rec)
        if y is None or not rec.steps:
            continue
        if rec.problem_id not in problems:
            raise ValueError(f"value: {rec.problem_id}/{rec.sample_id} names an unknown problem")
        enc = encode_solution(tokenizer, problems[rec.problem_id].question, rec.steps)
        ids, n_prompt = enc.ids[: cfg.max_length], enc.n_prompt
        if len(ids) <= n_prompt:
            continue
        targets = [-100.0] * n_prompt + [float(y)] * (len(ids) - n_prompt)
        if cfg.head == "last":
            targets[n_prompt:-1] = [-1.0] * (len(ids) - n_prompt - 1)
        rows.append({"input_ids": ids, "targets": targets, "problem_id": rec.problem_id})
    return rows


def collate_values(features: list[dict[str, Any]], pad_id: int):
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    targets = torch.full((len(features), width), -100.0)
    for b, f in enumerate(features):
        n = len(f["input_ids"])
        ids[b, :n], mask[b, :n] = torch.tensor(f["input_ids"]), 1
        targets[b, :n] = torch.tensor(f["targets"])
    return {"input_ids": ids, "attention_mask": mask, "value_targets": targets}


def final_accuracy(eval_pred) -> dict[str, float]:
    """Accuracy at 0.5 of the value at each held-out solution's last supervised token."""
    import numpy as np

    v, t = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
    hits = []
    for vb, tb in zip(v, t, strict=True):
        sup = np.nonzero(tb >= 0)[0]
        if len(sup):
            hits.append((vb[sup[-1]] > 0.5) == (tb[sup[-1]] > 0.5))
    return {"final_accuracy": float(np.mean(hits)) if hits else math.nan, "n_solutions": float(len(hits))}


def make_value_trainer(lm_coef: float, **kw: Any):
    from transformers import Trainer

    class ValueTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            targets = inputs.pop("value_targets")  # (B, T)
            lm = getattr(model, "module", model)
            v, logits = forward_values(lm, inputs["input_ids"], inputs["attention_mask"], lm_coef > 0)
            loss = verifier_loss(v, logits, inputs["input_ids"], targets, lm_coef)
            return (loss, {"values": v.detach().float().sigmoid()}) if return_outputs else loss

    return ValueTrainer(**kw)


def train_value(
    cfg: ValueConfig,
    solutions: list[Solution | StepLabels],
    problems: dict[str, Problem],
    out_dir: str | Path,
    default_init: str | None = None,
) -> Path:
    """Train a value verifier from ``cfg.init`` (or ``default_init``); the model lands in ``out_dir``."""
    import datasets
    import torch

    from prmkit.models import load_causal_lm, load_tokenizer, model_source
    from prmkit.reward.train import _split
    from prmkit.training import train_and_save, training_args

    out_dir = Path(out_dir)
    if (out_dir / META_FILE).exists():
        return out_dir
    init = cfg.init or default_init
    if not init:
        raise ValueError("value: no model to start from; set value.init or pass --init")
    hub = {"trust_remote_code": cfg.trust_remote_code, "revision": cfg.revision}
    tok = load_tokenizer(init, **hub)
    torch.manual_seed(cfg.seed)  # the head's initialisation
    lm = attach_head(load_causal_lm(init, dtype="float32", **hub), cfg.resid_dropout)
    source = model_source(init, lm, cfg.revision)
    rows = build_value_examples(solutions, problems, cfg, tok)
    if not rows:
        raise ValueError("value: no graded solutions to train on (correct is null everywhere?)")
    train_rows, eval_rows = _split(rows, cfg.eval_fraction, cfg.seed)
    print(f"value: {len(train_rows)} training and {len(eval_rows)} held-out solutions (head={cfg.head})")
    args = training_args(
        cfg, out_dir, evaluate=bool(eval_rows), label_names=["value_targets"], remove_unused_columns=False
    )
    trainer = make_value_trainer(
        cfg.lm_coef,
        model=lm,
        args=args,
        train_dataset=datasets.Dataset.from_list(train_rows),
        eval_dataset=datasets.Dataset.from_list(eval_rows) if eval_rows else None,
        data_collator=lambda fs: collate_values(fs, tok.pad_token_id),
        processing_class=tok,
        compute_metrics=final_accuracy,
    )

    def save(tmp: Path, metrics: dict) -> None:
        extra = {
            "head": cfg.head,
            "lm_coef": cfg.lm_coef,
            "resid_dropout": cfg.resid_dropout,
            "eval": metrics,
            "init": source,
        }
        ValueModel(lm.eval(), tok).save_pretrained(tmp, extra)

    # "prmkit_reward.json exists" means finished
    return train_and_save(trainer, out_dir, save, cfg, evaluate=bool(eval_rows))
