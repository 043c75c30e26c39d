"""Small corpora with metadata (task, number, tags) for the index / query / select tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from airsearch.data.corpus import write_rows

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


def best_rank_reference(
    scores: np.ndarray, n: int, *, positional: bool = False
) -> tuple[list[int], list[int]]:
    """Plain App. G on a full ``[targets, items]`` score matrix: ``(item order, best ranks)``.

    Ranks are competition ranks (1 + how many items score strictly higher), the product's rule; with
    ``positional=True`` they are positions in a stable sort instead (the rule the evaluation once had,
    which splits tied scores). Ties in best rank: the higher score at that rank, then the item order.
    """
    if positional:
        ranks = 1 + np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable")
    else:
        ranks = 1 + (scores[:, None, :] > scores[:, :, None]).sum(axis=2)  # 1 + #{j: s[t, j] > s[t, i]}
    best = ranks.min(axis=0)
    score_at_best = np.where(ranks == best[None, :], scores, -np.inf).max(axis=0)
    order = sorted(range(scores.shape[1]), key=lambda i: (best[i], -score_at_best[i], i))[:n]
    return order, [int(best[i]) for i in order]


def write_corpus(path: Path, rows: list[dict]) -> Path:
    write_rows(path, rows)
    return path


def table_with_vector_dim(src_db: Path, dst_db: Path, dim: int) -> Path:
    """A copy of ``src_db``'s table whose schema still records its encoder but whose vectors have
    ``dim`` dimensions (what a table written by hand, or by another tool, may hold)."""
    import lancedb
    from airsearch.indexers.rows import table_schema, to_batch
    from airsearch.indexers.store import META_KEY, IndexStore

    table = IndexStore(src_db).open()
    meta = table.meta
    schema = table_schema(meta.columns, dim, {META_KEY: meta.to_json()})
    examples = table.take([rid for ids, _, _ in table.iter_blocks() for rid in ids])
    batch = to_batch(examples, np.ones((len(examples), dim), np.float32), schema, meta.columns)
    lancedb.connect(str(dst_db)).create_table("corpus", data=[batch], schema=schema)
    return dst_db
