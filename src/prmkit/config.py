"""Recipes: short YAML files of overrides, turned into the frozen per-stage config dataclasses.

A recipe is a mapping of stage name to field overrides::

    # prmkit demo --recipe recipes/world-quick.yaml
    sft: {model: "scratch:test", max_steps: 50}
    sample: {n: 4}

``--set sft.lr=1e-3`` on the command line overrides a recipe value (parsed as YAML, so numbers,
booleans and lists work). ``STAGES`` is the one list of stage names, shared by the demo and every
command, each reading the stage of the same name (``prmkit train prm`` reads ``prm``): an unknown
stage or field is an error that lists the valid ones, wherever the recipe is read.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# stage name -> its config class ("module:Class", imported only when the stage is read)
STAGES: dict[str, str] = {
    "data": "prmkit.pipeline:DataConfig",
    "world": "prmkit.world:WorldConfig",
    "sft": "prmkit.policy.sft:SFTConfig",
    "verifier_lm": "prmkit.policy.sft:VerifierLMConfig",  # the demo's verifiers' own LM (demo.verifier_init)
    "sample": "prmkit.sample:SampleConfig",
    "annotate": "prmkit.annotate:AnnotateConfig",
    "prm": "prmkit.reward.train:RewardConfig",
    "orm": "prmkit.reward.train:RewardConfig",
    "value": "prmkit.reward.value:ValueConfig",
    "critique": "prmkit.reward.critique:CritiqueConfig",
    "demo": "prmkit.pipeline:DemoConfig",
    "ppo": "prmkit.rl.ppo:PPOConfig",
    "rft": "prmkit.rl.rft:RFTConfig",
    "grpo": "prmkit.rl.grpo:GRPOConfig",
    "rl": "prmkit.rl.compare:RLConfig",
    "ray": "prmkit.distributed:RayConfig",  # sample, annotate: shard the model calls over Ray workers
    "search": "prmkit.search:SearchConfig",  # PRM-guided search; the demo's compute-matched comparison
}
KIND_STAGES = ("prm", "orm")  # stages whose config has a ``kind`` field that must be the stage's name


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Recipe mapping from a YAML file (or empty) with ``stage.field=value`` overrides applied."""
    recipe: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ValueError(f"{path}: recipe not found") from None
        except yaml.YAMLError as e:
            raise ValueError(yaml_error(str(path), e)) from None
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise ValueError(f"{path}: a recipe maps stage names to mappings of fields")
        recipe = {k: dict(v) for k, v in loaded.items()}
        check_stages(recipe, str(path))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot or not stage or not name:
            raise ValueError(f"--set {item!r}: expected stage.field=value, e.g. sft.lr=1e-3")
        check_stages({stage: {}}, f"--set {item!r}")
        try:
            recipe.setdefault(stage, {})[name] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(yaml_error(f"--set {item!r}", e)) from None
    return recipe


def yaml_error(where: str, e: yaml.YAMLError) -> str:
    """One line for a YAML error: where (with the line), what, and why a Python tag is refused (recipes
    are read with ``yaml.safe_load``, so a tag such as ``!!python/object`` never builds an object)."""
    mark = getattr(e, "problem_mark", None)
    if mark is not None and not where.startswith("--set"):
        where = f"{where}:{mark.line + 1}"
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    hint = " (recipes are data: Python tags are not read)" if "python/" in what else ""
    return f"{where}: bad YAML: {what}{hint}"


def build(cls: type[T], values: dict[str, Any] | None, stage: str) -> T:
    """Instantiate a stage config dataclass, naming any unknown field and the valid ones."""
    values = dict(values or {})
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{stage}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    for key, value in values.items():  # YAML "1e-3" is a string; coerce numbers where the field wants one
        default = names[key].default
        if isinstance(default, float) and isinstance(value, int | str) and not isinstance(value, bool):
            values[key] = float(value)
        elif isinstance(default, tuple) and isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


def check_stages(recipe: dict[str, Any], source: str = "recipe") -> None:
    """Refuse a stage name that is not in ``STAGES``, naming the valid ones.

    >>> check_stages({"sampel": {"n": 3}}, "--set")
    Traceback (most recent call last):
    ...
    ValueError: --set: unknown stage 'sampel'; valid: data, world, sft, verifier_lm, sample, annotate, prm, orm, value, critique, demo, ppo, rft, grpo, rl, ray, search
    """
    unknown = sorted(set(recipe) - set(STAGES))
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise ValueError(f"{source}: unknown stage {names}; valid: {', '.join(STAGES)}")


def stage_class(stage: str) -> type:
    check_stages({stage: {}}, "stage")
    module, _, name = STAGES[stage].partition(":")
    return getattr(importlib.import_module(module), name)


def stage_config(stage: str, recipe: dict[str, dict[str, Any]], **overrides: Any) -> Any:
    """The config of ``stage`` from a recipe mapping, with ``overrides`` (command-line options) on top."""
    values = {**(recipe.get(stage) or {}), **overrides}
    if stage in KIND_STAGES:
        values.setdefault("kind", stage)
    cfg = build(stage_class(stage), values, stage)
    if stage in KIND_STAGES and cfg.kind != stage:
        raise ValueError(f"{stage}.kind: the {stage} stage trains a {stage}, not a {cfg.kind}")
    return cfg
