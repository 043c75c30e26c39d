"""Parts of ``bench_method_columns.py``: CPU-time clocks, the per-query paths with recall, the end-to-end
rerank comparison, distinct rows for the large table, and the SmolLM2-135M LoRA cost section.

Clock: the process's CPU seconds (``time.process_time``: every thread of the process, Lance's included)
with torch on one thread. On a machine whose cores another job keeps busy, wall time of the same query
varies 20x between repeats (the process waits for a core), while its CPU time stays within a few per
cent; so ratios and stage splits are read from CPU time, and the wall-clock medians are kept beside
them in the JSON.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODES = {"airrep": "vector", "bm25": "bm25", "hybrid": "hybrid"}
CS = (50, 200, 1000)


def clocked(fn: Callable[..., Any], *a: Any, **kw: Any) -> tuple[Any, float, float]:
    """``(result, cpu seconds, wall seconds)`` of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn(*a, **kw)
    return out, time.process_time() - c0, time.perf_counter() - w0


def ms(values: Sequence[float]) -> float:
    """Median of seconds, in milliseconds."""
    return round(1000 * statistics.median(values), 2)


def recall(found_scores: np.ndarray, exact_scores: np.ndarray) -> float:
    """Share of the top-10 returned whose exact score reaches the exact 10th best (tie-robust)."""
    bar = exact_scores[min(9, len(exact_scores) - 1)]
    tol = 1e-5 * max(abs(bar), 1e-12)
    return float(np.mean(np.asarray(found_scores[:10]) >= bar - tol))


def measure(queries: Sequence[Any], airrep: Any, exact: Any, annc: Any) -> dict[str, Any]:
    """Median per-query CPU milliseconds of each path (wall-clock medians beside them) and mean recall@10
    against exact column search."""
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    rec: dict[str, list[float]] = {}

    def add(key: str, c: float, w: float) -> None:
        cpu.setdefault(key, []).append(c)
        wall.setdefault(key, []).append(w)

    exact.encode(queries[:1])  # warm-up
    for q in queries:
        qv, c, w = clocked(exact.encode, [q])
        add("query_vector", c, w)
        (ex_scores, _), c, w = clocked(exact.top_k, qv, 10)
        add("column_exact_search", c, w)
        (an_scores, _), c, w = clocked(annc.top_k, qv, 10)
        add("column_ann_search", c, w)
        rec.setdefault("column_ann", []).append(recall(an_scores[0], ex_scores[0]))
        av, enc_c, enc_w = clocked(airrep.encode, [q])
        add("airrep_query_encode", enc_c, enc_w)
        for source, mode in MODES.items():
            enc = (enc_c, enc_w) if mode != "bm25" else (0.0, 0.0)
            for n in CS:
                found, c, w = clocked(airrep.retrieve, [q], av, n, mode=mode)
                rids = found[0][1]
                s, gc, gw = clocked(lambda r=rids, v=qv: exact.row_vectors(r) @ v[0])
                add(f"{source}_rerank_c{n}_search", c + gc + enc[0], w + gw + enc[1])
                rec.setdefault(f"{source}_rerank_c{n}", []).append(
                    recall(np.sort(s)[::-1][:10], ex_scores[0])
                )
    return {
        "latency_ms": {k: ms(v) for k, v in cpu.items()},
        "wall_ms": {k: ms(v) for k, v in wall.items()},
        "recall_at_10": {k: round(float(np.mean(v)), 3) for k, v in rec.items()},
    }


class TimedHook:
    """A rerank hook that records the CPU seconds of each call (its share of a whole search)."""

    def __init__(self, hook: Any) -> None:
        self.hook, self.cpu = hook, []
        self.__name__ = getattr(hook, "__name__", "rerank")

    def __call__(self, query: Any, candidates: Any) -> Any:
        out, cpu, _ = clocked(self.hook, query, candidates)
        self.cpu.append(cpu)
        return out


def end_to_end(
    searcher: Any,
    column: Any,
    queries: Sequence[Any],
    *,
    c: int = 200,
    stored_queries: int = 10,
    recompute_queries: int = 3,
    sources: Sequence[str] = tuple(MODES),
) -> dict[str, Any]:
    """Per candidate source, a whole ``Searcher.search`` (what ``query --rerank`` runs once its models
    are loaded: the query's retrieval, the candidates' rows, the rerank, the top 10) at ``c``
    candidates, with the stored-vector reranker and with today's recompute, each split into the rerank
    hook and the rest (retrieval); the stored hook further into the query vector and the gather + dot.
    Same searcher, same retrieval, same queries for both paths (interleaved, after a warm-up on the
    first query's 2 best candidates)."""
    from airsearch import Reranker, StoredReranker

    out: dict[str, Any] = {}
    for source in sources:
        mode = MODES[source]
        hooks = {"stored": TimedHook(StoredReranker(column)), "recompute": TimedHook(Reranker(column.method))}
        cpu: dict[str, list[float]] = {"stored": [], "recompute": []}
        wall: dict[str, list[float]] = {"stored": [], "recompute": []}
        for hook in hooks.values():  # warm-up (lazy loads, caches) on 2 candidates, not timed
            searcher.search(queries[:1], 2, candidates=2, rerank=hook, mode=mode)
            hook.cpu.clear()
        for i, q in enumerate(queries[1 : max(stored_queries, recompute_queries) + 1]):
            for name, hook in hooks.items():
                if i >= (stored_queries if name == "stored" else recompute_queries):
                    continue
                _, secs, w = clocked(searcher.search, [q], 10, candidates=c, rerank=hook, mode=mode)
                cpu[name].append(secs)
                wall[name].append(w)
        res: dict[str, Any] = {}
        for name, hook in hooks.items():
            res[name] = {
                "total_ms": ms(cpu[name]),
                "retrieval_ms": ms([t - h for t, h in zip(cpu[name], hook.cpu, strict=True)]),
                "rerank_ms": ms(hook.cpu),
                "wall_total_ms": ms(wall[name]),
                "queries": len(cpu[name]),
            }
        qv, gd = [], []
        for q in queries[1 : stored_queries + 1]:
            v, secs, _ = clocked(column.encode, [q])
            qv.append(secs)
            vectors = None if mode == "bm25" else searcher.encode([q])
            rids = searcher.retrieve([q], vectors, c, mode=mode)[0][1]
            _, secs, _ = clocked(lambda r=rids, x=v: column.row_vectors(r) @ x[0])
            gd.append(secs)
        res["stored"].update(query_vector_ms=ms(qv), gather_dot_ms=ms(gd))
        res["speedup"] = round(res["recompute"]["total_ms"] / res["stored"]["total_ms"], 1)
        out[source] = res
    return out


