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

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def format_for_scoring(question: str, steps: list[str], tag: str = STEP_TAG) -> str:
    """The prmkit format: the prompt, then every step followed by a space, the tag and a newline.

    >>> format_for_scoring("1+1?", ["1+1=2", "#### 2"], "<t>")
    'Question: 1+1?\\nAnswer:\\n1+1=2 <t>\\n#### 2 <t>\\n'
    """
    return format_prompt(question) + "".join(f"{step} {tag}\n" for step in steps)


@dataclass(frozen=True)
class PRMFormat:
    name: str
    head: str  # "lm": softmax over the logits of two label tokens; "cls": a two-class token head
    tag: str | None  # the token read at; None: the last token of each step
    good: str = "+"
    bad: str = "-"

    def render(self, question: str, steps: list[str], tag: str | None = None) -> str:
        """The scored text (for formats read at a tag)."""
        tag = tag or self.tag
        if self.name == "math-shepherd":
            return f"{question} " + "\n".join(f"Step {i + 1}: {s} {tag}" for i, s in enumerate(steps))
        if self.name == "qwen-prm":
            return (
                f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
                f"<|im_start|>assistant\n" + "".join(f"{s}{tag}" for s in steps) + "<|im_end|><|endoftext|>"
            )
        return format_for_scoring(question, steps, tag)

    def encode(self, tokenizer, question: str, steps: list[str], tag_id: int | None, tag: str | None = None):
        """(token ids, the position each step's score is read at)."""
        if self.tag is None:  # TRL: prompt, then each step + separator tokenised on its own
            ids = list(tokenizer(question)["input_ids"])
            positions = []
            for s in steps:
                ids += tokenizer(s + "\n", add_special_tokens=False)["input_ids"]
                positions.append(len(ids) - 1)
            return ids, positions
        ids = tokenizer(self.render(question, steps, tag))["input_ids"]
        return ids, [i for i, t in enumerate(ids) if t == tag_id]


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
