import pytest

from prmkit.config import build, load_recipe
from prmkit.pipeline import DemoRecipe
from prmkit.policy.sft import SFTConfig
from prmkit.sample import SampleConfig


def test_recipe_and_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("sft: {lr: 1.0e-3, epochs: 1}\nsample: {n: 4}\n")
    recipe = load_recipe(path, ["sft.lr=3e-4", "sample.calculator=false", "world.seed=7"])
    assert recipe == {
        "sft": {"lr": "3e-4", "epochs": 1},
        "sample": {"n": 4, "calculator": False},
        "world": {"seed": 7},
    }
    cfg = build(SFTConfig, recipe["sft"], "sft")
    assert cfg.lr == 3e-4 and cfg.epochs == 1.0
    assert build(SampleConfig, recipe["sample"], "sample").calculator is False


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown field.*lrr; valid: model"):
        build(SFTConfig, {"lrr": 1}, "sft")
    with pytest.raises(ValueError, match="expected stage.field=value"):
        load_recipe(None, ["lr=3"])
    with pytest.raises(ValueError, match="recipe not found"):
        load_recipe(tmp_path / "none.yaml")
    with pytest.raises(ValueError, match="unknown stage 'sftt'; valid: data, world, sft"):
        DemoRecipe.from_dict({"sftt": {}})
    with pytest.raises(ValueError, match="sample.backend: unknown 'vlm'; valid: hf"):
        build(SampleConfig, {"backend": "vlm"}, "sample")
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        build(SFTConfig, {"model": "scratch:huge"}, "sft")
