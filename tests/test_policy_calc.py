"""policy.calc: the calculator's stop-and-resubmit rounds, driven by a scripted engine (no model)."""

from prmkit.policy.calc import Draft, calculator_suffix, due_suffix, finish_drafts

SCRIPT = "Tom buys 3 + 4 = <<3+4=8>>8 pens.\nThen <<8*2=17>>17.\n#### 17"


def engine(script: str, calls: list, budget: int = 100):
    """Continue each draft along ``script`` (its position in ``state``), one character per token, stopping
    after an "=" (kept, as vLLM keeps a stop token); a forced result skips the script's own one."""

    def resubmit(live: list[Draft], r: int) -> None:
        calls.append((r, len(live)))
        for d in live:
            at = d.state or 0
            eq = script.find("=", at)
            piece = script[at:] if eq < 0 else script[at : eq + 1]
            left = budget - d.tokens
            if len(piece) > left:
                piece, d.finish = piece[:left], "length"
            else:
                d.finish = "calc" if eq >= 0 else "eos"
            d.text, d.tokens, d.state = d.text + piece, d.tokens + len(piece), at + len(piece)

    def force(d: Draft, suffix: str) -> None:
        d.text += suffix
        d.state = script.index(">>", d.state) + 2

    return resubmit, force


def test_suffix_only_inside_an_open_expression():
    assert calculator_suffix("x <<3+4") == "7>>" and calculator_suffix("x = ") is None
    assert due_suffix(Draft("p", "x <<3+4=")) == "7>>"
    assert due_suffix(Draft("p", "x <<3+4")) is None  # not stopped at an "="
    assert due_suffix(Draft("Q: half of <<48/2=", "")) == "24>>"  # the prompt's own open expression


def test_rounds_force_results_and_batch_the_live_drafts():
    calls: list = []
    drafts = [Draft("p", finish="calc"), Draft("p", finish="calc")]
    finish_drafts(drafts, 100, (), *engine(SCRIPT, calls))
    want = "Tom buys 3 + 4 = <<3+4=7>>8 pens.\nThen <<8*2=16>>17.\n#### 17"
    assert [d.text for d in drafts] == [want, want] and drafts[0].finish == "eos"
    # round 0 to the first "=", round 1 to "<<3+4=", then "<<8*2=", then the end: both drafts each time
    assert calls == [(0, 2), (1, 2), (2, 2), (3, 2)]


def test_stop_strings_and_the_token_budget():
    drafts = [Draft("p", finish="calc")]
    finish_drafts(drafts, 100, ("\n",), *engine(SCRIPT, []))
    assert (drafts[0].text, drafts[0].finish) == ("Tom buys 3 + 4 = <<3+4=7>>8 pens.", "stop")
    short = [Draft("p", finish="calc")]
    finish_drafts(short, 20, (), *engine(SCRIPT, [], 20))
    assert short[0].finish == "length" and short[0].tokens <= 20
    done = [Draft("p", "ends here. ####", 3, "eos")]  # a final draft is only cut, never resubmitted
    finish_drafts(done, 100, ("####",), *engine(SCRIPT, []))
    assert (done[0].text, done[0].finish) == ("ends here. ", "stop")
