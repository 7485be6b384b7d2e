"""The hf backend: calculator forcing on a scripted model, and equality with HF generate on a tiny Llama."""

import math
from types import SimpleNamespace

import pytest
import torch

from prmkit.models import format_prompt, new_model, train_tokenizer
from prmkit.policy import make_policy, policy_names
from prmkit.policy.hf import HFPolicy

TEXTS = [
    "Question: Tom buys 3 boxes of 4 pens. How many pens?\nAnswer:\nHe buys 3*4 = <<3*4=12>>12 pens.\n#### 12",
    "Question: Ann has 48 clips and sells half. How many are left?\nAnswer:\nShe has 48/2 = <<48/2=24>>24.\n#### 24",
] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


class _NoCache:
    def batch_repeat_interleave(self, n):
        pass

    def batch_select_indices(self, idx):
        pass


class BigramModel(torch.nn.Module):
    """Next token is a fixed function of the last token: a script the sampler must follow or override."""

    def __init__(self, tok, script: str):
        super().__init__()
        ids = tok.encode(script, add_special_tokens=False) + [tok.eos_token_id]
        self.table = torch.full((len(tok), len(tok)), -1e9)
        for a, b in zip(ids, ids[1:], strict=False):
            assert self.table[a].max() < 0, "script must be a function of the previous token"
            self.table[a, b] = 0.0
        self.first = ids[0]
        self.seen: list[int] = []

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True
    ):
        logits = self.table[input_ids]  # (B, T, V)
        if past_key_values is None:  # prefill: start the script
            logits[:, -1, :] = -1e9
            logits[:, -1, self.first] = 0.0
        self.seen.append(input_ids.shape[0])
        return SimpleNamespace(logits=logits, past_key_values=past_key_values or _NoCache())


def test_calculator_forces_exact_result(tok):
    # the script would write 15 after "=", the calculator must force 12 and ">>"
    model = BigramModel(tok, "Sam: <<3*4=15 #")
    policy = HFPolicy(model, tok, calculator=True, max_new_tokens=30, device="cpu")
    (row,) = policy.sample([format_prompt("q")], n=1, temperature=0.0)
    assert row[0].startswith("Sam: <<3*4=12>>")
    plain = HFPolicy(model, tok, calculator=False, max_new_tokens=30, device="cpu")
    assert plain.sample([format_prompt("q")], n=1, temperature=0.0)[0][0] == "Sam: <<3*4=15 #"


def test_calculator_rejects_non_arithmetic_and_goes_on(tok):
    model = BigramModel(tok, "Jo: <<a*b=9 #")
    policy = HFPolicy(model, tok, max_new_tokens=30, device="cpu")
    assert policy.sample(["x"], n=2, temperature=0.0)[0] == ["Jo: <<a*b=9 #"] * 2


def test_prefix_ending_in_open_annotation_is_completed(tok):
    model = BigramModel(tok, "Sam #")
    policy = HFPolicy(model, tok, max_new_tokens=10, device="cpu")
    text = policy.sample(["He buys <<48/2="], n=1, temperature=0.0)[0][0]
    assert text.startswith("24>>")


def test_stop_strings_and_finish_reasons(tok):
    model = BigramModel(tok, "Ki:3 boxes;4 pens!")
    policy = HFPolicy(model, tok, max_new_tokens=50, stop=("xes;",), device="cpu")
    (c,) = policy.generate(["x"], n=1, temperature=0.0)[0]
    assert c.text == "Ki:3 bo" and c.finish_reason == "stop"
    short = HFPolicy(model, tok, max_new_tokens=3, device="cpu")
    (c,) = short.generate(["x"], n=1, temperature=0.0)[0]
    assert c.finish_reason == "length" and c.n_tokens == 3


@pytest.fixture(scope="module")
def llama(tok):
    model = new_model(tok, "test", seed=1)
    model.eval()
    return model


def test_greedy_matches_hf_generate_with_left_padding(tok, llama):
    prompts = [
        format_prompt("Tom buys 3 boxes of 4 pens."),
        "He",
        format_prompt("Ann has 48 clips and sells half."),
    ]
    ours = HFPolicy(llama, tok, calculator=False, max_new_tokens=12, device="cpu").generate(
        prompts, n=1, temperature=0.0
    )
    for prompt, (c,) in zip(prompts, ours, strict=True):
        enc = tok(prompt, return_tensors="pt")
        ref = llama.generate(**enc, do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id)
        new = ref[0, enc["input_ids"].shape[1] :].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        assert c.text == tok.decode(new, skip_special_tokens=True)