def distinct_rows(sample: Sequence[Any], n: int, seed: int = 0) -> list[Any]:
    """``n`` distinct training rows: the sample's rows, then rows pairing one sample row's prompt with
    another's response (seeded, each ordered pair at most once, the prompt row's metadata). Copies of
    rows would tie in every score, which makes recall at scale meaningless; these do not."""
    from airsearch import Example

    rng, out, seen = random.Random(seed), list(sample[:n]), set()
    while len(out) < n:
        a, b = rng.randrange(len(sample)), rng.randrange(len(sample))
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        pa, pb = sample[a], sample[b]
        out.append(Example(f"mix-{pa.id}-{pb.id}", pa.prompt, pb.response, dict(pa.metadata)))
    return out


def build_column(db: Path, lm: str, *, proj_dim: int, record: Path, **cfg: Any) -> dict[str, Any]:
    """Add the grad-cos column ``m_gradcos`` to ``db`` (resumes a killed build) and return its build
    cost, kept in ``record`` so that a rerun of the bench reports the first build's figures."""
    import json

    from airsearch import IndexStore, MethodColumnConfig, add_method_column

    if record.is_file() and "m_gradcos" in IndexStore(str(db)).open().dataset.schema.names:
        return json.loads(record.read_text())
    c = MethodColumnConfig(db=str(db), method="gradcos", lm=lm, proj_dim=proj_dim, **cfg)
    made, cpu, wall = clocked(add_method_column, c, show_progress=False)
    col = made.column
    stats = {
        "rows": col.rows,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "rows_per_cpu_second": round((col.rows - made.resumed_rows) / cpu, 1),  # a resumed build's part
        "resumed_rows": made.resumed_rows,
        "ann": col.ann,
        "dim": proj_dim,
        "bytes_per_row_float32": proj_dim * 4,
        "bytes_per_row_float16": proj_dim * 2,
        "params": cfg.get("params", "all"),
    }
    record.write_text(json.dumps(stats, indent=2, default=str) + "\n")
    return stats


def smollm2_section(lm: Path, work: Path, *, rows: int, proj_dim: int, encoder: str) -> dict[str, Any]:
    """Cost only, on SmolLM2-135M(-Instruct) LoRA gradients (rank 8 on q_proj / v_proj, the B
    matrices): build rows/s and bytes per row of a grad-cos column on ``rows`` sample rows, the
    query vector, an exact search over the column, and stored rerank against recompute at C=200
    (AirRep candidates)."""
    from airsearch import (
        ColumnSearcher,
        IndexConfig,
        Searcher,
        build_index,
        load_corpus,
        load_queries,
        sample_corpus_path,
        sample_queries_path,
        write_rows,
    )

    work.mkdir(parents=True, exist_ok=True)
    db = work / "db"
    if not (db / "corpus.lance").is_dir():
        sample = load_corpus(sample_corpus_path()).examples[:rows]
        build_index(
            IndexConfig(corpus=[str(write_rows(work / "rows.jsonl", sample))], db=str(db), encoder=encoder)
        )
    build = build_column(
        db,
        str(lm),
        proj_dim=proj_dim,
        record=work / "build.json",
        params="lora",
        ann_threshold=-1,
        chunk_size=32,
    )
    column = ColumnSearcher(str(db), None, "m_gradcos", str(lm), exact=True)
    queries = load_queries(sample_queries_path()).examples[:6]
    column.encode(queries[:1])
    qv, search = [], []
    for q in queries[1:]:
        v, secs, _ = clocked(column.encode, [q])
        qv.append(secs)
        _, secs, _ = clocked(column.top_k, v, 10)
        search.append(secs)
    searcher = Searcher(str(db), fast=True)
    e2e = end_to_end(
        searcher,
        column,
        queries,
        c=min(200, build["rows"]),
        stored_queries=5,
        recompute_queries=1,
        sources=("airrep",),
    )
    return {
        "lm": f"{lm.name} ({column.method.ck.featurizers[0].gm.num_params:,} LoRA gradient parameters)",
        "build": build,
        "query_vector_ms": ms(qv),
        "column_exact_search_ms": ms(search),
        "end_to_end": e2e,
    }
