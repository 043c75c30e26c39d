"""Builders for small real models used across the tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from airsearch.encoder import default_encoder_path


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
