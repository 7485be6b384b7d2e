"""What prmkit runs and reads: code shipped with a model only with --trust-remote-code (a model directory
whose auto_map points at a file that writes a marker when imported), hub revisions pinned and recorded,
PPO resume refusing a pickle that would run code, recipes through yaml.safe_load, bounded JSONL reads."""

import json
import pickle
import random
import sys
import tracemalloc

import pytest
import torch
from typer.testing import CliRunner

from prmkit.cli import app
from prmkit.config import load_recipe
from prmkit.io import DataError, open_appender, read_jsonl, read_scores, repair_tail
from prmkit.models import load_causal_lm, model_source, new_model, train_tokenizer
from prmkit.reward import StepRewardModel, load_reward_model, score_solutions
from prmkit.sample import SampleConfig
from prmkit.types import Problem, Solution

TEXTS = ["Question: 1+1?\nAnswer:\n1+1 = <<1+1=2>>2\n#### 2", "Question: 2*3?\nAnswer:\n2*3 = 6\n#### 6"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 5, vocab_size=300)


@pytest.fixture
def modules_cache(tmp_path, monkeypatch):
    """Remote code that does get loaded is copied under the test's folder, not ~/.cache."""
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path / "hf_modules"


def remote_code_dir(tmp_path, tok, model_type="prmkit_marker", **auto_map):
    """A tiny Llama directory whose config asks for its own Python code: ``marker.py``, which writes
    ``tmp_path/MARKER`` when imported. Returns (directory, marker path)."""
    path, marker = tmp_path / "remote", tmp_path / "MARKER"
    new_model(tok, "test").save_pretrained(path)
    tok.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config.update(model_type=model_type, auto_map=auto_map, architectures=[list(auto_map.values())[-1][7:]])
    (path / "config.json").write_text(json.dumps(config))
    (path / "marker.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n\n"
        "class MarkerConfig(LlamaConfig):\n    model_type = 'prmkit_marker'\n\n"
        "class MarkerForCausalLM(LlamaForCausalLM):\n    config_class = MarkerConfig\n\n"
        "class MarkerProcessRewardModel(LlamaForCausalLM):\n    pass\n"
    )
    return path, marker


CAUSAL = {"AutoConfig": "marker.MarkerConfig", "AutoModelForCausalLM": "marker.MarkerForCausalLM"}


def _one_line_refusal(message: str, model) -> None:
    assert "\n" not in message
    assert str(model) in message and "--trust-remote-code" in message


def test_remote_code_runs_only_when_asked(tmp_path, tok, modules_cache):
    path, marker = remote_code_dir(tmp_path, tok, **CAUSAL)
    for load in (load_causal_lm, load_reward_model):
        with pytest.raises(ValueError) as e:
            load(str(path))
        _one_line_refusal(str(e.value), path)
    assert not marker.exists()
    # the marker is live: asked for, the model's own code runs (and loads)
    model = load_causal_lm(path, trust_remote_code=True)
    assert marker.exists() and type(model).__name__ == "MarkerForCausalLM"


def test_released_prm_head_needs_remote_code(tmp_path, tok, modules_cache):
    """Qwen2.5-Math-PRM's config is a stock one with auto_map for AutoModel: without the flag transformers
    would quietly build the base model without the reward head, so prmkit refuses it itself."""
    path, marker = remote_code_dir(
        tmp_path, tok, model_type="llama", AutoModel="marker.MarkerProcessRewardModel"
    )
    with pytest.raises(ValueError) as e:
        StepRewardModel.from_pretrained(path, format="qwen-prm")
    _one_line_refusal(str(e.value), path)
    assert not marker.exists()


def test_cli_refuses_remote_code_in_one_line(tmp_path, tok, modules_cache):
    path, marker = remote_code_dir(tmp_path, tok, **CAUSAL)
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "p1", "question": "1+1?", "answer": "2"}) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        json.dumps(Solution("p1", 0, "1+1 = 2\n#### 2", ["1+1 = 2", "#### 2"]).to_dict()) + "\n"
    )
    common = ["--problems", str(problems), "--source", "world"]
    for args in (
        ["score", "--model", str(path), "--samples", str(samples), "--out", str(tmp_path / "s.jsonl")],
        ["sample", "--model", str(path), "--out", str(tmp_path / "samples2.jsonl")],
        ["annotate", "--model", str(path), "--samples", str(samples), "--out", str(tmp_path / "l.jsonl")],
    ):
        out = CliRunner().invoke(app, args + common)
        assert out.exit_code == 2, out.output
        _one_line_refusal(out.stderr.strip().removeprefix("error: "), path)
    assert not marker.exists()
    out = CliRunner().invoke(app, ["score", "--help"])
    assert "--trust-remote-code" in out.output and "--revision" in out.output


