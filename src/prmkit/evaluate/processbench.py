"""ProcessBench (Zheng et al. 2024): find the first wrong step of a solution.

A ProcessBench file is a JSON *array* of ``{id, problem, steps: [str], label}``, ``label`` the 0-based
index of the first wrong step or -1. A prediction is a first-error index per id: from a PRM (the first
step scored below ``threshold``, all steps scored in one pass) or from a predictions JSONL
``{id, first_error}`` so the metric can be checked on its own. Metrics as the benchmark defines them:
accuracy on erroneous samples (prediction == label), accuracy on correct samples (prediction == -1),
and their harmonic mean, F1; per file (subset) and averaged over subsets.

``pick_threshold`` chooses the threshold on a held-out part (every other sample by default) by F1,
for an honest number on the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

from prmkit.evaluate.verifier import first_below, first_error_f1
from prmkit.io import DataError, check_size, iter_jsonl, require_fields


def load_processbench(path: str | Path, max_bytes: int | None = None) -> list[dict]:
    """Records of one ProcessBench file, checked: a JSON array whose items have id, problem, steps, label.
    A file larger than ``max_bytes`` (default ``io.MAX_JSON_BYTES``) is refused before it is read."""
    path = check_size(path, max_bytes)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(path, line, f"not UTF-8 text ({e.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        hint = (
            " (this looks like JSONL; ProcessBench files are one JSON array)"
            if text.lstrip().startswith("{")
            else ""
        )
        raise DataError(path, e.lineno, f"bad JSON{hint}: {e.msg}") from None
    except RecursionError:
        raise DataError(path, None, "bad JSON: nested too deeply") from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion: ..."
        raise DataError(path, None, f"bad JSON: {str(e).partition(':')[0]}") from None
    if not isinstance(data, list):
        raise DataError(path, None, f"expected a JSON array of samples, got {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(path, None, f"sample {i}: expected an object")
        where = f"sample {i} (id {rec.get('id')!r:.60})"
        for key in ("id", "problem", "steps", "label"):
            if key not in rec:
                raise DataError(path, None, f"{where}: missing field '{key}'", key)
        pid, steps, label = rec["id"], rec["steps"], rec["label"]
        for key, ok, expected in (
            ("id", isinstance(pid, str) or type(pid) is int, "a string or integer"),
            ("problem", isinstance(rec["problem"], str), "a string"),
            (
                "steps",
                isinstance(steps, list) and all(isinstance(x, str) for x in steps),
                "a list of strings",
            ),
        ):
            if not ok:
                raise DataError(path, None, f"{where}: field '{key}' must be {expected}", key)
        if type(label) is not int or not -1 <= label < len(steps):
            raise DataError(path, None, f"{where}: label {label!r:.60} out of range", "label")
    return data


def load_predictions(path: str | Path) -> dict[str, int]:
    out = {}
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, "id", "first_error")
        if type(rec["first_error"]) is not int:
            raise DataError(path, lineno, "first_error must be an integer (-1 for no error)", "first_error")
        out[str(rec["id"])] = rec["first_error"]
    return out


def predict_with(rm, samples: list[dict], batch_size: int = 16) -> dict[str, list[float]]:
    """Step scores of a reward model for every sample, keyed by id (one forward pass per sample)."""
    scores = rm.score([s["problem"] for s in samples], [s["steps"] for s in samples], batch_size=batch_size)
    return {str(s["id"]): row for s, row in zip(samples, scores, strict=True)}


def evaluate_predictions(samples: list[dict], predictions: dict[str, int]) -> dict[str, float]:
    """ProcessBench metrics; predictions for unknown ids or missing samples are errors, never dropped."""
    ids = {str(s["id"]) for s in samples}
    unknown = sorted(set(predictions) - ids)
    if unknown:
        raise ValueError(
            f"processbench: {len(unknown)} predictions for ids not in the benchmark, e.g. {unknown[0]}"
        )
    missing = sorted(ids - set(predictions))
    if missing:
        raise ValueError(f"processbench: no prediction for {len(missing)} samples, e.g. {missing[0]}")
    pred = [predictions[str(s["id"])] for s in samples]
    return first_error_f1(pred, [s["label"] for s in samples]) | {"samples": len(samples)}


def from_scores(scores: dict[str, list[float]], threshold: float) -> dict[str, int]:
    return {i: first_below(row, threshold) for i, row in scores.items()}


def pick_threshold(samples: list[dict], scores: dict[str, list[float]]) -> float:
    """The threshold in 0.05 .. 0.95 with the best F1 on ``samples`` (the held-out part)."""
    grid = [round(0.05 * k, 2) for k in range(1, 20)]
    return max(grid, key=lambda t: (evaluate_predictions(samples, from_scores(
        {str(s["id"]): scores[str(s["id"])] for s in samples}, t))["f1"], -abs(t - 0.5)))  # fmt: skip


def _spread(samples: list[dict], limit: int | None) -> list[dict]:
    """``limit`` samples spread evenly over a file (the files are ordered by label, so a prefix is not a sample).

    >>> [s["i"] for s in _spread([{"i": i} for i in range(10)], 4)]
    [0, 2, 5, 7]
    """
    if not limit or limit >= len(samples):
        return samples
    return [samples[(k * len(samples)) // limit] for k in range(limit)]


def run_processbench(
    files: list[Path],
    rm=None,
    predictions: dict[str, int] | None = None,
    threshold: float | None = 0.5,
    limit: int | None = None,
) -> dict[str, dict]:
    """Per-subset metrics and their average. With a reward model and ``threshold=None`` the threshold
    is picked on the even-indexed half of each subset and the metrics are reported on the odd half."""
    if (rm is None) == (predictions is None):
        raise ValueError("processbench: give either a reward model or a predictions file")
    results: dict[str, dict] = {}
    for path in files:
        samples = _spread(load_processbench(path), limit)
        name = path.stem
        if predictions is not None:
            ids = {str(s["id"]) for s in samples}
            results[name] = evaluate_predictions(samples, {i: p for i, p in predictions.items() if i in ids})
            continue
        scores = predict_with(rm, samples)
        if threshold is None:
            held, rest = samples[0::2], samples[1::2]
            t = pick_threshold(held, scores)
            results[name] = evaluate_predictions(
                rest, from_scores({str(s["id"]): scores[str(s["id"])] for s in rest}, t)
            )
            results[name]["threshold"] = t
        else:
            results[name] = evaluate_predictions(samples, from_scores(scores, threshold)) | {
                "threshold": threshold
            }
    if predictions is not None:
        used = {str(s["id"]) for path in files for s in _spread(load_processbench(path), limit)}
        stray = sorted(set(predictions) - used)
        if stray:
            raise ValueError(
                f"processbench: {len(stray)} predictions for ids in none of the files, e.g. {stray[0]}"
            )
    results["average"] = {
        k: sum(r[k] for r in results.values()) / len(results) for k in ("error_acc", "correct_acc", "f1")
    }
    return results
