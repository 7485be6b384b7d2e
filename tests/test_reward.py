import copy
import json
import math
import warnings

import pytest
import torch

from prmkit.models import STEP_TAG, new_model, train_tokenizer
from prmkit.reward import StepRewardModel, format_for_scoring
from prmkit.reward.train import (
    RewardConfig,
    build_examples,
    collate_rewards,
    make_trainer,
    reward_loss,
    soft_label_loss,
    step_targets,
    warn_unsupervised_soft,
)
from prmkit.steps import split_steps
from prmkit.types import Problem, StepLabels, index_problems


def _labels(problems, n=12):
    """Hand-made labels: first-error pattern on every other solution, soft fractions."""
    out = []
    for i, p in enumerate(problems[:n]):
        steps = split_steps(p.solution)
        hard = [1] * len(steps) if i % 2 == 0 else [1] + [0] * (len(steps) - 1)
        soft = [0.75 * h for h in hard]
        out.append(StepLabels(p.id, 0, steps, hard, soft, final_correct=i % 2 == 0))
    return out


def _trainer(model, rm, rows, tok, lm_coef, out, steps=3):
    import datasets
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
        label_names=["labels"],
        seed=0,
    )
    return make_trainer(
        rm.label_ids,
        lm_coef,
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        data_collator=lambda fs: collate_rewards(fs, tok.pad_token_id),
    )


def test_format_for_scoring_worked_example():
    text = format_for_scoring("Tom has 3 apples.", ["3+4=<<3+4=7>>7", "#### 7"])
    assert text == f"Question: Tom has 3 apples.\nAnswer:\n3+4=<<3+4=7>>7 {STEP_TAG}\n#### 7 {STEP_TAG}\n"
    assert format_for_scoring("q", []) == "Question: q\nAnswer:\n"


def test_step_targets_hard_soft_first_error_orm():
    r = StepLabels("p", 3, ["a", "b", "c", "d"], [1, 0, 1, 0], [0.5, 0.25, None, 0.0], final_correct=True)
    assert step_targets(r, RewardConfig()) == [1.0, 0.0, 1.0, 0.0]
    assert step_targets(r, RewardConfig(label="soft")) == [0.5, 0.25, None, 0.0]
    assert step_targets(r, RewardConfig(first_error_only=True)) == [1.0, 0.0, None, None]
    assert step_targets(r, RewardConfig(label="soft", first_error_only=True)) == [0.5, 0.25, None, None]
    assert step_targets(r, RewardConfig(kind="orm")) == [None, None, None, 1.0]
    no_meta = StepLabels("p", 3, ["a", "b"], [1, 0], [1.0, 0.0])
    assert step_targets(no_meta, RewardConfig(kind="orm")) == [None, 0.0]
    bad = StepLabels("p7", 2, ["a", "b"], [1], [1.0, 0.0])
    with pytest.raises(ValueError, match="p7/2"):
        step_targets(bad, RewardConfig())


def test_warn_unsupervised_soft():
    # binary search: two good steps inferred without a full probe (soft None), one bad step (soft 0)
    searched = StepLabels("p", 0, ["a", "b", "c"], [1, 1, 0], [None, None, 0.0])
    with pytest.warns(UserWarning, match="2 of 3 labelled steps have no soft estimate"):
        warn_unsupervised_soft([searched], RewardConfig(label="soft"))
    probed = StepLabels("p", 1, ["a", "b", "c"], [1, 1, 0], [0.5, None, 0.0])  # 1 of 3 lost: no warning
    skipped = StepLabels("p", 2, ["a"], [None], [None], skipped="too long")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unsupervised_soft([probed, skipped], RewardConfig(label="soft"))
        warn_unsupervised_soft([searched], RewardConfig())  # hard labels supervise every step


def test_config_validation():
    with pytest.raises(ValueError, match="kind: unknown"):
        RewardConfig(kind="value")
    with pytest.raises(ValueError, match="prm.label"):
        RewardConfig(label="fuzzy")
    with pytest.raises(ValueError, match="eval_fraction"):
        RewardConfig(eval_fraction=1.0)
    with pytest.raises(ValueError, match="prm.lm_coef"):
        RewardConfig(lm_coef=-1.0)
    with pytest.raises(ValueError, match="prm.step_weight"):
        RewardConfig(step_weight=1.5)


