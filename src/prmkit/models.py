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

import re
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


REMOTE_CODE_FLAG = "--trust-remote-code"


def remote_code_error(name_or_path: str | Path) -> ValueError:
    """The one-line refusal for a model that needs its own Python code and was not trusted."""
    return ValueError(
        f"{name_or_path}: this model ships its own Python code (auto_map in its config), which prmkit runs "
        f"only on request: pass {REMOTE_CODE_FLAG} (recipe: trust_remote_code: true) if you trust its source"
    )


def check_hub_fields(cfg, stage: str) -> None:
    """Validate a stage config's ``trust_remote_code`` (a bool) and ``revision`` (a string: a hex commit
    that YAML reads as a number must be quoted)."""
    if not isinstance(cfg.trust_remote_code, bool):
        raise ValueError(f"{stage}.trust_remote_code must be true or false, got {cfg.trust_remote_code!r}")
    if cfg.revision is not None and not (isinstance(cfg.revision, str) and cfg.revision.strip()):
        raise ValueError(
            f"{stage}.revision must be a branch, tag or commit of a hub model (quoted), got {cfg.revision!r}"
        )


def hub_kwargs(
    name_or_path: str | Path, trust_remote_code: bool = False, revision: str | None = None
) -> dict:
    """``from_pretrained`` keywords: remote code only when asked, and a pinned revision for hub ids only
    (a revision beside a local directory would be silently ignored, so it is refused)."""
    if revision is not None and Path(name_or_path).exists():
        raise ValueError(f"{name_or_path}: a revision pins a hub model id; this is a local path")
    check_local_model(name_or_path)
    return {"trust_remote_code": trust_remote_code, "revision": revision}


def check_local_model(name_or_path: str | Path) -> None:
    """Refuse, in one line, a model that can only be meant as a local directory (an absolute or ``./``
    path, more than one ``/``, which no hub id has, or ``owner/name`` where ``owner`` is a folder here) but
    is not one, instead of the hub's naming rules or, offline, a wait for the hub's retries.

    >>> check_local_model("/nonexistent/generator")
    Traceback (most recent call last):
    ...
    ValueError: /nonexistent/generator: no such model directory
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{name}: not a model directory (no config.json); give a directory a prmkit "
                             "command or save_pretrained wrote, or a hub id")  # fmt: skip
    elif path.exists():
        raise ValueError(f"{name}: a model is a directory (or a hub id), not a file")
    elif name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise ValueError(f"{name}: no such model directory")
    elif "/" in name and path.parent.is_dir():
        raise ValueError(
            f"{name}: no such model directory ({path.parent}/ is a folder here, so not a hub id)"
        )


def from_pretrained(
    loader, name_or_path: str | Path, what: str, trust_remote_code=False, revision=None, **kw
):
    """``loader.from_pretrained`` with prmkit's errors: remote code refused in one line naming the model
    and the flag, and a missing or unreadable model as a DataError."""
    try:
        return loader.from_pretrained(
            str(name_or_path), **hub_kwargs(name_or_path, trust_remote_code, revision), **kw
        )
    except ValueError as e:
        if "trust_remote_code" in str(e):  # transformers' refusal: several lines, not naming our flag
            raise remote_code_error(name_or_path) from None
        raise
    except OSError as e:
        raise DataError(name_or_path, None, f"cannot load {what}: {e}") from None


def claimed_name(name_or_path: str | Path) -> str:
    """A model as an output's claim names it (``io.claim_output``): a local path resolved, so that a run
    directory moved or copied whole, or named from another working directory, still resumes; a hub id
    as given."""
    return str(Path(name_or_path).resolve()) if Path(name_or_path).exists() else str(name_or_path)


def model_source(name_or_path: str | Path, model=None, revision: str | None = None) -> dict:
    """Where a loaded model came from, for a run's metadata: the resolved path of a local directory, or a
    hub id with the revision asked for and the commit it resolved to (the hub cache's snapshot that holds
    its ``config.json``; older transformers also kept it as ``config._commit_hash``)."""
    if Path(name_or_path).exists():
        return {"path": claimed_name(name_or_path)}
    commit = getattr(getattr(model, "config", model), "_commit_hash", None)
    if commit is None:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(str(name_or_path), "config.json", revision=revision)
        except (ValueError, OSError):  # not a valid repo id: nothing to record
            cached = None
        found = (
            re.search(r"/snapshots/([0-9a-f]{40})/", Path(cached).as_posix())
            if isinstance(cached, str)
            else None
        )
        commit = found.group(1) if found else None
    return {"hub_id": str(name_or_path), "revision": revision, "commit": commit}


def load_tokenizer(name_or_path: str | Path, trust_remote_code: bool = False, revision: str | None = None):
    """Load a tokenizer for generation: left padding and a pad token, whatever the model shipped."""
    from transformers import AutoTokenizer

    tok = from_pretrained(AutoTokenizer, name_or_path, "a tokenizer", trust_remote_code, revision)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    name_or_path: str | Path,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
):
    """Load any causal LM directory or hub id (eval mode); ``dtype`` "auto", "float32", "bfloat16".
    A model that needs its own code loads only with ``trust_remote_code``; ``revision`` pins a hub id."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = from_pretrained(
        AutoModelForCausalLM, name_or_path, "a causal LM", trust_remote_code, revision, dtype=torch_dtype
    )
    return model.eval()
