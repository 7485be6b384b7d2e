"""Released PRM formats on tiny random models saved in those formats (no downloads): one-pass scores
equal the scores read from a separate forward of each prefix."""

import pytest
import torch

from prmkit.models import train_tokenizer
from prmkit.reward.formats import FORMATS, get_format
from prmkit.reward.model import StepRewardModel
from prmkit.world import WorldConfig, generate_split

PROBLEMS = generate_split(WorldConfig(n_train=40), "train")


@pytest.fixture(scope="module")
def tok():
    texts = [p.question + "\n" + p.solution for p in PROBLEMS] + ["Step 1: a ки\n+ -"]
    return train_tokenizer(texts, vocab_size=400)


def _llama(tok, head: str):
    """A tiny random Llama with an LM head ("lm") or a two-class token head ("cls")."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok) + 4, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      num_labels=2, pad_token_id=tok.pad_token_id)  # fmt: skip
    return (LlamaForCausalLM if head == "lm" else LlamaForTokenClassification)(cfg).eval()


def _prefix_scores(rm: StepRewardModel, question, steps):
    """Reference: one forward per step prefix (ProcessBench's way), the score at that prefix's last read point."""
    out = []
    for k in range(1, len(steps) + 1):
        enc = rm.fmt.encode(rm.tokenizer, question, steps[:k], rm.tag_id, rm.tag)
        ids, pos = enc.ids, enc.positions
        x = torch.tensor([ids])
        with torch.no_grad():
            logits = rm.model(input_ids=x).logits[0, pos[-1]]
        if rm.fmt.head == "lm":
            out.append(float(logits[rm.label_ids].softmax(-1)[0]))
        else:
            out.append(float(logits[:2].softmax(-1)[1]))
    return out


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_format_saved_loaded_and_scored_in_one_pass(tmp_path, tok, name):
    import copy

    fmt = get_format(name)
    t = copy.deepcopy(tok)
    if fmt.tag and fmt.tag not in t.get_vocab():  # as the released tokenizers carry their tag
        t.add_tokens([fmt.tag], special_tokens=True)
    model = _llama(t, fmt.head)
    model.save_pretrained(tmp_path)
    t.save_pretrained(tmp_path)
    rm = StepRewardModel.from_pretrained(tmp_path, device="cpu", format=name)
    assert type(rm.model).__name__ == (
        "LlamaForCausalLM" if fmt.head == "lm" else "LlamaForTokenClassification"
    )
    qs = [p.question for p in PROBLEMS[:3]]
    steps = [p.solution.split("\n") for p in PROBLEMS[:3]]
    scores = rm.score(qs, steps, batch_size=2)
    for q, s, row in zip(qs, steps, scores, strict=True):
        assert len(row) == len(s) and all(0 < x < 1 for x in row)
        assert row == pytest.approx(_prefix_scores(rm, q, s), abs=1e-4)


def test_math_shepherd_text_matches_the_released_layout():
    text = get_format("math-shepherd").render("Q?", ["a = 1", "b = 2"])
    assert text == "Q? Step 1: a = 1 ки\nStep 2: b = 2 ки"


def test_qwen_text_has_one_separator_per_step():
    text = get_format("qwen-prm").render("Q?", ["a", "b"])
    assert text.count("<extra_0>") == 2 and text.endswith("b<extra_0><|im_end|><|endoftext|>")


def test_trl_positions_are_the_last_token_of_each_step(tok):
    enc = get_format("trl").encode(tok, "Q?", ["He has 3 pens.", "#### 3"], None)
    ids, pos = enc.ids, enc.positions
    assert pos[-1] == len(ids) - 1 and tok.decode([ids[pos[0]]]) == "\n"


def test_unknown_format_lists_valid():
    with pytest.raises(ValueError, match="valid: prmkit, math-shepherd, qwen-prm, trl"):
        get_format("openai")
