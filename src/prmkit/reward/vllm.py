"""Scoring with vLLM's pooling runner: the ``StepRewardModel`` of a directory, on vLLM's engine.

A prmkit PRM or ORM, and a released PRM read at label-token logits (``math-shepherd``), scores step i
as P(good) = softmax over the logits of the good and bad label tokens at the i-th tag. vLLM computes
the same number when the causal LM is converted online into a one-label token classifier whose row is
``W[good] - W[bad]`` (its ``from_2_way_softmax`` method: ``sigmoid(l_good - l_bad)`` is that softmax),
run as ``token_classify`` with every position returned. The text, the tag positions, the cut at the
model's context and the ORM's repeated last score are ``StepRewardModel``'s own (its ``encode``), so
both scorers read the same positions of the same tokens.

Departure: formats with a two-class token head (``qwen-prm``, ``trl``) are not converted here; vLLM
serves Qwen2.5-Math-PRM natively (``vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling``), and prmkit
scores them with the ``hf`` scorer. vLLM is imported when a scorer is built.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

from prmkit.reward.formats import get_format
from prmkit.reward.model import StepRewardModel
from prmkit.reward.scoring import check_lengths, read_at, warn_cut


class VLLMScorer:
    """``score(questions, steps) -> list[list[float]]`` like ``StepRewardModel``, through ``vllm.LLM``."""

    def __init__(
        self,
        path_or_id: str,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        revision: str | None = None,
        llm: Any = None,
        **overrides: Any,
    ):
        try:
            import vllm
        except ModuleNotFoundError:
            raise ValueError(
                "vLLM scoring needs vLLM: pip install 'prmkit[vllm]' (CPU: make setup-vllm)"
            ) from None
        from transformers import AutoConfig
        from vllm.config import PoolerConfig

        from prmkit.models import from_pretrained, hub_kwargs, load_tokenizer, model_source
        from prmkit.policy.vllm import CPU_KV_CACHE_BYTES, _has_cuda
        from prmkit.reward.model import META_FILE

        name = str(path_or_id)
        hub = hub_kwargs(name, trust_remote_code, revision)
        engine_args = {k: overrides.pop(k) for k in list(overrides) if k not in _RM_FIELDS}
        meta = _read_meta(name, META_FILE)
        kw = {k: meta[k] for k in ("kind", "tag", "good", "bad", "format") if k in meta} | overrides
        fmt = get_format(kw.get("format", "prmkit"))
        if fmt.head != "lm":
            raise ValueError(
                f"{name}: vLLM scoring reads label-token logits (formats prmkit, math-shepherd); "
                f"format {fmt.name} has a two-class head: score it with the hf backend"
            )
        config = from_pretrained(AutoConfig, name, "a model config", **hub)
        tok = load_tokenizer(name, **hub)
        # the scorer's formatting without the weights (vLLM holds those)
        stub = SimpleNamespace(config=config, resize_token_embeddings=_no_resize(name))
        rm = StepRewardModel(stub, tok, **kw)
        self.rm, self.kind = rm, rm.kind
        good, bad = tok.convert_ids_to_tokens(rm.label_ids)
        told = "kv_cache_memory_bytes" in engine_args or os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        if not told and not _has_cuda():
            engine_args["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        self.owner = llm is None
        self.llm = llm or vllm.LLM(
            model=name,
            revision=revision,
            trust_remote_code=trust_remote_code,
            dtype=dtype,
            runner="pooling",
            convert="classify",
            hf_overrides={
                "classifier_from_token": [bad, good],
                "method": "from_2_way_softmax",
            },  # (false, true)
            pooler_config=PoolerConfig(task="token_classify", tok_pooling_type="ALL", use_activation=True),
            max_model_len=rm.max_length,
            **engine_args,
        )
        self.source = model_source(name, None, revision)

    def score(self, questions: list[str], steps: list[list[str]], batch_size: int = 16) -> list[list[float]]:
        """P(good) per step, in input order; ``nan`` for steps whose tag fell beyond the context.
        ``batch_size`` is accepted for the shared interface: the engine batches."""
        from vllm.inputs import TokensPrompt

        check_lengths("reward", questions, steps)
        limit = self.rm.max_length
        encoded = [self.rm.encode(q, s) for q, s in zip(questions, steps, strict=True)]
        warn_cut("reward", [len(e.ids) for e in encoded], limit)
        outs = self.llm.encode(
            [TokensPrompt(prompt_token_ids=e.ids[:limit]) for e in encoded],
            pooling_task="token_classify",
            use_tqdm=False,
        )
        results = []
        for enc, out in zip(encoded, outs, strict=True):
            p_good = out.outputs.data.float().reshape(-1).tolist()  # (T,) P(good) at every position
            scores = read_at(p_good, enc, min(len(enc.ids), limit))
            if self.kind == "orm":
                scores = [scores[-1]] * len(scores) if scores else []
            results.append(scores)
        return results

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None and self.owner:
            llm.llm_engine.engine_core.shutdown()


_RM_FIELDS = ("kind", "tag", "good", "bad", "format", "max_length")


def _read_meta(name: str, meta_file: str) -> dict:
    import json
    from pathlib import Path

    path = Path(name) / meta_file
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _no_resize(name: str):
    def refuse(_n: int) -> None:
        raise ValueError(f"{name}: its tokenizer lacks the step tag; vLLM scores a model as saved")

    return refuse