def test_build_examples_positions_and_targets(world):
    problems, tok = world
    p = problems[0]
    steps = split_steps(p.solution)
    n = len(steps)
    recs = [
        StepLabels(p.id, 0, steps, [1] * (n - 1) + [0], [0.5] * n),
        StepLabels(p.id, 1, steps, [None] * n, [None] * n, skipped="empty"),
    ]
    rows = build_examples(recs, {p.id: p}, RewardConfig(label="soft"), tok)
    assert len(rows) == 1  # the skipped record is dropped
    row = rows[0]
    tag_id = tok.convert_tokens_to_ids(STEP_TAG)
    assert [i for i, t in enumerate(row["input_ids"]) if t == tag_id] == row["tag_positions"]
    assert row["targets"] == [0.5] * n
    orm = build_examples(recs, {p.id: p}, RewardConfig(kind="orm"), tok)[0]
    assert orm["tag_positions"] == row["tag_positions"][-1:] and orm["targets"] == [0.0]
    cut = build_examples(recs, {p.id: p}, RewardConfig(max_length=row["tag_positions"][1] + 1), tok)[0]
    assert (
        cut["tag_positions"] == row["tag_positions"][:2]
        and len(cut["input_ids"]) == cut["tag_positions"][1] + 1
    )
    batch = collate_rewards([row, cut], tok.pad_token_id)
    assert batch["labels"][0, row["tag_positions"]].tolist() == [0.5] * n
    assert (batch["labels"] >= 0).sum().item() == n + 2
    assert "weights" not in row and "weights" not in batch  # step_weight 1: the plain mean


def test_step_weight_weighs_all_steps_but_the_last(world):
    problems, tok = world
    p = problems[0]
    steps = split_steps(p.solution)
    n = len(steps)
    rec = StepLabels(p.id, 0, steps, [1] * (n - 1) + [0], [0.5] * n)
    row = build_examples([rec], {p.id: p}, RewardConfig(step_weight=0.25), tok)[0]
    assert row["weights"] == [0.25] * (n - 1) + [1.0]
    batch = collate_rewards([row], tok.pad_token_id)
    assert batch["weights"][0, row["tag_positions"]].tolist() == row["weights"]
    assert batch["weights"].sum().item() == pytest.approx(0.25 * (n - 1) + 1)
    # 0 keeps the last step only; a row whose last step was cut by max_length is then dropped
    only_last = build_examples([rec], {p.id: p}, RewardConfig(step_weight=0.0), tok)[0]
    assert only_last["weights"] == [0.0] * (n - 1) + [1.0]
    cut = RewardConfig(step_weight=0.0, max_length=row["tag_positions"][1] + 1)
    assert build_examples([rec], {p.id: p}, cut, tok) == []


def test_soft_label_loss_hand_computed():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # (B=1, T=2, 2)
    targets = torch.tensor([[0.75, -100.0]])
    lp_good = 2.0 - math.log(math.exp(2.0) + 1.0)
    lp_bad = 0.0 - math.log(math.exp(2.0) + 1.0)
    expected = -(0.75 * lp_good + 0.25 * lp_bad)
    assert soft_label_loss(logits, targets).item() == pytest.approx(expected, abs=1e-6)
    # a hard label is the special case p = 1
    assert soft_label_loss(logits, torch.tensor([[1.0, -100.0]])).item() == pytest.approx(-lp_good, abs=1e-6)
    # weighted: (0.25 * nll(0.75 at [2, 0]) + 1 * nll(0 at [0, 0])) / 1.25, the padding's weight unread
    both = torch.tensor([[0.75, 0.0]])
    expected_w = (0.25 * expected + 1.0 * math.log(2.0)) / 1.25
    got = soft_label_loss(logits, both, torch.tensor([[0.25, 1.0]])).item()
    assert got == pytest.approx(expected_w, abs=1e-6)
    assert soft_label_loss(logits, both, torch.ones(1, 2)).item() == pytest.approx(
        soft_label_loss(logits, both).item()
    )


