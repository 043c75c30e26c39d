"""Test settings: offline hubs, quiet progress bars, one torch thread (CI has 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("AIRSEARCH_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402

from tests.fixtures import build_tiny_bert  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random BERT folder (HF format) to use as a fast base encoder."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "bert")


def make_tiny_lm_examples(n: int = 48, seed: int = 0) -> list:
    """Synthetic question/answer rows (plus two text rows) with a learnable pattern."""
    import random

    from airsearch.data.example import Example

    rng = random.Random(seed)
    things = ["apple", "river", "stone", "cloud", "tiger", "lemon", "ocean", "grass"]
    colours = ["red", "blue", "green", "grey", "gold", "white"]
    rows = []
    for i in range(n):
        thing, colour = rng.choice(things), rng.choice(colours)
        rows.append(Example(f"qa{i}", f"What colour is the {thing}?", f"The {thing} is {colour}."))
    rows.append(Example("text0", "", "Every apple on the tree turned red in the autumn sun."))
    rows.append(Example("text1", "", "The river ran blue and cold under the grey stone bridge."))
    return rows


@pytest.fixture(scope="session")
def tiny_lm_examples() -> list:
    """The examples :func:`tiny_lm_dir` was pre-trained on."""
    return make_tiny_lm_examples()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory, tiny_lm_examples: list):
    """A tiny pre-trained Llama target LM (an ordinary HF folder, ~40k parameters), built in seconds."""
    from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm

    cfg = TinyLMConfig(
        vocab_size=400,
        hidden_size=32,
        layers=2,
        heads=2,
        intermediate_size=64,
        context=64,
        steps=60,
        batch_size=8,
        lr=1e-2,
        warmup_steps=5,
        min_frequency=1,
        seed=0,
    )
    return build_tiny_lm(
        tiny_lm_examples, tmp_path_factory.mktemp("tiny_lm") / "lm", cfg, show_progress=False
    )
