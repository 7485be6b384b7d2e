import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"{SHARED_DATA} not found: real-data checks need the shared data directory beside the repo"
        )
    return SHARED_DATA


@pytest.fixture(scope="module")
def world():
    """50 world train problems and a small tokenizer trained on them."""
    from prmkit.models import train_tokenizer
    from prmkit.world import WorldConfig, generate_split

    problems = generate_split(WorldConfig(n_train=50), "train")
    tok = train_tokenizer([p.question + "\n" + p.solution for p in problems], vocab_size=400)
    return problems, tok


@pytest.fixture
def tiny_model_dir(tmp_path):
    """Save a random "test"-size Llama for ``tok`` as a Hugging Face directory; returns its path."""
    from prmkit.models import new_model

    def save(tok, name: str = "init") -> Path:
        path = tmp_path / name
        new_model(tok, "test").save_pretrained(path)
        tok.save_pretrained(path)
        return path

    return save


def text_completions(texts, finishes):
    """Completions as a text-only backend (``openai``) gives them: no token ids."""
    from prmkit.policy.base import Completion

    return [Completion(t, len(t), f) for t, f in zip(texts, finishes, strict=True)]