def test_one_pass_equals_prefix_by_prefix(world):
    problems, tok = world
    rm = StepRewardModel(new_model(tok, "test", seed=1), tok)
    qs = [p.question for p in problems[:5]]
    steps = [split_steps(p.solution) for p in problems[:5]]
    scores = rm.score(qs, steps, batch_size=2)
    assert [len(s) for s in scores] == [len(s) for s in steps]
    for q, ss, got in zip(qs, steps, scores, strict=True):
        for k in range(1, len(ss) + 1):  # the last tag of each prefix, with the full-logit forward
            ids = torch.tensor([tok(format_for_scoring(q, ss[:k]))["input_ids"]])
            logits = rm.model(input_ids=ids).logits[0, -2, rm.label_ids]  # tag, then "\n"
            assert got[k - 1] == pytest.approx(logits.softmax(-1)[0].item(), abs=1e-4)
    rm.kind = "orm"  # an ORM repeats the last tag's score at every step
    assert rm.score(qs, steps, batch_size=3) == [[s[-1]] * len(s) for s in scores]


def test_missing_tag_is_added_and_labels_must_be_single_tokens(world, capsys):
    _, tok = world
    tok = copy.deepcopy(tok)  # the module's tokenizer stays without the new tag
    model = new_model(tok, "test")
    n = len(tok)
    rm = StepRewardModel(model, tok, tag="<|newtag|>")
    assert len(tok) == n + 1 and model.get_input_embeddings().weight.shape[0] == n + 1
    assert rm.tag_id == n and "added" in capsys.readouterr().out
    with pytest.raises(ValueError, match="single token"):
        StepRewardModel(model, tok, good="good and bad")


def test_truncation_gives_nan_and_warns(world):
    problems, tok = world
    p = problems[0]
    steps = split_steps(p.solution)
    rm = StepRewardModel(new_model(tok, "test"), tok)
    tags = rm.encode(p.question, steps).positions
    rm.max_length = tags[0] + 1
    with pytest.warns(UserWarning, match="1 of 2 solutions"):
        scores = rm.score([p.question, "q"], [steps, ["1"]])
    assert not math.isnan(scores[0][0]) and all(math.isnan(s) for s in scores[0][1:])
    assert not math.isnan(scores[1][0])


def test_training_lowers_the_loss_and_separates_good_from_bad_steps(world, tmp_path):
    problems, tok = world
    model = new_model(tok, "test")
    rm = StepRewardModel(model, tok)
    rows = build_examples(_labels(problems), index_problems(problems), RewardConfig(), tok)
    batch = collate_rewards(rows, tok.pad_token_id)
    good, bad = batch["labels"] == 1, batch["labels"] == 0  # (B, T): tags labelled "+" / "-"

    def measure():  # (loss, mean P(+) at "+" tags minus at "-" tags) on the training rows
        model.eval()
        with torch.no_grad():
            loss, logits = reward_loss(model, batch, rm.label_ids)
        p_good = logits.float().softmax(-1)[..., 0]  # (B, T)
        return loss.item(), (p_good[good].mean() - p_good[bad].mean()).item()

    loss0, gap0 = measure()
    _trainer(model, rm, rows, tok, 0.0, tmp_path, steps=20).train()
    loss1, gap1 = measure()
    assert loss1 < 0.8 * loss0  # measured: 0.68 -> 0.40
    assert gap1 > gap0 + 0.2  # measured: 0.00 -> 0.41


