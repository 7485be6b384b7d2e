import torch

from prmkit.policy.sft import SFTConfig, tokenize_sft, train_sft
from prmkit.training import last_checkpoint
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


def test_sft_and_sample_on_real_gsm8k_with_a_model_path(shared_data, tmp_path):
    """The real-data path: GSM8K train lines, a tiny model trained from scratch, then fine-tuned again
    from its directory (as a Hugging Face id or path would be), then sampled through the CLI."""
    import json

    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.data import load_problems

    problems = load_problems("gsm8k", str(shared_data / "gsm8k/train.jsonl"), split="train", limit=16)
    base = train_sft(
        SFTConfig(model="scratch:test", max_steps=2, batch_size=4, vocab_size=400), problems, tmp_path / "a"
    )
    tuned = train_sft(SFTConfig(model=str(base), max_steps=2, batch_size=4), problems, tmp_path / "b")
    runner = CliRunner()
    out = tmp_path / "samples.jsonl"
    args = [
        "sample",
        "--model",
        str(tuned),
        "--source",
        "gsm8k",
        "--problems",
        str(shared_data / "gsm8k/test.jsonl"),
    ]
    args += ["--limit", "3", "--out", str(out), "--set", "sample.n=2", "--set", "sample.max_new_tokens=8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["problems"] == 3 and summary["samples"] == 6
    assert {json.loads(line)["problem_id"] for line in out.read_text().splitlines()} == {
        "gsm8k-test-00000",
        "gsm8k-test-00001",
        "gsm8k-test-00002",
    }
