"""The full-text (BM25) side of an index table: LanceDB's native inverted index on ``prompt`` and
``response``, built when the table is built and kept current on append.

A BM25 query is the query example's prompt and response words; each row's score is the BM25 score
(Robertson & Zaragoza 2009, Eq. 3.7 with Lance's defaults k1 = 1.2, b = 0.75) summed over the two
indexed columns. Rows appended after the index was built are still searched (Lance scans them flat)
until the next index refresh folds them in.
"""

from __future__ import annotations

import re
from typing import Any

import lance
import numpy as np
from lance.query import MultiMatchQuery

from airsearch.data.example import Example
from airsearch.errors import InputError

FTS_COLUMNS = ("prompt", "response")
MAX_QUERY_TERMS = 256
_WORD = re.compile(r"\w+", re.UNICODE)


def build_text_index(table: Any) -> dict[str, Any]:
    """Create (or replace) the BM25 inverted index on each text column; what the table metadata records."""
    from lancedb.index import FTS

    for column in FTS_COLUMNS:
        table.create_index(column, config=FTS(with_position=False), replace=True)
    return {"columns": list(FTS_COLUMNS), "tokenizer": "simple, lower case, English stemming"}


def has_index(table: Any) -> bool:
    """True when every text column has a full-text index (``table``: a Lance dataset or a LanceDB table)."""
    dataset = table if isinstance(table, lance.LanceDataset) else table.to_lance()
    indexed = {c for idx in dataset.describe_indices() if "Inverted" in idx.type_url for c in idx.field_names}
    return set(FTS_COLUMNS) <= indexed


def query_text(example: Example, max_terms: int = MAX_QUERY_TERMS) -> str:
    """The words of the query's prompt and response (no query syntax reaches the index)."""
    return " ".join(_WORD.findall(f"{example.prompt} {example.response}")[:max_terms])


def search(
    dataset: lance.LanceDataset, example: Example, k: int, *, where: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(BM25 scores [k'], row ids [k'])`` best first, on the pinned dataset version, filter applied first."""
    text = query_text(example)
    if not text:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    try:
        found = dataset.to_table(
            full_text_query=MultiMatchQuery(text, list(FTS_COLUMNS)),
            columns=[],
            with_row_id=True,
            filter=where,
            prefilter=bool(where),
            limit=k,
        )
    except (OSError, ValueError, RuntimeError) as e:
        if where:
            raise InputError(f"bad filter {where!r}: {str(e).splitlines()[0]}", field="where") from None
        raise
    scores = found.column("_score").to_numpy().astype(np.float32)
    ids = found.column("_rowid").to_numpy().astype(np.int64)
    order = np.argsort(-scores, kind="stable")
    return scores[order], ids[order]
