"""Tiny models for the synthetic world: a digit-level byte BPE tokenizer and Llama configs.

Every model prmkit trains or loads is an ordinary Hugging Face model directory, so the world's
3M-parameter generator and ``Qwen/Qwen2.5-Math-1.5B`` go through the same code. This module makes
the tiny ones: ``train_tokenizer`` learns a byte-level BPE on world text with every digit its own
token (arithmetic is hopeless for a tiny model when "128" is one token and "129" another), and
``new_model`` builds a randomly initialised ``LlamaForCausalLM`` from a named size.

The tokenizer carries the special tokens later stages rely on: ``<|endoftext|>`` (EOS, also used
as padding), and the step tag ``STEP_TAG`` that reward models read their scores at.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prmkit.io import DataError

EOS = "<|endoftext|>"
PAD = "<|pad|>"
STEP_TAG = "<|step|>"
SPECIAL_TOKENS = [EOS, PAD, STEP_TAG]
PROMPT_TEMPLATE = "Question: {question}\nAnswer:\n"

# name -> LlamaConfig keyword arguments. "test" trains in seconds; "demo" is the demo generator.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "test": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    "small": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4),
    "demo": dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4),
}


def format_prompt(question: str) -> str:
    """The text a generator continues with its solution (Cobbe et al.'s question/answer layout)."""
    return PROMPT_TEMPLATE.format(question=question.strip())


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer with single-digit tokens, as a Hugging Face fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[STEP_TAG],
        padding_side="left",
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def new_model(tokenizer, size: str = "test", max_positions: int = 1024, seed: int = 0):
    """A randomly initialised LlamaForCausalLM of a named size, matching ``tokenizer``'s vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; valid: {', '.join(MODEL_SIZES)}")
    dims = MODEL_SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        num_key_value_heads=dims["num_attention_heads"],
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
        **dims,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_tokenizer(name_or_path: str | Path):
    """Load a tokenizer for generation: left padding and a pad token, whatever the model shipped."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
    except OSError as e:
        raise DataError(name_or_path, None, f"cannot load a tokenizer: {e}") from None
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name_or_path: str | Path, dtype: str = "auto"):
    """Load any causal LM directory or hub id (eval mode); ``dtype`` "auto", "float32", "bfloat16"."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=torch_dtype)
    except OSError as e:
        raise DataError(name_or_path, None, f"cannot load a causal LM: {e}") from None
    return model.eval()
