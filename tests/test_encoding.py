"""The one solution encoder gives, to the token, what each verifier's own encoder gave before it
(kept below as frozen references): same ids, same read positions, same prompt length, on world
problems and on GSM8K-format solutions (real GSM8K when the shared data is there)."""

import copy
import json

import pytest

from prmkit.models import STEP_TAG, format_prompt
from prmkit.reward.formats import get_format
from prmkit.reward.scoring import encode_solution
from prmkit.steps import split_steps

GSM8K_STYLE = [  # GSM8K's own layout: calculator annotations, a "#### N" line
    (
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    ),
    (
        "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "How much did she earn?",
        "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    ),
    ("Empty-ish: what is 1 + 1?", "#### 2"),
]


# ---- frozen references: the encoders as they were before reward/scoring.py ----------------------


def old_tagged(tokenizer, question, steps, tag):  # formats.format_for_scoring + tag scan (model, train)
    ids = tokenizer(format_prompt(question) + "".join(f"{s} {tag}\n" for s in steps))["input_ids"]
    tag_id = tokenizer.convert_tokens_to_ids(tag)
    n_prompt = len(tokenizer(format_prompt(question))["input_ids"])  # train.build_examples, lm_coef > 0
    return ids, [i for i, t in enumerate(ids) if t == tag_id], n_prompt


def old_value(tokenizer, question, steps):  # value.encode_steps
    ids = tokenizer(format_prompt(question))["input_ids"]
    n_prompt, ends = len(ids), []
    for step in steps:
        ids = ids + tokenizer(step + "\n", add_special_tokens=False)["input_ids"]
        ends.append(len(ids) - 1)
    return ids, ends, n_prompt


def old_likelihood(tokenizer, question, steps):  # likelihood.encode_solution
    ids = tokenizer(format_prompt(question))["input_ids"]
    n_prompt, ends = len(ids), []
    for i, step in enumerate(steps):
        piece = step if i == len(steps) - 1 else step + "\n"
        ids = ids + tokenizer(piece, add_special_tokens=False)["input_ids"]
        ends.append(len(ids) - 1)
    if steps:
        ids = ids + [tokenizer.eos_token_id]
        ends[-1] = len(ids) - 1
    return ids, ends, n_prompt


def old_trl(tokenizer, question, steps):  # formats.PRMFormat.encode for "trl"
    ids = list(tokenizer(question)["input_ids"])
    positions = []
    for s in steps:
        ids += tokenizer(s + "\n", add_special_tokens=False)["input_ids"]
        positions.append(len(ids) - 1)
    return ids, positions


def old_math_shepherd(tokenizer, question, steps, tag_id):
    text = f"{question} " + "\n".join(f"Step {i + 1}: {s} ки" for i, s in enumerate(steps))
    ids = tokenizer(text)["input_ids"]
    return ids, [i for i, t in enumerate(ids) if t == tag_id]


# -------------------------------------------------------------------------------------------------


def _examples(world, shared=None):
    problems, _ = world
    out = [(p.question, split_steps(p.solution)) for p in problems[:20]]
    out += [(q, split_steps(s)) for q, s in GSM8K_STYLE]
    out += [("q", [])]  # no steps
    if shared is not None:
        with open(shared / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for _, line in zip(range(20), f, strict=False)]
        out += [(r["question"], split_steps(r["answer"])) for r in rows]
    return out


def _check_all(tok, examples):
    shepherd = copy.deepcopy(tok)
    shepherd.add_tokens(["ки"], special_tokens=True)
    ms_id = shepherd.convert_tokens_to_ids("ки")
    for q, steps in examples:
        ids, pos, n_prompt = old_tagged(tok, q, steps, STEP_TAG)
        e = encode_solution(tok, q, steps, STEP_TAG)
        assert (e.ids, e.positions, e.n_prompt) == (ids, pos, n_prompt)
        assert get_format("prmkit").encode(tok, q, steps, tok.convert_tokens_to_ids(STEP_TAG)) == e

        ids, ends, n_prompt = old_value(tok, q, steps)
        e = encode_solution(tok, q, steps)
        assert (e.ids, e.positions, e.n_prompt) == (ids, ends, n_prompt)

        ids, ends, n_prompt = old_likelihood(tok, q, steps)
        e = encode_solution(tok, q, steps, eos=True)
        assert (e.ids, e.positions, e.n_prompt) == (ids, ends, n_prompt)

        got = get_format("trl").encode(tok, q, steps, None)
        assert (got.ids, got.positions) == old_trl(tok, q, steps)
        got = get_format("math-shepherd").encode(shepherd, q, steps, ms_id)
        assert (got.ids, got.positions) == old_math_shepherd(shepherd, q, steps, ms_id)


def test_encoder_equals_the_old_paths_on_world_and_gsm8k_format(world):
    _check_all(world[1], _examples(world))


def test_encoder_equals_the_old_paths_on_real_gsm8k(world, shared_data):
    _check_all(world[1], _examples(world, shared_data)[-20:])


def test_a_step_holding_the_tag_is_refused(world):
    _, tok = world
    with pytest.raises(ValueError, match="3 step tags for 2 steps"):
        encode_solution(tok, "q", ["a " + STEP_TAG, "b"], STEP_TAG)


def test_every_hf_verifier_is_a_scorer(world):
    from prmkit.models import new_model
    from prmkit.reward import LikelihoodScorer, Scorer, StepRewardModel, ValueModel

    _, tok = world
    for scorer in (StepRewardModel(new_model(tok, "test"), tok), ValueModel(new_model(tok, "test"), tok),
                   LikelihoodScorer(new_model(tok, "test"), tok)):  # fmt: skip
        assert isinstance(scorer, Scorer)
        assert scorer.score(["q"], [["1+1=2", "#### 2"]])[0] != scorer.score(["q"], [["1+1=3", "#### 3"]])[0]