def test_lm_rows_mask_the_prompt_and_the_tags(world):
    problems, tok = world
    p = problems[0]
    steps = split_steps(p.solution)
    rec = StepLabels(p.id, 0, steps, [1] * len(steps), [1.0] * len(steps))
    (plain,) = build_examples([rec], {p.id: p}, RewardConfig(), tok)
    (row,) = build_examples([rec], {p.id: p}, RewardConfig(lm_coef=1.0), tok)
    assert "lm_mask" not in plain and "lm_mask" not in collate_rewards([plain], tok.pad_token_id)
    assert {k: v for k, v in row.items() if k != "lm_mask"} == plain  # the rest of the row is unchanged
    ids, lm = row["input_ids"], row["lm_mask"]
    n_prompt = len(tok(format_for_scoring(p.question, []))["input_ids"])
    tag_id = tok.convert_tokens_to_ids(STEP_TAG)
    assert len(lm) == len(ids) and not any(lm[:n_prompt]) and lm[n_prompt] == 1
    for t in row["tag_positions"]:  # the tag is not predicted, nor is the token its position predicts
        assert ids[t] == tag_id and lm[t] == 0 and (t + 1 == len(ids) or lm[t + 1] == 0)
    # every other solution token is: the steps' own tokens and the space before each tag
    assert sum(lm) == len(ids) - n_prompt - 2 * len(steps)
    batch = collate_rewards([row, plain | {"lm_mask": [0] * len(plain["input_ids"])}], tok.pad_token_id)
    assert batch["lm_mask"].dtype == torch.bool and batch["lm_mask"][0].tolist() == [bool(x) for x in lm]


def test_lm_coef_zero_is_the_classification_loss_exactly(world):
    from prmkit.training import next_token_loss

    problems, tok = world
    model = new_model(tok, "test", seed=2)
    rm = StepRewardModel(model, tok)
    rows = build_examples(_labels(problems, 4), {p.id: p for p in problems}, RewardConfig(lm_coef=1.0), tok)
    batch = collate_rewards(rows, tok.pad_token_id)
    with torch.no_grad():
        full = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
        old = soft_label_loss(full[..., rm.label_ids], batch["labels"])
        loss0, logits0 = reward_loss(model, batch, rm.label_ids, 0.0)
        loss1, _ = reward_loss(model, batch, rm.label_ids, 0.5)
    assert torch.equal(loss0, old) and torch.equal(logits0, full[..., rm.label_ids])
    lm = next_token_loss(full, batch["input_ids"], batch["lm_mask"][:, 1:])
    assert lm.item() > 0 and loss1.item() == pytest.approx(old.item() + 0.5 * lm.item(), rel=1e-5)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "lm_mask"}  # reward_loss copied it
    with pytest.raises(ValueError, match="lm_coef > 0 needs rows"):
        reward_loss(model, {k: v for k, v in batch.items() if k != "lm_mask"}, rm.label_ids, 1.0)
    # step_weight: the batch's weights reach the classification loss, with and without the LM loss
    cfg = RewardConfig(lm_coef=1.0, step_weight=0.5)
    weighted = collate_rewards(
        build_examples(_labels(problems, 4), {p.id: p for p in problems}, cfg, tok), tok.pad_token_id
    )
    with torch.no_grad():
        want = soft_label_loss(full[..., rm.label_ids], weighted["labels"], weighted["weights"])
        w0, _ = reward_loss(model, weighted, rm.label_ids, 0.0)
        w1, _ = reward_loss(model, weighted, rm.label_ids, 0.5)
    assert not torch.equal(want, old) and torch.equal(w0, want)
    assert w1.item() == pytest.approx(want.item() + 0.5 * lm.item(), rel=1e-5)


def test_lm_coef_keeps_the_language_model(world, tmp_path):
    """Trained a few steps from the same weights on the same rows, the auxiliary LM loss gives a lower
    LM loss on the training solutions than the classification loss alone."""
    from prmkit.training import next_token_loss

    problems, tok = world
    rows = build_examples(_labels(problems), {p.id: p for p in problems}, RewardConfig(lm_coef=1.0), tok)
    batch = collate_rewards(rows, tok.pad_token_id)
    after = {}
    for coef in (0.0, 1.0):
        model = new_model(tok, "test", seed=0)
        rm = StepRewardModel(model, tok)
        _trainer(model, rm, rows, tok, coef, tmp_path / str(coef), steps=12).train()
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        after[coef] = next_token_loss(logits, batch["input_ids"], batch["lm_mask"][:, 1:]).item()
    assert after[1.0] < after[0.0] - 0.5, after


