import json
import math

import pytest
import torch
from safetensors.torch import load_file

from prmkit.models import format_prompt, load_causal_lm, new_model
from prmkit.reward.scoring import encode_solution
from prmkit.reward.value import (
    HEAD_FILE,
    ValueConfig,
    ValueModel,
    attach_head,
    build_value_examples,
    collate_values,
    forward_values,
    train_value,
    verifier_loss,
)
from prmkit.steps import split_steps
from prmkit.types import Solution


def _solutions(problems, n=12):
    out = []
    for i, p in enumerate(problems[:n]):
        steps = split_steps(p.solution)
        out.append(Solution(p.id, 0, p.solution, steps, correct=i % 2 == 0))
    return out


def test_config_validation():
    with pytest.raises(ValueError, match="value.head"):
        ValueConfig(head="mean")
    with pytest.raises(ValueError, match="resid_dropout"):
        ValueConfig(resid_dropout=1.0)
    with pytest.raises(ValueError, match="eval_fraction"):
        ValueConfig(eval_fraction=1.0)


def test_value_loss_hand_computed():
    v = torch.tensor([[5.0, 1.0, -2.0]])  # (B=1, T=3); position 0 is the prompt
    lm = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])  # (1, 3, V=2)
    ids = torch.tensor([[0, 1, 0]])
    targets = torch.tensor([[-100.0, 1.0, 1.0]])
    bce = (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(2.0)))) / 2
    # token 1 from position 0 (logits [1, 0]), token 2 = id 0 from position 1 (logits [0, 2])
    nll = (-(0.0 - math.log(math.e + 1)) - (0.0 - math.log(1 + math.exp(2.0)))) / 2
    assert verifier_loss(v, lm, ids, targets, 1.0).item() == pytest.approx(bce + nll, abs=1e-6)
    assert verifier_loss(v, lm, ids, targets, 0.5).item() == pytest.approx(bce + 0.5 * nll, abs=1e-6)
    # the prompt's value and logits are not in the loss
    v2, lm2 = v.clone(), lm.clone()
    v2[0, 0], lm2[0, 2] = -9.0, torch.tensor([0.0, 7.0])
    assert verifier_loss(v2, lm2, ids, targets, 1.0).item() == pytest.approx(bce + nll, abs=1e-6)
    # "last": the value only at the last token (-1 = LM loss only), the LM loss unchanged
    last = torch.tensor([[-100.0, -1.0, 1.0]])
    bce_last = -math.log(1 / (1 + math.exp(2.0)))
    assert verifier_loss(v, lm, ids, last, 1.0).item() == pytest.approx(bce_last + nll, abs=1e-6)


def test_examples_mask_the_prompt_and_last_head(world):
    problems, tok = world
    sols = _solutions(problems, 2) + [Solution(problems[2].id, 1, "x", ["x"], correct=None)]
    probs = {p.id: p for p in problems}
    rows = build_value_examples(sols, probs, ValueConfig(), tok)
    assert len(rows) == 2  # the ungraded one is dropped
    n_prompt = len(tok(format_prompt(problems[0].question))["input_ids"])
    t = rows[0]["targets"]
    assert t[:n_prompt] == [-100.0] * n_prompt and t[n_prompt:] == [1.0] * (len(t) - n_prompt)
    assert set(rows[1]["targets"]) == {-100.0, 0.0}
    last = build_value_examples(sols, probs, ValueConfig(head="last"), tok)[0]["targets"]
    assert [x for x in last if x >= 0] == [1.0] and last[-1] == 1.0
    batch = collate_values(rows, tok.pad_token_id)
    assert (batch["value_targets"] >= 0).sum().item() == sum(x >= 0 for r in rows for x in r["targets"])