def test_n_samples_share_prefill_and_are_seeded(tok, llama):
    calls = []
    orig = llama.forward

    def spy(*a, **kw):
        calls.append(kw["input_ids"].shape)
        return orig(*a, **kw)

    llama.forward = spy
    try:
        policy = HFPolicy(llama, tok, max_new_tokens=8, batch_size=64, device="cpu")
        a = policy.sample(["He buys", "Ann has 48"], n=5, temperature=1.0, seed=3)
    finally:
        del llama.forward
    assert calls[0][0] == 2  # one prefill row per prompt, not per sample
    assert all(shape[0] <= 10 and shape[1] == 1 for shape in calls[1:])
    assert [len(r) for r in a] == [5, 5]
    b = HFPolicy(llama, tok, max_new_tokens=8, device="cpu").sample(
        ["He buys", "Ann has 48"], n=5, temperature=1.0, seed=3
    )
    assert a == b


def test_small_batches_and_top_p(tok, llama):
    policy = HFPolicy(llama, tok, max_new_tokens=4, batch_size=3, device="cpu")
    out = policy.generate(["a", "bb", "ccc"], n=4, temperature=0.7, top_p=0.9, seed=0)
    assert [len(r) for r in out] == [4, 4, 4]
    assert all(c.n_tokens <= 4 for r in out for c in r)


def test_registry_lists_valid_backends():
    assert "hf" in policy_names()
    with pytest.raises(ValueError, match="valid: .*hf"):
        make_policy("nope", "model")


def test_hf_backend_loads_a_model_directory(tmp_path, tok, llama):
    llama.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    policy = make_policy("hf", str(tmp_path), max_new_tokens=3)
    assert len(policy.sample(["He"], n=2, seed=0)[0]) == 2


def test_sampler_follows_the_distribution_and_top_p():
    from prmkit.policy.hf import _sample_next

    logits = torch.log(torch.tensor([[0.0, 0.5, 0.3, 0.2]])).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    drawn, lp = _sample_next(logits, 1.0, 1.0, gen)
    counts = torch.bincount(drawn, minlength=4) / 20000
    assert counts[0] == 0 and torch.allclose(counts[1:], torch.tensor([0.5, 0.3, 0.2]), atol=0.015)
    assert torch.allclose(lp, logits[0, drawn], atol=1e-6)  # each token's own log-probability
    drawn, lp = _sample_next(logits, 1.0, 0.6, gen)
    top = torch.bincount(drawn, minlength=4) / 20000
    assert top[3] == 0 and top[0] == 0 and torch.allclose(top[1:3], torch.tensor([0.625, 0.375]), atol=0.015)
    assert torch.allclose(lp, logits[0, drawn], atol=1e-6)  # before the nucleus cut
    drawn, lp = _sample_next(logits[:2], 0.0, 1.0, gen)
    assert drawn.tolist() == [1, 1] and torch.allclose(lp, torch.log(torch.tensor([0.5, 0.5])), atol=1e-6)
    _, lp = _sample_next(2 * logits[:2], 2.0, 1.0, gen)  # the temperature divides the logits first
    assert torch.allclose(lp, torch.log(torch.tensor([0.5, 0.5])), atol=1e-6)


def test_completions_carry_their_tokens(tok, llama):
    """A completion's token ids decode to its text, the calculator's tokens are marked forced (their
    log-probability NaN), and every other token's log-probability is the model's at the temperature."""
    model = BigramModel(tok, "Sam: <<3*4=15 #")
    (c,) = HFPolicy(model, tok, max_new_tokens=30, device="cpu").generate(
        [format_prompt("q")], temperature=0.0
    )[0]
    assert len(c.token_ids) == len(c.forced) == len(c.logprobs) == c.n_tokens
    assert tok.decode(c.token_ids) == c.text and c.text.startswith("Sam: <<3*4=12>>")
    forced = tok.decode([t for t, f in zip(c.token_ids, c.forced, strict=True) if f])
    assert forced == "12>>" and all(math.isnan(x) == f for x, f in zip(c.logprobs, c.forced, strict=True))
    prompt = format_prompt("Tom buys 3 boxes of 4 pens.")
    policy = HFPolicy(llama, tok, calculator=False, max_new_tokens=8, device="cpu")
    (c,) = policy.generate([prompt], temperature=0.7, seed=1)[0]
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    full = torch.cat([ids, torch.tensor([c.token_ids])], dim=1)
    with torch.no_grad():
        logits = llama(full).logits[0, ids.shape[1] - 1 : -1].float() / 0.7
    want = logits.log_softmax(-1).gather(-1, torch.tensor(c.token_ids)[:, None]).squeeze(-1)
    assert torch.allclose(torch.tensor(c.logprobs), want, atol=1e-4)