def test_cli_train_prm_and_score_end_to_end(world, tmp_path):
    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.io import read_jsonl, write_jsonl
    from prmkit.types import Solution

    problems, tok = world
    init = tmp_path / "gen"
    new_model(tok, "test").save_pretrained(init)
    tok.save_pretrained(init)
    write_jsonl(tmp_path / "problems.jsonl", problems[:12])
    labels = _labels(problems)
    write_jsonl(tmp_path / "labels.jsonl", labels)
    sols = [Solution(r.problem_id, r.sample_id, "\n".join(r.steps), r.steps) for r in labels]
    write_jsonl(tmp_path / "samples.jsonl", sols)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "prm", "--labels", str(tmp_path / "labels.jsonl"),
                              "--problems", str(tmp_path / "problems.jsonl"), "--init", str(init),
                              "--out", str(tmp_path / "prm"), "--set", "prm.max_steps=2",
                              "--set", "prm.batch_size=4", "--set", "prm.eval_fraction=0.25",
                              "--set", "prm.save_steps=1", "--set", "prm.label=soft"])  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "prm" / "prmkit_reward.json").read_text())
    assert meta["kind"] == "prm" and meta["label"] == "soft" and "eval_step_accuracy" in meta["eval"]
    args = ["score", "--model", str(tmp_path / "prm"), "--samples", str(tmp_path / "samples.jsonl"),
            "--problems", str(tmp_path / "problems.jsonl"), "--out", str(tmp_path / "scores.jsonl")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    scores = read_jsonl(tmp_path / "scores.jsonl")
    assert [(s["problem_id"], len(s["scores"])) for s in scores] == [
        (r.problem_id, len(r.steps)) for r in labels
    ]
    assert all(0 < x < 1 for s in scores for x in s["scores"])
    res = runner.invoke(app, args)  # resumes: nothing left to do
    assert (
        "0 solutions scored (12 already done)" in res.output
        and len(read_jsonl(tmp_path / "scores.jsonl")) == 12
    )


def test_train_reward_resumes_and_leaves_a_finished_dir_alone(world, tmp_path):
    from prmkit.reward.train import train_reward
    from prmkit.training import last_checkpoint

    problems, tok = world
    init = tmp_path / "gen"
    new_model(tok, "test").save_pretrained(init)
    tok.save_pretrained(init)
    labels, probs = _labels(problems), {p.id: p for p in problems}
    cfg = RewardConfig(init=str(init), max_steps=2, batch_size=4, save_steps=1, eval_fraction=0.0, kind="orm")
    out = train_reward(cfg, labels, probs, tmp_path / "orm")
    assert (out / "config.json").exists() and (out / "prmkit_reward.json").exists()
    assert not (tmp_path / ".orm.tmp").exists()
    import shutil

    shutil.rmtree(out)  # as if killed after checkpoint-2: the rerun resumes and goes on to 3
    half = tmp_path / "orm.checkpoints" / "checkpoint-3"  # and killed while saving checkpoint-3
    half.mkdir()
    (half / "trainer_state.json").write_text('{"global_step": 3, "log_hi')
    assert last_checkpoint(tmp_path / "orm.checkpoints").endswith("checkpoint-2")
    # other settings or other examples are refused, naming what changed; a longer run is not
    with pytest.raises(ValueError, match=r"lr: 0.0005, now 0.001.*delete .*orm.checkpoints"):
        train_reward(RewardConfig(**{**cfg.__dict__, "lr": 1e-3}), labels, probs, out)
    with pytest.raises(
        ValueError, match=rf"examples: '{len(labels)} examples, .*now '{len(labels) - 1} examples"
    ):
        train_reward(cfg, labels[:-1], probs, out)
    with pytest.raises(ValueError, match=r"group_by_length: False, now True"):
        train_reward(RewardConfig(**{**cfg.__dict__, "group_by_length": True}), labels, probs, out)
    claim = tmp_path / "orm.checkpoints" / "training.meta.json"  # as claimed before the field existed
    meta = json.loads(claim.read_text())
    del meta["config"]["group_by_length"]
    claim.write_text(json.dumps(meta))
    train_reward(RewardConfig(**{**cfg.__dict__, "max_steps": 3}), labels, probs, out)
    assert last_checkpoint(tmp_path / "orm.checkpoints").endswith("checkpoint-3")
    assert StepRewardModel.from_pretrained(out).kind == "orm"
    assert train_reward(cfg, labels, probs, out) == out
    with pytest.raises(ValueError, match="--init"):
        train_reward(RewardConfig(), labels, probs, tmp_path / "none")


def test_group_by_length_batches_solutions_of_similar_length(world, tmp_path, monkeypatch):
    """``group_by_length``: each batch is a slice of a length-sorted run of a few batches (a "megabatch",
    ``LengthGroupedSampler``), so it pads less than a random batch; by default the order is random."""
    import prmkit.reward.train as rt

    problems, tok = world
    init = tmp_path / "gen"
    new_model(tok, "test").save_pretrained(init)
    tok.save_pretrained(init)
    collate, batches = rt.collate_rewards, []  # the lengths of each batch's rows
    monkeypatch.setattr(
        rt,
        "collate_rewards",
        lambda fs, pad: batches.append([len(f["input_ids"]) for f in fs]) or collate(fs, pad),
    )
    labels, by_id, padding = _labels(problems, n=40), {p.id: p for p in problems}, {}
    for grouped in (False, True):
        batches.clear()
        cfg = RewardConfig(
            init=str(init), epochs=1, batch_size=4, eval_fraction=0.0, kind="orm", group_by_length=grouped
        )
        rt.train_reward(cfg, labels, by_id, tmp_path / f"orm-{grouped}")
        assert sum(map(len, batches)) == 40
        assert all(b == sorted(b, reverse=True) for b in batches) == grouped
        padding[grouped] = sum(max(b) * len(b) - sum(b) for b in batches)
    assert padding[True] < padding[False], padding


def test_orm_supervised_by_a_prm_via_cli(tmp_path, tiny_model_dir):
    """--prm-scores replaces the graded answer by the PRM's min step score as the ORM's soft target."""
    import json as _json

    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.io import write_jsonl
    from prmkit.reward.train import prm_supervised

    problems = [Problem(id="p0", question="Tom has 3 pens?", answer="3")]
    recs = [
        StepLabels("p0", i, ["He has 3.", "#### 3"], [1, 1], [1.0, 1.0], final_correct=True) for i in range(4)
    ]
    scores = [{"problem_id": "p0", "sample_id": i, "scores": [0.8, 0.1 * i]} for i in range(3)]
    sup = prm_supervised(recs, {(r["problem_id"], r["sample_id"]): r["scores"] for r in scores})
    assert [r.target for r in sup] == [0.0, 0.1, 0.2]  # sample 3 has no PRM score: dropped
    write_jsonl(tmp_path / "p.jsonl", problems)
    write_jsonl(tmp_path / "l.jsonl", recs)
    write_jsonl(tmp_path / "s.jsonl", scores)
    tok = train_tokenizer(["Question: Tom has 3 pens?\nAnswer:\nHe has 3. + -"] * 3, vocab_size=300)
    tiny_model_dir(tok, "init")
    res = CliRunner().invoke(app, ["train", "orm", "--labels", str(tmp_path / "l.jsonl"), "--problems", str(tmp_path / "p.jsonl"),
                                   "--source", "problems", "--init", str(tmp_path / "init"), "--out", str(tmp_path / "orm"),
                                   "--prm-scores", str(tmp_path / "s.jsonl"), "--set", "orm.max_steps=1",
                                   "--set", "orm.eval_fraction=0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert _json.loads((tmp_path / "orm" / "prmkit_reward.json").read_text())["kind"] == "orm"


def test_orm_from_graded_samples_via_cli(tmp_path, tiny_model_dir):
    """An ORM learns from any graded samples (--samples): every sample is labelled by its answer alone."""
    from typer.testing import CliRunner

    from prmkit.cli import app
    from prmkit.io import write_jsonl
    from prmkit.types import Solution

    write_jsonl(tmp_path / "p.jsonl", [Problem(id="p0", question="Tom has 3 pens?", answer="3")])
    sols = [
        Solution("p0", i, f"He has {i}.\n#### {i}", [f"He has {i}.", f"#### {i}"], str(i), i == 3)
        for i in range(4)
    ]
    sols.append(Solution("p0", 9, "", [], None, False))  # no steps: nothing to supervise, dropped
    write_jsonl(tmp_path / "s.jsonl", sols)
    tok = train_tokenizer(["Question: Tom has 3 pens?\nAnswer:\nHe has 3. + -"] * 3, vocab_size=300)
    tiny_model_dir(tok, "init")
    base = ["train", "orm", "--problems", str(tmp_path / "p.jsonl"), "--source", "problems",
            "--init", str(tmp_path / "init"), "--out", str(tmp_path / "orm")]  # fmt: skip
    res = CliRunner().invoke(app, base)
    assert res.exit_code == 2 and "give --labels" in res.output
    res = CliRunner().invoke(
        app,
        [
            *base,
            "--samples",
            str(tmp_path / "s.jsonl"),
            "--set",
            "orm.max_steps=1",
            "--set",
            "orm.eval_fraction=0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "4 training and 0 held-out solutions (orm)" in res.output
    # a PRM takes both: the labelled solutions, then the other graded ones with their last step labelled
    labels = [StepLabels("p0", 3, ["He has 3.", "#### 3"], [1, 1], [1.0, 1.0], final_correct=True)]
    write_jsonl(tmp_path / "l.jsonl", labels)
    both = ["--labels", str(tmp_path / "l.jsonl"), "--samples", str(tmp_path / "s.jsonl")]
    res = CliRunner().invoke(app, [*base, *both])
    assert res.exit_code == 2 and "orm: give either --labels or --samples, not both" in res.output
    prm = [*base[:1], "prm", *base[2:-1], str(tmp_path / "prm"), *both,
           "--set", "prm.max_steps=1", "--set", "prm.eval_fraction=0"]  # fmt: skip
    res = CliRunner().invoke(app, prm)
    assert res.exit_code == 0, res.output
    assert "4 training and 0 held-out solutions (prm)" in res.output


def test_scoring_samples_of_unknown_problems_names_the_file(tmp_path):
    from prmkit.reward import score_solutions
    from prmkit.types import Solution

    with pytest.raises(ValueError, match=r"s.jsonl: 1 problems of the samples not found, e.g. p9"):
        score_solutions(
            "unused", [Solution("p9", 0, "a", ["a"])], {}, tmp_path / "out.jsonl", origin="s.jsonl"
        )
    assert not (tmp_path / "out.jsonl").exists()  # nothing loaded, nothing written


def test_scores_of_a_chunk_cut_by_a_kill_are_computed_again_whole(tmp_path, monkeypatch):
    import prmkit.reward as reward_mod
    from prmkit.types import Solution

    class BatchSensitive:  # a score that depends on the batch's make-up, as padded float maths can
        def score(self, questions, steps, batch_size=16):
            return [[len(questions) / 10 + i / 100 for i, _ in enumerate(s)] for s in steps]

    monkeypatch.setattr(reward_mod, "SCORE_CHUNK", 4)
    monkeypatch.setattr(reward_mod, "load_reward_model", lambda *a, **k: BatchSensitive())
    sols = [Solution(f"p{i % 3}", i, "a\nb", ["a", "b"]) for i in range(10)]
    probs = {f"p{i}": Problem(f"p{i}", "q", "1") for i in range(3)}
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    reward_mod.score_solutions("m", sols, probs, whole, progress=False)
    lines = whole.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:9]) + lines[9][:10])  # the last chunk's write stopped in its second line
    assert reward_mod.score_solutions("m", sols, probs, cut, progress=False) == (2, 8)
    assert cut.read_bytes() == whole.read_bytes()
