"""Step reward models in the Math-Shepherd style: a causal LM read at step tags.

The text of a solution is ``format_prompt(question)`` followed by each step and a tag::

    Question: ...\nAnswer:\n<step 1> <|step|>\n<step 2> <|step|>\n

and the score of step i is P(good) = softmax over the logits of two label tokens ("+" good, "-" bad)
at the i-th tag position. A causal LM sees only the prefix at each tag, so all steps of a solution
are scored in one forward pass, and a released PRM (Math-Shepherd's ``peiyi9979/math-shepherd-mistral-
7b-prm`` with tag "ки") goes through the same code as the world's tiny models.

An outcome reward model (ORM) is the same class with ``kind="orm"``: it is trained only at the last
tag, and ``score`` returns, for each solution, a list of ``len(steps)`` floats whose every entry is the
solution's score (read at the last tag), so any step aggregation (min, last, product) gives it back.

Departures: sequences longer than the model's context are cut from the right (Math-Shepherd drops
them); a step whose tag was cut gets ``nan`` rather than a score read elsewhere. Only the two label
rows of the output head are applied when scoring, so a 150k-token vocabulary costs nothing extra.
The kind, tag and label tokens live in ``prmkit_reward.json`` beside the Hugging Face files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prmkit.reward.formats import PRMFormat, format_for_scoring, get_format  # noqa: F401 (re-exported)
from prmkit.reward.scoring import Encoded, check_lengths, read_at, score_encoded

META_FILE = "prmkit_reward.json"
REWARD_KINDS = ("prm", "orm")


def single_token_id(tokenizer, text: str, what: str) -> int:
    """The id of ``text`` when it is exactly one token, else a ValueError naming it."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{what} {text!r} must be a single token; this tokenizer gives {ids}")
    return ids[0]


def ensure_tag(model, tokenizer, tag: str) -> int:
    """The tag's token id, adding it as a special token (and resizing the embeddings) if missing."""
    if tag not in tokenizer.get_vocab():
        tokenizer.add_tokens([tag], special_tokens=True)
        model.resize_token_embeddings(len(tokenizer))
        print(f"reward: added {tag!r} to the tokenizer and resized the embeddings to {len(tokenizer)}")
    return tokenizer.convert_tokens_to_ids(tag)


def label_logits(model, input_ids, attention_mask, label_ids: list[int]):
    """Logits of the label tokens at every position, (B, T, 2), applying only those head rows."""
    import torch.nn.functional as F

    base = model.base_model
    head = model.get_output_embeddings()
    if base is model or head is None:  # no separable head: take the full logits
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[..., label_ids]
    hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
    bias = head.bias[label_ids] if getattr(head, "bias", None) is not None else None
    return F.linear(hidden.to(head.weight.dtype), head.weight[label_ids], bias)  # (B, T, 2)


