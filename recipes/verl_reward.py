"""verl custom reward function: the process reward of a response from a running `prmkit serve`.

    prmkit serve --model runs/world/prm --port 8000            # on the reward host (add --api-key)
    python -m verl.trainer.main_ppo ... \\
        custom_reward_function.path=recipes/verl_reward.py custom_reward_function.name=compute_score

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` once per response;
``solution_str`` is the decoded response and ``extra_info["question"]`` the question (verl's GSM8K and
MATH preprocessing scripts put it there). The response is sent as a text (``"solution"``), which the
server splits into steps with its ``--steps`` format, and the reward is the server's aggregated step
score (``--aggregation``, min by default). Environment: ``PRMKIT_SERVE_URL`` (default
http://127.0.0.1:8000), ``PRMKIT_API_KEY`` (when the server has a key). Standard library only, so
verl's workers need nothing but this file.
"""

import json
import os
import time
import urllib.error
import urllib.request


def prm_scores(
    questions: list[str], solutions: list[str], url: str | None = None, tries: int = 3
) -> list[float]:
    """The aggregated PRM score of each solution text; retried on connection errors and 5xx."""
    url = (url or os.environ.get("PRMKIT_SERVE_URL", "http://127.0.0.1:8000")).rstrip("/") + "/score"
    body = {"solutions": [{"question": q, "solution": s} for q, s in zip(questions, solutions, strict=True)]}
    headers = {"Content-Type": "application/json"}
    if os.environ.get("PRMKIT_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['PRMKIT_API_KEY']}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                return [res["score"] for res in json.loads(r.read())["results"]]
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == tries - 1:  # a 4xx will not get better by retrying
                raise RuntimeError(
                    f"prmkit serve at {url}: {e.code} {e.read().decode(errors='replace')}"
                ) from None
        except OSError:
            if attempt == tries - 1:
                raise
        time.sleep(2**attempt)
    raise AssertionError("unreachable")


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    """verl's reward function signature; ``ground_truth`` is unused (a PRM needs no reference)."""
    question = (extra_info or {}).get("question", "")
    return prm_scores([question], [solution_str])[0]
