"""Scoring formats of process reward models: how a solution is rendered, where its step scores are read,
and which head reads them. One ``StepRewardModel`` scores every format in one forward pass.

=================  ============================================  ==================  ==================
format             rendered text                                 read at             head
=================  ============================================  ==================  ==================
``prmkit``         ``Question: q\\nAnswer:\\n`` + ``s <|step|>\\n``  each ``<|step|>``   LM logits of +/-
``math-shepherd``  ``q Step 1: s1 ки\\nStep 2: s2 ки``            each ``ки``         LM logits of +/-
``qwen-prm``       Qwen chat prompt, steps each + ``<extra_0>``   each ``<extra_0>``  2-class token head
``trl``            ``q`` + ``s1\\n`` + ``s2\\n`` (TRL PRMTrainer)  each step's last    2-class token head
=================  ============================================  ==================  ==================

``math-shepherd`` is the format of ``peiyi9979/math-shepherd-mistral-7b-prm``; ``qwen-prm`` that of
``Qwen/Qwen2.5-Math-PRM-7B`` (P(good) = class 1 of its two-class head); ``trl`` that of models trained
with TRL's ``PRMTrainer`` (``AutoModelForTokenClassification``, label on the last token of each step,
step separator "\\n"). Formats are chosen by name (``FORMATS``), not by model id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prmkit.models import STEP_TAG, format_prompt
from prmkit.reward.scoring import encode_solution, format_for_scoring

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class PRMFormat:
    name: str
    head: str  # "lm": softmax over the logits of two label tokens; "cls": a two-class token head
    tag: str | None  # the token read at; None: the last token of each step
    good: str = "+"
    bad: str = "-"

    def prompt(self, question: str) -> str:
        """The text before the first step."""
        if self.name == "math-shepherd":
            return f"{question} "
        if self.name == "qwen-prm":
            return (
                f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
                "<|im_start|>assistant\n"
            )
        if self.name == "trl":
            return question
        return format_prompt(question)

    def render(self, question: str, steps: list[str], tag: str | None = None) -> str:
        """The scored text (for formats read at a tag)."""
        tag = tag or self.tag
        if self.name == "math-shepherd":
            return self.prompt(question) + "\n".join(f"Step {i + 1}: {s} {tag}" for i, s in enumerate(steps))
        if self.name == "qwen-prm":
            return self.prompt(question) + "".join(f"{s}{tag}" for s in steps) + "<|im_end|><|endoftext|>"
        return format_for_scoring(question, steps, tag)

    def encode(self, tokenizer, question: str, steps: list[str], tag_id: int | None, tag: str | None = None):
        """``scoring.Encoded``: token ids, the position each step's score is read at, the prompt's length.
        TRL's format is the pieces layout over the raw question; the others are tagged texts."""
        tag = tag or self.tag
        if tag is None:
            return encode_solution(tokenizer, question, steps, prompt=self.prompt(question))
        text = self.render(question, steps, tag)
        return encode_solution(
            tokenizer, question, steps, tag, tag_id=tag_id, prompt=self.prompt(question), text=text
        )


FORMATS: dict[str, PRMFormat] = {
    f.name: f
    for f in (
        PRMFormat("prmkit", "lm", STEP_TAG),
        PRMFormat("math-shepherd", "lm", "ки"),
        PRMFormat("qwen-prm", "cls", "<extra_0>"),
        PRMFormat("trl", "cls", None),
    )
}


def get_format(name: str) -> PRMFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown PRM format {name!r}; valid: {', '.join(FORMATS)}")
    return FORMATS[name]
