"""Data formats: examples, corpus input (``corpus``, ``readers``, ``shapes``) and the bundled sample.

The bundled sample corpus (``airsearch/data/sample/``, see its PROVENANCE.md) is ~3,000 Natural
Instructions v1 rows over 20 tasks plus 200 held-out query rows, each with its ``task`` as metadata.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def sample_corpus_path() -> Path:
    """Path of the bundled sample training corpus (JSONL: id, prompt, response, task)."""
    return SAMPLE_DIR / "train.jsonl"


def sample_queries_path() -> Path:
    """Path of the bundled held-out sample queries (JSONL, same fields, disjoint from the corpus)."""
    return SAMPLE_DIR / "queries.jsonl"
