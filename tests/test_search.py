"""PRM-guided search: beam bookkeeping, DVTS subtrees and weighted SC by hand (a scripted policy and PRM),
tiny random models end to end on world and GSM8K-format problems, the CLI, resume after a cut."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from prmkit.cli import app
from prmkit.evaluate.search import compare_rows, search_table
from prmkit.evaluate.stats import mean_ci
from prmkit.policy.base import Completion, Policy
from prmkit.search import (
    STRATEGIES,
    Beam,
    SearchConfig,
    check_policy,
    finish_reason,
    prune,
    search_problems,
    split_trees,
)
from prmkit.types import Problem

MARK = "Answer:\n"


class Scripted(Policy):
    """Depth-d prefixes get children "d{d}x{j}" (one token each, stopped at the newline); at depth 2 the
    child is the answer "#### {j}" (EOS). Without ``stop`` it writes whole solutions. ``same``: every
    child of a prompt is "d{d}x1" (to check that identical prefixes are merged)."""

    def __init__(self, stop=("\n",), same=False):
        self.stop, self.same, self.calls = stop, same, []

    def generate(
        self, prompts, n=1, temperature=0.7, top_p=1.0, max_new_tokens=None, seed=None, progress=False
    ):
        self.calls.append((len(prompts), n))
        out = []
        for p in prompts:
            depth = p.split(MARK, 1)[1].count("\n")
            row = []
            for j in range(n):
                j = 1 if self.same else j
                if not self.stop:
                    row.append(Completion(f"d0x{j}\nd1x{j}\n#### {j}", 3, "eos"))
                elif depth < 2:
                    row.append(Completion(f"d{depth}x{j}", 1, "stop"))
                else:
                    row.append(Completion(f"#### {j}", 1, "eos"))
            out.append(row)
        return out


class DigitPRM:
    """A step scores its last digit / 10; counts the sequences it scores."""

    def __init__(self):
        self.scored = 0

    def score(self, questions, steps, batch_size=16):
        self.scored += len(steps)
        return [[int(s[-1]) / 10 for s in row] for row in steps]


PROBLEM = Problem(id="p0", question="Q?", answer="1", kind="gsm8k")


def _run(strategy, policy, n=4, width=2, **kw):
    cfg = SearchConfig(strategy=strategy, n=n, beam_width=width, **kw)
    prm = DigitPRM()
    (res,) = STRATEGIES[strategy]([PROBLEM], cfg, policy, prm)
    return res, prm


def test_prune_split_and_finish_by_hand():
    kids = [Beam(0, scores=[s], finish=f) for s, f in ((0.5, ""), (0.9, "eos"), (0.5, ""), (0.1, "answer"))]
    live, done = prune(kids, 2, "last")
    assert live == [] or [b.scores for b in live] == [[0.5]]
    assert [b.scores for b in live] == [[0.5]]  # 0.9 is selected but finished; of the tied 0.5s the first
    assert [b.finish for b in done] == ["eos", "answer"]  # every finished child is a candidate
    assert prune(kids, 3, "last")[0] == [kids[0], kids[2]]
    assert split_trees(6, 3) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="do not split"):
        split_trees(5, 2)
    assert finish_reason("eos", [], "gsm8k") == "eos"
    assert finish_reason("stop", ["x", "#### 3"], "gsm8k") == "answer"
    assert finish_reason("stop", ["so \\boxed{3}"], "math") == "answer"
    assert finish_reason("length", ["a"], "math") == ""


def test_beam_search_bookkeeping_by_hand():
    res, prm = _run("beam_search", Scripted())
    # step 1: the question -> 4 children d0x0..d0x3 (one request of n=4), scored 0..0.3, keep d0x3, d0x2;
    # step 2: 2 children each (one call, 2 prompts x n=2), 4 new prefixes, keep the two ending d1x1 (0.1);
    # step 3: each gives "#### 0" and "#### 1", all finished: 4 candidates, the best "#### 1" (0.1)
    assert res.tokens == 12 and res.prm_calls == 12 == prm.scored
    assert len(res.candidates) == 4 and res.answer == "1" and res.correct
    assert res.text == "d0x3\nd1x1\n#### 1"  # the first of the tied best, from the better first step
    assert all(c["finish"] == "eos" and c["tokens"] == 3 for c in res.candidates)
    assert res.encoded_tokens is None  # the scripted policy has no tokenizer to count prompts with


def test_dvts_keeps_one_beam_per_subtree():
    policy = Scripted()
    res, _ = _run("dvts", policy)
    # 2 subtrees: {d0x0, d0x1} keeps d0x1, {d0x2, d0x3} keeps d0x3; each then keeps its d1x1
    texts = sorted(c["text"] for c in res.candidates)
    assert texts == ["d0x1\nd1x1\n#### 0", "d0x1\nd1x1\n#### 1", "d0x3\nd1x1\n#### 0", "d0x3\nd1x1\n#### 1"]
    assert res.tokens == 12 and res.prm_calls == 12 and policy.calls == [(1, 4), (2, 2), (2, 2)]


def test_best_of_n_samples_whole_solutions_and_scores_them_once():
    policy = Scripted(stop=())
    res, prm = _run("best_of_n", policy)
    assert policy.calls == [(1, 4)] and res.tokens == 12 and res.prm_calls == 4 == prm.scored
    assert res.answer == "3" and not res.correct  # the best-scored solution ends in "#### 3"
    cfg = SearchConfig(strategy="beam_search", n=4, beam_width=2)
    with pytest.raises(ValueError, match="must stop at the step separator"):
        check_policy(Scripted(stop=()), cfg, "gsm8k")


def test_identical_prefixes_are_sampled_and_scored_once():
    policy = Scripted(same=True)
    res, prm = _run("beam_search", policy)
    # every child is d{d}x1: the two kept beams share one request of n=4, and one PRM call per depth
    assert policy.calls == [(1, 4), (1, 4), (1, 4)]
    assert res.prm_calls == 3 == prm.scored and res.tokens == 12 and len(res.candidates) == 4


def test_weighted_sc_and_compare_rows_by_hand():
    def rec(cands, tokens=10, calls=4):
        cands = [{"answer": a, "correct": a == "1", "scores": [s]} for a, s in cands]
        return {
            "candidates": cands,
            "tokens": tokens,
            "prm_calls": calls,
            "encoded_tokens": None,
            "seconds": 0.1,
        }

    # best-of-N picks 7 (0.9); the 1s sum to 1.2 and win the weighted vote
    pool = rec([("7", 0.9), ("1", 0.6), ("1", 0.6)])
    runs = [{"strategy": "best_of_n", "n": 3, "seed": s, "select": "best_of_n", "aggregation": "last",
             "records": [pool, rec([("1", 0.9)], tokens=20)]} for s in range(2)]  # fmt: skip
    runs.append({"strategy": "beam_search", "n": 4, "seed": 0, "select": "best_of_n", "aggregation": "last",
                 "records": [rec([("1", 0.2)]), rec([("3", 0.5)])]})  # fmt: skip
    rows = {r["method"]: r for r in compare_rows(runs)}
    assert rows["best-of-N"]["accuracy"] == 0.5 and rows["best-of-N"]["ci95"] == 0.0
    assert rows["weighted SC"]["accuracy"] == 1.0 and rows["weighted SC"]["tokens"] == 15
    assert rows["beam search"]["ci95"] is None and rows["beam search"]["seeds"] == [0.5]
    assert "| weighted SC | 3 | 100.0% ± 0.0% | 15 | 4.0 | – | 0.100 |" in search_table(list(rows.values()))
    m, h = mean_ci([0.2, 0.4])  # sd 0.1414, se 0.1, t(1) 12.706
    assert m == pytest.approx(0.3) and h == pytest.approx(1.2706)


def test_config_is_checked():
    with pytest.raises(ValueError, match="not a multiple of beam_width"):
        SearchConfig(n=6, beam_width=4)
    SearchConfig(strategy="best_of_n", n=6, beam_width=4, compare_budgets=(8,))
    with pytest.raises(ValueError, match="search.select: unknown 'pass'; valid"):
        SearchConfig(select="pass")
    with pytest.raises(ValueError, match="compare_budgets"):
        SearchConfig(compare_budgets=(4, 6))


# --- tiny random models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(world, tmp_path_factory):
    """A random generator and a random PRM on the world tokenizer, as model directories."""
    from prmkit.models import new_model
    from prmkit.reward.model import StepRewardModel

    _, tok = world
    root = tmp_path_factory.mktemp("search")
    new_model(tok, "test").save_pretrained(root / "gen")
    tok.save_pretrained(root / "gen")
    StepRewardModel(new_model(tok, "test", seed=1), tok).save_pretrained(root / "prm")
    return root


TINY = dict(n=4, beam_width=2, step_tokens=8, max_new_tokens=24, max_steps=4, chunk=2, batch_size=16)


@pytest.mark.parametrize("strategy", ["best_of_n", "beam_search", "dvts"])
def test_tiny_models_on_the_world_resume_after_a_cut(world, models, tmp_path, strategy):
    from prmkit.reward import load_reward_model
    from prmkit.search import build_search_policy

    problems = world[0][:4]
    cfg = SearchConfig(strategy=strategy, **TINY)
    policy = build_search_policy(str(models / "gen"), cfg, "gsm8k")
    prm = load_reward_model(str(models / "prm"))
    whole = search_problems(policy, prm, problems, cfg, tmp_path / "a.jsonl", progress=False)
    assert [r["problem_id"] for r in whole] == [p.id for p in problems]
    for r in whole:
        assert r["tokens"] > 0 and r["candidates"] and r["encoded_tokens"] > 0
        assert r["prm_calls"] >= (len({c["text"] for c in r["candidates"] if c["text"]}) > 0)
        assert all(c["tokens"] <= TINY["max_new_tokens"] + TINY["step_tokens"] for c in r["candidates"])
    # a kill during the second chunk's write: its first record landed, the second was torn
    lines = (tmp_path / "a.jsonl").read_text().splitlines(keepends=True)
    cut = tmp_path / "b.jsonl"
    cut.write_text("".join(lines[:3]) + lines[3][:20])
    (tmp_path / "b.meta.json").write_text((tmp_path / "a.meta.json").read_text())
    again = search_problems(policy, prm, problems, cfg, cut, progress=False)
    drop = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert drop(again) == drop(whole)
    with pytest.raises(ValueError, match="beam_width"):  # another configuration is refused
        search_problems(policy, prm, problems, replace(cfg, beam_width=4), cut, progress=False)


def test_cli_on_gsm8k_format_problems_and_compare(world, models, tmp_path):
    problems = tmp_path / "gsm.jsonl"
    rows = [
        {
            "question": "Tom has 3 apples and buys 4 more. How many apples?",
            "answer": "3+4=<<3+4=7>>7\n#### 7",
        },
        {
            "question": "Ann has 10 pens and gives away 4. How many pens?",
            "answer": "10-4=<<10-4=6>>6\n#### 6",
        },
        {"question": "A box holds 6 eggs. How many eggs in 2 boxes?", "answer": "6*2=<<6*2=12>>12\n#### 12"},
    ]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--model", str(models / "gen"), "--prm", str(models / "prm"), "--problems", str(problems),
              "--source", "jsonl", *[x for k, v in TINY.items() for x in ("--set", f"search.{k}={v}")]]  # fmt: skip
    runner = CliRunner()
    out = tmp_path / "r.jsonl"
    res = runner.invoke(app, ["search", *common, "--out", str(out), "--set", "search.strategy=dvts"])
    assert res.exit_code == 0, res.output
    line = [x for x in res.output.splitlines() if '{"strategy"' in x][-1]  # after the progress bar's \r
    summary = json.loads(line[line.index("{") :])
    assert summary["strategy"] == "dvts" and summary["problems"] == 3 and summary["tokens_per_problem"] > 0
    assert len(out.read_text().splitlines()) == 3
    sets = ["--set", "search.compare_budgets=[2]", "--set", "search.compare_seeds=2"]
    res = runner.invoke(app, ["search", *common, "--compare", str(tmp_path / "cmp"), *sets])
    assert res.exit_code == 0, res.output
    assert "| weighted SC | 2 |" in res.output and "| DVTS | 2 |" in res.output
    assert (tmp_path / "cmp" / "search.png").stat().st_size > 0
    assert len(list((tmp_path / "cmp").glob("*.jsonl"))) == 3 * 2
    res = runner.invoke(app, ["search", *common])
    assert res.exit_code == 2 and "--out FILE" in res.output
    res = runner.invoke(app, ["search", "--help"])
    assert res.exit_code == 0 and "dvts" in res.output
