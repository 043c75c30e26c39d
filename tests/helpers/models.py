"""Small real models for the tests (a tiny random BERT, a micro pre-trained Llama) and their examples.

``make_examples`` is :func:`airsearch.data.synthetic.random_word_examples` (the rows the gradient tests
and ``benchmarks/bench_methods.py`` use).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from airsearch.data.example import Example
from airsearch.data.synthetic import random_word_examples as make_examples
from airsearch.encoder import default_encoder_path


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


def build_tiny_bert(out_dir: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A randomly initialised BERT with the default encoder's tokenizer, saved as a HF folder."""
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertModel(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def make_tiny_lm_examples(n: int = 48, seed: int = 0) -> list[Example]:
    """Synthetic question/answer rows (plus two text rows) with a learnable pattern."""
    import random

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
