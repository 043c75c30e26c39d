"""Shared fixtures for the index/query/select tests: a saved tiny AirRep encoder and small corpora."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from airsearch.data.corpus import write_rows
from airsearch.encoder import AirRepEncoder
from tests.fixtures import build_tiny_bert

TASKS = ("alpha", "beta", "gamma")
WORDS = tuple(
    [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "mat",
        "while",
        "dogs",
        "ran",
        "far",
        "away",
        "near",
        "big",
        "red",
        "houses",
        "with",
        "green",
        "doors",
    ]
)


def make_rows(n: int, *, start: int = 0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed + start)
    rows = []
    for i in range(start, start + n):
        task = TASKS[i % len(TASKS)]
        prompt = f"[{task}] " + " ".join(rng.choice(WORDS, size=int(rng.integers(3, 12))))
        response = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 6))))
        rows.append(
            {
                "id": f"r{i:04d}",
                "prompt": prompt,
                "response": response,
                "task": task,
                "n": i,
                "tags": [task, str(i % 2)],
            }
        )
    return rows


def write_corpus(path: Path, rows: list[dict]) -> Path:
    write_rows(path, rows)
    return path


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
    return write_corpus(tmp_path_factory.mktemp("corpus") / "train.jsonl", make_rows(60))
