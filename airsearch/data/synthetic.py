"""Seeded synthetic examples: short random word sequences, for smoke runs and cost measurements.

They carry no task structure (use the bundled sample, :func:`airsearch.data.sample_corpus_path`, for
that); what they fix is the shape of the work: ``n`` rows of 2-6 prompt words and 2-7 response words
from a 28-word vocabulary, the same rows for the same ``seed`` (``benchmarks/bench_methods.py`` times
the attribution methods on them, and the gradient tests compare against plain references on them).
"""

from __future__ import annotations

import random

from airsearch.data.example import Example

WORDS = [
    "red",
    "blue",
    "green",
    "cat",
    "dog",
    "bird",
    "one",
    "two",
    "three",
    "sun",
    "moon",
    "star",
    "tree",
    "river",
    "stone",
    "fire",
    "water",
    "apple",
    "bread",
    "milk",
    "north",
    "south",
    "east",
    "west",
    "fast",
    "slow",
    "big",
    "small",
]


def random_word_examples(n: int, prefix: str = "ex", seed: int = 0) -> list[Example]:
    """``n`` examples ``{prefix}{i}`` whose prompt and response are random words (``random.Random(seed)``)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        response = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
        out.append(Example(id=f"{prefix}{i}", prompt=prompt, response=response))
    return out