def test_revision_pins_a_hub_id_and_the_commit_is_recorded(tmp_path, tok, monkeypatch):
    """A model in the hub cache (offline): the scores' metadata names the hub id, the revision asked for
    and the commit it resolved to; a local directory is recorded by its path."""
    import huggingface_hub.constants

    commit = "0123456789abcdef" * 2 + "01234567"
    repo = tmp_path / "hub" / "models--org--tiny-prm"
    rm = StepRewardModel(new_model(tok, "test"), tok)
    rm.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    problems = {"p1": Problem(id="p1", question="1+1?", answer="2")}
    sols = [Solution("p1", 0, "1+1 = 2\n#### 2", ["1+1 = 2", "#### 2"])]
    out = tmp_path / "scores.jsonl"
    assert score_solutions("org/tiny-prm", sols, problems, out, progress=False, revision="main") == (1, 0)
    meta = json.loads((tmp_path / "scores.meta.json").read_text())
    assert meta["model"] == {"hub_id": "org/tiny-prm", "revision": "main", "commit": commit}
    local = repo / "snapshots" / commit
    assert model_source(local) == {"path": str(local.resolve())}
    with pytest.raises(ValueError, match="a revision pins a hub model id; this is a local path"):
        load_causal_lm(local, revision="main")
    with pytest.raises(ValueError, match=r"sample.revision must be .*\(quoted\), got 1234567"):
        SampleConfig(**load_recipe(None, ["sample.revision=1234567"])["sample"])  # YAML read a number


# ---- PPO state: tensors and plain values only ----


