from prmkit.models import STEP_TAG, format_prompt, load_causal_lm, load_tokenizer, new_model, train_tokenizer
from prmkit.world import WorldConfig, generate_split


def test_tokenizer_splits_digits_and_keeps_step_tag(tmp_path):
    texts = [p.question + "\n" + p.solution for p in generate_split(WorldConfig(n_train=300), "train")]
    tok = train_tokenizer(texts, vocab_size=400)
    pieces = tok.tokenize(f"He has 128*4 = <<128*4=512>>512 pens.{STEP_TAG}")
    digits = [t for t in pieces if any(c.isdigit() for c in t)]
    assert all(len(t.lstrip("Ġ")) == 1 for t in digits), digits
    assert pieces[-1] == STEP_TAG
    text = format_prompt("Tom has 3 apples?") + "He has 3+4 = <<3+4=7>>7.\n#### 7"
    assert tok.decode(tok.encode(text)) == text  # byte-level: lossless
    model = new_model(tok, "test")
    assert model.config.vocab_size == len(tok) and model.num_parameters() < 100_000
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tok2, model2 = load_tokenizer(tmp_path), load_causal_lm(tmp_path)
    assert tok2.encode(text) == tok.encode(text) and tok2.padding_side == "left"
    assert tok2.convert_tokens_to_ids(STEP_TAG) == tok.convert_tokens_to_ids(STEP_TAG)
    assert type(model2).__name__ == "LlamaForCausalLM"