class StepRewardModel:
    """A PRM or ORM: ``score(questions, steps) -> list[list[float]]``, one P(good) per step."""

    def __init__(
        self,
        model,
        tokenizer,
        kind: str = "prm",
        tag: str | None = None,
        good: str = "+",
        bad: str = "-",
        max_length: int | None = None,
        format: str = "prmkit",
    ):
        if kind not in REWARD_KINDS:
            raise ValueError(f"reward kind must be one of {', '.join(REWARD_KINDS)}, got {kind!r}")
        self.fmt: PRMFormat = get_format(format)
        self.model, self.tokenizer, self.kind, self.tag = model, tokenizer, kind, tag or self.fmt.tag
        self.good, self.bad = good, bad
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tag_id = ensure_tag(model, tokenizer, self.tag) if self.tag else None
        self.label_ids = []
        if self.fmt.head == "lm":
            self.label_ids = [
                single_token_id(tokenizer, good, "good label"),
                single_token_id(tokenizer, bad, "bad label"),
            ]
        ctx = getattr(model.config, "max_position_embeddings", None)
        self.max_length = max_length or ctx or 4096
        self.source: dict[str, Any] = {}  # set by from_pretrained

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        **overrides: Any,
    ) -> StepRewardModel:
        """Load a model directory or hub id (on the GPU when there is one); ``prmkit_reward.json``
        (if any) gives kind/tag/labels, ``overrides`` (kind, tag, good, bad, max_length) win. Code shipped
        with the model runs only with ``trust_remote_code``; ``revision`` pins a hub id. ``source``
        records where the model came from (``models.model_source``)."""
        from prmkit.models import load_causal_lm, load_tokenizer, model_source

        meta: dict[str, Any] = {}
        meta_path = Path(path_or_id) / META_FILE
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        kw = {k: meta[k] for k in ("kind", "tag", "good", "bad", "format") if k in meta}
        kw.update(overrides)
        import torch

        hub = {"trust_remote_code": trust_remote_code, "revision": revision}
        if get_format(kw.get("format", "prmkit")).head == "cls":
            model = load_token_classifier(path_or_id, dtype=dtype, **hub)
        else:
            model = load_causal_lm(path_or_id, dtype=dtype, **hub)
        model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        rm = cls(model, load_tokenizer(path_or_id, **hub), **kw)
        rm.source = model_source(path_or_id, model, revision)
        return rm

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tag": self.tag,
            "good": self.good,
            "bad": self.bad,
            "format": self.fmt.name,
        }

    def save_pretrained(self, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the model, tokenizer and ``prmkit_reward.json`` (plus ``extra``) into ``out_dir``."""
        out_dir = Path(out_dir)
        self.model.save_pretrained(str(out_dir))
        self.tokenizer.save_pretrained(str(out_dir))
        write_meta(out_dir, {**self.meta(), **(extra or {})})
        return out_dir

    def encode(self, question: str, steps: list[str]) -> Encoded:
        """Token ids of the scored text and the position of each step's tag (uncut)."""
        try:
            return self.fmt.encode(self.tokenizer, question, steps, self.tag_id, self.tag)
        except ValueError as e:
            raise ValueError(f"reward: {e}") from None

    def score(self, questions: list[str], steps: list[list[str]], batch_size: int = 16) -> list[list[float]]:
        """P(good) per step, in input order; ``nan`` for steps whose tag fell beyond ``max_length``."""
        check_lengths("reward", questions, steps)
        self.model.eval()

        def forward(input_ids, mask):  # (B, T) P(good)
            if self.fmt.head == "lm":  # label-token logits: P("+") against "-"
                return label_logits(self.model, input_ids, mask, self.label_ids).float().softmax(-1)[..., 0]
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits  # a two-class token head
            return logits[..., :2].float().softmax(-1)[..., 1]  # P(class 1)

        def read(p_good, enc: Encoded, kept: int) -> list[float]:
            scores = read_at(p_good, enc, kept)
            return [scores[-1]] * len(scores) if self.kind == "orm" and scores else scores

        encoded = [self.encode(q, s) for q, s in zip(questions, steps, strict=True)]
        return score_encoded(
            encoded, forward, read, self.model, self.tokenizer, self.max_length, batch_size, "reward"
        )


def load_token_classifier(
    path_or_id: str | Path, dtype: str = "auto", trust_remote_code: bool = False, revision: str | None = None
):
    """A two-class token head: Qwen2.5-Math-PRM's remote-code class (only with ``trust_remote_code``),
    or a TRL token classifier."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

    from prmkit.models import from_pretrained, remote_code_error

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    hub = {"trust_remote_code": trust_remote_code, "revision": revision}
    config = from_pretrained(AutoConfig, path_or_id, "a model config", **hub)
    if any("ProcessRewardModel" in a for a in (config.architectures or [])):  # Qwen2.5-Math-PRM
        # its config is a stock Qwen2 one, so without remote code AutoModel would quietly build a
        # Qwen2Model without the reward head: refuse instead
        if not trust_remote_code:
            raise remote_code_error(path_or_id)
        return from_pretrained(AutoModel, path_or_id, "a PRM", **hub, dtype=torch_dtype).eval()
    return from_pretrained(
        AutoModelForTokenClassification, path_or_id, "a token classifier", **hub, dtype=torch_dtype
    ).eval()


def write_meta(out_dir: str | Path, meta: dict[str, Any]) -> None:
    from prmkit.io import atomic_write_json

    atomic_write_json(Path(out_dir) / META_FILE, meta)