class Payload:
    """Unpickling this opens (so creates) the marker file: what a malicious state file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_ppo_state_round_trips_without_pickle(tmp_path):
    from transformers import get_cosine_schedule_with_warmup

    from prmkit.rl.loop import load_state, save_state

    def parts():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        return dict(policy=model, optimizer=opt, scheduler=get_cosine_schedule_with_warmup(opt, 1, 10))

    saved = parts()
    saved["policy"](torch.randn(4, 3)).sum().backward()
    saved["optimizer"].step()
    saved["scheduler"].step()
    path = tmp_path / "state.pt"
    save_state(path, 7, **saved)
    after = (torch.rand(3), random.random())  # what the RNGs give after the save
    loaded = parts()
    assert load_state(path, "cpu", "ppo", **loaded) == 7
    assert torch.equal(torch.rand(3), after[0]) and random.random() == after[1]
    assert torch.equal(loaded["policy"].weight, saved["policy"].weight)
    assert loaded["optimizer"].state_dict()["state"][0]["step"] == 1
    assert loaded["scheduler"].last_epoch == 1


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_ppo_resume_refuses_a_malicious_state(tmp_path, how):
    from prmkit.rl.loop import load_state

    live = tmp_path / "live"
    pickle.loads(pickle.dumps(Payload(live))).close()  # the payload works on an ordinary unpickler
    assert live.exists()

    marker, path = tmp_path / "MARKER", tmp_path / "run.checkpoints" / "state.pt"
    path.parent.mkdir()
    state = {"policy": Payload(marker), "iteration": 3}
    if how == "pickle":
        path.write_bytes(pickle.dumps(state, protocol=2))
    else:
        torch.save(state, path)
    with pytest.raises(ValueError) as e:
        load_state(path, "cpu", "ppo", policy=torch.nn.Linear(1, 1))
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "refused to unpickle" in message
    assert not marker.exists()


def test_ppo_resume_refuses_a_state_of_something_else(tmp_path):
    from prmkit.rl.loop import load_state

    path = tmp_path / "state.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"state.pt: not a PPO state prmkit wrote \(expected"):
        load_state(path, "cpu", "ppo", policy=torch.nn.Linear(1, 1))
    path.write_bytes(b"not a state at all")
    with pytest.raises(ValueError, match="state.pt: not a PPO state prmkit wrote"):
        load_state(path, "cpu", "ppo", policy=torch.nn.Linear(1, 1))


# ---- input files stay data ----


def test_recipes_are_read_with_safe_load(tmp_path):
    marker = tmp_path / "MARKER"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"sft:\n  lr: !!python/object/apply:builtins.open [{str(marker)!r}, w]\n")
    with pytest.raises(ValueError) as e:
        load_recipe(recipe)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{recipe}:2: bad YAML") and "python/object" in message
    with pytest.raises(ValueError, match=r"--set .*: bad YAML: .*python/object"):
        load_recipe(None, [f"sft.lr=!!python/object/apply:builtins.open [{str(marker)!r}, w]"])
    assert not marker.exists()


def test_jsonl_readers_refuse_long_lines_and_too_many_records(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n{"a": "' + "x" * 200 + '"}\n{"a": 3}\n')
    assert len(read_jsonl(path, max_line_bytes=300)) == 3
    with pytest.raises(DataError, match=r"f.jsonl:2: line longer than 100 bytes$"):
        read_jsonl(path, max_line_bytes=100)
    with pytest.raises(DataError, match=r"f.jsonl:3: more than 2 records$"):
        read_jsonl(path, max_records=2)
    with pytest.raises(DataError, match=r"f.jsonl:2: line longer than 100 bytes"):
        open_appender(tmp_path / "f.jsonl", key=lambda r: r["a"], max_line_bytes=100)
    exact = tmp_path / "exact.jsonl"  # a line of exactly the limit is fine, with or without its newline
    exact.write_text('{"a": "xx"}\n{"a": "yy"}')
    assert len(read_jsonl(exact, max_line_bytes=11)) == 2
    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps({"problem_id": "p", "sample_id": 0, "scores": [0.5] * 100}) + "\n")
    with pytest.raises(DataError, match=r"scores.jsonl:1: line longer than 64 bytes"):
        read_scores(scores, max_line_bytes=64)
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"a": 1}\n{"a": "' + "x" * 200)
    with pytest.raises(DataError, match=r"torn.jsonl: last line longer than 100 bytes"):
        repair_tail(torn, max_line_bytes=100)
    assert repair_tail(torn) and read_jsonl(torn) == [{"a": 1}]  # under the default limit: just torn


def test_a_2gb_single_line_file_is_refused_without_reading_it(tmp_path, monkeypatch):
    import prmkit.io

    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as f:
        f.truncate(2 << 30)  # sparse: 2 GB of one line, no disk used
    monkeypatch.setattr(prmkit.io, "MAX_LINE_BYTES", 1 << 20)  # the default limit, smaller for speed
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"huge.jsonl:1: line longer than 1048576 bytes"):
            read_jsonl(huge)
        with pytest.raises(DataError, match=r"huge.jsonl: last line longer than 1048576 bytes"):
            open_appender(huge, key=lambda r: r)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_processbench_file_size_limit(tmp_path):
    from prmkit.evaluate.processbench import load_processbench

    path = tmp_path / "gsm8k.json"
    path.write_text(json.dumps([{"id": "a", "problem": "q", "steps": ["s"], "label": -1}]))
    assert len(load_processbench(path)) == 1
    with pytest.raises(
        DataError, match=r"gsm8k.json: file of \d+ bytes is larger than the 10 bytes read whole"
    ):
        load_processbench(path, max_bytes=10)


def test_a_hub_dataset_id_can_be_pinned_to_a_revision(monkeypatch):
    import datasets

    from prmkit.data import load_gsm8k

    asked = {}

    def fake(repo, config, split, revision):
        asked.update(repo=repo, config=config, split=split, revision=revision)
        return [{"question": "Tom has 3 pens. How many?", "answer": "He has 3.\n#### 3"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    (p,) = load_gsm8k("openai/gsm8k@0123abc", "test")
    assert asked == {"repo": "openai/gsm8k", "config": "main", "split": "test", "revision": "0123abc"}
    assert p.answer == "3"
    load_gsm8k("openai/gsm8k", "train")
    assert asked["revision"] is None and asked["split"] == "train"
