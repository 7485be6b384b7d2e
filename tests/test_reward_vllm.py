"""Scoring through vLLM's pooling runner equals the hf scorer within 1e-3, for a prmkit PRM, an ORM and a
Math-Shepherd-format PRM (tiny random Llamas with vLLM's smallest CPU head size). Skipped without vLLM."""

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (make setup-vllm installs the CPU build)")
pytestmark = pytest.mark.slow  # an engine takes tens of seconds to start on a CPU

ENGINE = dict(dtype="float32", enforce_eager=True, kv_cache_memory_bytes=32 * 2**20)


def _llama(tok, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
        tie_word_embeddings=True, initializer_range=0.2,
    )  # fmt: skip
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize(("fmt", "kind"), [("prmkit", "prm"), ("prmkit", "orm"), ("math-shepherd", "prm")])
def test_vllm_scores_equal_hf(world, tmp_path, fmt, kind):
    from prmkit.reward import StepRewardModel, load_reward_model

    problems, tok = world
    tok = tok.__class__.from_pretrained(_save_tok(tok, tmp_path))  # a copy: the tag may be added below
    model = _llama(tok, seed=3)
    rm = StepRewardModel(model, tok, kind=kind, format=fmt)  # adds the format's tag if missing
    rm.save_pretrained(tmp_path / "rm")
    questions = [p.question for p in problems[:5]]
    steps = [s.split("\n") for s in (p.solution for p in problems[:5])]
    steps[0] = steps[0] * 6  # long enough to be cut at the 128-token context: its last steps score nan
    hf = load_reward_model(str(tmp_path / "rm")).score(questions, steps)
    scorer = load_reward_model(str(tmp_path / "rm"), backend="vllm", **ENGINE)
    try:
        with pytest.warns(UserWarning, match="truncated"):
            got = scorer.score(questions, steps)
    finally:
        scorer.close()
    assert [len(r) for r in got] == [len(r) for r in hf]
    for a, b in zip(got, hf, strict=True):
        assert a == pytest.approx(b, abs=1e-3, nan_ok=True)
    assert any(x != x for x in got[0]) or kind == "orm"  # nan where the tag was cut
    assert scorer.source == {"path": str((tmp_path / "rm").resolve())}


def _save_tok(tok, tmp_path):
    path = tmp_path / "tok"
    tok.save_pretrained(path)
    return path


def test_two_class_formats_are_refused(world, tmp_path):
    from prmkit.reward.vllm import VLLMScorer

    _, tok = world
    with pytest.raises(ValueError, match="qwen-prm has a two-class head"):
        model = _llama(tok, seed=0)
        model.save_pretrained(tmp_path / "m")
        tok.save_pretrained(tmp_path / "m")
        VLLMScorer(str(tmp_path / "m"), format="qwen-prm")
