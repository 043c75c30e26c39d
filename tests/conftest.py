"""Test settings (offline hubs, quiet progress bars, one torch thread: CI has 2 cores) and the shared
fixtures. Helpers that are not fixtures live in ``tests/helpers/``; no test module imports another."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("AIRSEARCH_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from airsearch.data.example import Example  # noqa: E402
from airsearch.encoder import AirRepEncoder  # noqa: E402
from tests.helpers.corpora import make_rows, write_corpus  # noqa: E402
from tests.helpers.models import build_tiny_bert, make_tiny_lm_examples  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This session's own cache of exported encoders (``$AIRSEARCH_CACHE``): the query exports that
    ``index`` writes (airsearch.query_encoder) never come from an earlier run or the user's cache."""
    cache = tmp_path_factory.mktemp("airsearch_cache")
    os.environ["AIRSEARCH_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT folder (HF format) to use as a fast base encoder."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "bert")


@pytest.fixture(scope="session")
def tiny_lm_examples() -> list[Example]:
    """The examples :func:`tiny_lm_dir` was pre-trained on."""
    return make_tiny_lm_examples()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory, tiny_lm_examples: list[Example]) -> Path:
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


@pytest.fixture(scope="session")
def tiny_lm_db(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm_examples: list[Example], tiny_encoder_dir: Path
) -> Path:
    """The first 20 :func:`tiny_lm_examples` indexed with the tiny AirRep (the rerank tests' index)."""
    from tests.helpers.cli import run

    root = tmp_path_factory.mktemp("tiny_lm_db")
    corpus = write_corpus(root / "corpus.jsonl", [e.to_row() for e in tiny_lm_examples[:20]])
    run("index", corpus, "--db", root / "db", "--encoder", tiny_encoder_dir, "--batch-size", "8")
    return root / "db"


@pytest.fixture(scope="session")
def tiny_encoder_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved, untrained AirRep on the tiny random BERT (32-dim)."""
    enc = AirRepEncoder.from_base(str(tiny_bert_dir), device="cpu")
    return enc.save(tmp_path_factory.mktemp("enc") / "airrep")


@pytest.fixture(scope="session")
def other_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different tiny AirRep (other random weights): its fingerprint differs."""
    bert = build_tiny_bert(tmp_path_factory.mktemp("bert2") / "bert", seed=1)
    enc = AirRepEncoder.from_base(str(bert), device="cpu")
    return enc.save(tmp_path_factory.mktemp("enc2") / "airrep")


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 rows of :func:`tests.helpers.corpora.make_rows` (tasks alpha / beta / gamma) as JSONL."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "train.jsonl", make_rows(60))