def test_score_is_one_pass_and_matches_a_full_forward(world, tmp_path):
    problems, tok = world
    vm = ValueModel(new_model(tok, "test", seed=1), tok)
    qs = [p.question for p in problems[:5]]
    steps = [split_steps(p.solution) for p in problems[:5]]
    calls = []
    hook = vm.lm.value_head.register_forward_hook(lambda *a: calls.append(1))
    scores = vm.score(qs, steps, batch_size=8)
    hook.remove()
    assert len(calls) == 1 and [len(s) for s in scores] == [len(s) for s in steps]
    for q, ss, got in zip(qs, steps, scores, strict=True):
        enc = encode_solution(tok, q, ss)
        ids, ends = enc.ids, enc.positions
        x = torch.tensor([ids])
        with torch.no_grad():
            v = forward_values(vm.lm, x, torch.ones_like(x))[0][0].sigmoid()
        assert got == pytest.approx([v[e].item() for e in ends], abs=1e-5)
    vm.save_pretrained(tmp_path / "vm")
    assert (tmp_path / "vm" / HEAD_FILE).exists()
    assert json.loads((tmp_path / "vm" / "prmkit_reward.json").read_text())["kind"] == "value"
    loaded = ValueModel.from_pretrained(tmp_path / "vm", device="cpu")
    for a, b in zip(loaded.score(qs, steps, batch_size=2), scores, strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def test_resid_dropout_is_set_on_llama(world):
    _, tok = world
    lm = attach_head(new_model(tok, "test"), 0.2)
    assert lm.config.attention_dropout == 0.2 and lm.value_dropout.p == 0.2
    assert all(layer.self_attn.attention_dropout == 0.2 for layer in lm.model.layers)


def test_training_changes_lm_and_head_and_resumes(world, tmp_path, tiny_model_dir):
    from prmkit.training import last_checkpoint

    problems, tok = world
    init = tiny_model_dir(tok, "gen")
    probs = {p.id: p for p in problems}
    cfg = ValueConfig(init=str(init), max_steps=2, batch_size=4, save_steps=1, eval_fraction=0.25, lr=1e-2)
    out = train_value(cfg, _solutions(problems), probs, tmp_path / "value")
    meta = json.loads((out / "prmkit_reward.json").read_text())
    assert meta["kind"] == "value" and "eval_final_accuracy" in meta["eval"]
    before = new_model(tok, "test").state_dict()
    vm = ValueModel.from_pretrained(out, device="cpu")
    after = vm.lm.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    torch.manual_seed(cfg.seed)  # the head as train_value initialised it
    fresh = attach_head(load_causal_lm(init, dtype="float32")).value_head
    assert not torch.equal(fresh.weight, vm.lm.value_head.weight)
    assert not torch.equal(fresh.bias, vm.lm.value_head.bias)
    # checkpoints carry the head (a submodule of the LM while training), so resume restores it
    ckpt = load_file(str(tmp_path / "value.checkpoints" / "checkpoint-2" / "model.safetensors"))
    assert torch.equal(ckpt["value_head.weight"], vm.lm.value_head.weight)
    import shutil

    shutil.rmtree(out)  # as if killed after checkpoint-2: the rerun resumes and goes on to 3
    train_value(ValueConfig(**{**cfg.__dict__, "max_steps": 3}), _solutions(problems), probs, out)
    assert last_checkpoint(tmp_path / "value.checkpoints").endswith("checkpoint-3")
    assert train_value(cfg, [], probs, out) == out  # a finished directory is left alone
    with pytest.raises(ValueError, match="--init"):
        train_value(ValueConfig(), [], probs, tmp_path / "none")


def test_cli_train_value(world, tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.io import write_jsonl

    problems, tok = world
    init = tiny_model_dir(tok, "gen")
    write_jsonl(tmp_path / "problems.jsonl", problems[:12])
    write_jsonl(tmp_path / "samples.jsonl", _solutions(problems))
    res = CliRunner().invoke(app, ["train", "value", "--samples", str(tmp_path / "samples.jsonl"),
                                   "--problems", str(tmp_path / "problems.jsonl"), "--init", str(init),
                                   "--out", str(tmp_path / "v"), "--set", "value.max_steps=2",
                                   "--set", "value.batch_size=4", "--set", "value.head=last"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "v" / "prmkit_reward.json").read_text())["head"] == "last"
    # prmkit score recognises a value model by its kind and gives one value per step
    res = CliRunner().invoke(app, ["score", "--model", str(tmp_path / "v"), "--samples", str(tmp_path / "samples.jsonl"),
                                   "--problems", str(tmp_path / "problems.jsonl"), "--out",
                                   str(tmp_path / "scores.jsonl")])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    sols = {(s.problem_id, s.sample_id): s for s in _solutions(problems)}
    assert len(rows) == len(sols)
    assert all(len(r["scores"]) == len(sols[(r["problem_id"], r["sample_id"])].steps) for r in rows)
    res = CliRunner().invoke(app, ["train", "value", "--samples", str(tmp_path / "samples.jsonl"),
                                   "--problems", str(tmp_path / "problems.jsonl"), "--out",
                                   str(tmp_path / "w"), "--set", "value.head=mean"])  # fmt: skip
    assert res.exit_code == 2 and "value.head" in res.output
