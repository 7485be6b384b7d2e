import torch

from prmkit.policy.sft import SFTConfig, last_checkpoint, tokenize_sft, train_sft
from prmkit.world import WorldConfig, generate_split


def test_tokenize_masks_the_prompt():
    from prmkit.models import train_tokenizer

    tok = train_tokenizer(["Question: a b\nAnswer:\n12 #### 3"] * 5, vocab_size=280)
    rows, cut = tokenize_sft(tok, [("Question: a b\nAnswer:\n", "12 #### 3")], max_length=512)
    r = rows[0]
    n_prompt = len(tok("Question: a b\nAnswer:\n")["input_ids"])
    assert r["labels"][:n_prompt] == [-100] * n_prompt
    assert r["labels"][n_prompt:] == r["input_ids"][n_prompt:] and r["input_ids"][-1] == tok.eos_token_id
    assert cut == 0 and tokenize_sft(tok, [("Question: a b\nAnswer:\n", "12 #### 3")], max_length=5)[1] == 1


def test_sft_trains_changes_weights_and_resumes(tmp_path):
    problems = generate_split(WorldConfig(n_train=200), "train")
    cfg = SFTConfig(model="scratch:test", max_steps=6, batch_size=8, save_steps=3, logging_steps=3)
    out = tmp_path / "gen"
    ckpts = tmp_path / "gen.checkpoints"
    # interrupted run: stop after the first checkpoint, as if killed
    first = SFTConfig(**{**cfg.__dict__, "max_steps": 3})
    train_sft(first, problems, out)
    assert (out / "config.json").exists()
    from prmkit.models import load_causal_lm

    init = load_causal_lm(out)  # 3 steps in
    (out / "config.json").unlink()
    import shutil

    shutil.rmtree(out)
    assert last_checkpoint(ckpts).endswith("checkpoint-3")
    train_sft(cfg, problems, out)  # resumes from checkpoint-3 and runs to 6
    assert last_checkpoint(ckpts).endswith("checkpoint-6")
    final = load_causal_lm(out)
    changed = [not torch.equal(a, b) for a, b in zip(init.parameters(), final.parameters(), strict=True)]
    assert all(changed)
    assert train_sft(cfg, problems, out) == out  # a finished directory is left alone
