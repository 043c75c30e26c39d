"""Shared helpers for the gradient-method tests: a very small pre-trained Llama and a few examples."""

from __future__ import annotations

from pathlib import Path

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


def make_examples(n: int, prefix: str = "ex", seed: int = 0) -> list[Example]:
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        response = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
        out.append(Example(id=f"{prefix}{i}", prompt=prompt, response=response))
    return out


def build_micro_lm(out_dir: Path, steps: int = 30) -> Path:
    """A ~30k-parameter Llama with a 300-entry BPE, briefly pre-trained (seconds on one core)."""
    from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm

    cfg = TinyLMConfig(
        vocab_size=300,
        hidden_size=16,
        layers=1,
        heads=2,
        intermediate_size=32,
        context=32,
        steps=steps,
        batch_size=4,
        warmup_steps=2,
        min_frequency=1,
    )
    return build_tiny_lm(make_examples(60, seed=123), out_dir, cfg, show_progress=False)
