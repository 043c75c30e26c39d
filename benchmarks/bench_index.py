"""Index benchmark: build time and query p50/p95 at 10k / 100k / 1M rows, exact vs ANN, recall@10.

Embeddings are real: the bundled sample corpus (3,000 NI v1 rows) and its 200 held-out queries encoded
once with the default AirRep encoder (all-MiniLM-L6-v2) and cached. Larger tables are synthesised from
them: each row is a real corpus embedding plus Gaussian jitter (0.25 x the per-dimension std), so the
10k / 100k / 1M tables keep the real embeddings' geometry; this is said in the results. Queries are the
real held-out query embeddings. Metric: dot product (AirRep scores). Exact search streams the Lance
table in blocks (FAISS flat inner product per block); ANN goes through LanceDB with the refine step.

    python benchmarks/bench_index.py [--sizes 10000 100000 1000000] [--types IVF_PQ IVF_HNSW_SQ]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airsearch.data import sample_corpus_path, sample_queries_path  # noqa: E402
from airsearch.data.corpus import load_corpus, load_queries  # noqa: E402
from airsearch.data.example import Example  # noqa: E402
from indexers.ann import AnnConfig  # noqa: E402
from indexers.query import Searcher  # noqa: E402
from indexers.store import IndexStore, TableMeta  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
JITTER = 0.25


def real_embeddings(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    cache.mkdir(parents=True, exist_ok=True)
    c, q = cache / "sample_corpus.npy", cache / "sample_queries.npy"
    if not (c.exists() and q.exists()):
        from airsearch.encoder import AirRepEncoder

        enc = AirRepEncoder.load(None)
        np.save(c, enc.encode(load_corpus(sample_corpus_path()).examples))
        np.save(q, enc.encode(load_queries(sample_queries_path()).examples))
    return np.load(c), np.load(q)


def synth_chunks(base: np.ndarray, n: int, seed: int, chunk: int = 50_000):
    rng = np.random.default_rng(seed)
    std = base.std(axis=0, keepdims=True)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        if start == 0 and n >= len(base):  # the real rows themselves come first
            rows = np.concatenate([base, base[rng.integers(0, len(base), m - len(base))]])
            noise = np.concatenate([np.zeros_like(base), rng.normal(size=(m - len(base), base.shape[1]))])
        else:
            rows, noise = base[rng.integers(0, len(base), m)], rng.normal(size=(m, base.shape[1]))
        vecs = (rows + JITTER * std * noise).astype(np.float32)
        yield [Example(f"s{start + i}", "", "") for i in range(m)], vecs


def percentiles(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(1000 * float(np.percentile(times, 50)), 2),
        "p95_ms": round(1000 * float(np.percentile(times, 95)), 2),
    }


def time_queries(searcher: Searcher, queries: np.ndarray, k: int = 10) -> tuple[dict[str, float], np.ndarray]:
    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, rid = searcher.top_k(q[None, :], k)
        times.append(time.perf_counter() - t0)
        ids.append(rid[0])
    return percentiles(times), np.stack(ids)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def bench_size(
    root: Path,
    n: int,
    base: np.ndarray,
    queries: np.ndarray,
    types: list[str],
    n_exact: int,
    n_ann: int,
    configs: dict[str, list[dict]],
) -> dict:
    out: dict = {"rows": n, "exact": {}, "ann": []}
    store = IndexStore(root / f"db_{n}", create=True)
    meta = TableMeta(
        encoder_fingerprint="bench",
        encoder={"base_encoder": "default:all-MiniLM-L6-v2"},
        template="airrep-question-answer-v1",
        dim=base.shape[1],
        columns={},
    )
    t0 = time.perf_counter()
    table = store.create("exact", synth_chunks(base, n, seed=n), meta)
    out["write_seconds"] = round(time.perf_counter() - t0, 2)
    exact = Searcher.for_vectors(table, exact=True)
    stats, truth = time_queries(exact, queries[:n_exact])
    out["exact"] = {**stats, "queries": n_exact, "backend": "faiss flat IP per Lance block"}
    print(f"[{n}] write {out['write_seconds']} s, exact {stats}", flush=True)
    if n_ann > n_exact:  # ground truth for the rest of the ANN queries
        _, more = exact.top_k(queries[n_exact:n_ann], 10)
        truth = np.concatenate([truth, more])
    ds = table.dataset
    for index_type in types:
        tname = index_type.lower()
        shutil.copytree(ds.uri, store.path / f"{tname}.lance")
        t = store.open(tname)
        cfg = AnnConfig(threshold=0, index_type=index_type)
        t0 = time.perf_counter()
        from indexers import ann

        rec = ann.build(t.table, cfg)
        build = round(time.perf_counter() - t0, 2)
        t = store.open(tname)
        for params in configs.get(index_type, [{}]):
            t.meta.ann = {**rec, **params}
            s = Searcher.for_vectors(t)
            st, found = time_queries(s, queries[:n_ann])
            row = {
                "type": index_type,
                "build_seconds": build,
                **params,
                **st,
                "recall@10": round(recall(found, truth), 4),
                "queries": n_ann,
                "num_partitions": rec["num_partitions"],
            }
            out["ann"].append(row)
            print(f"[{n}] {row}", flush=True)
        store.drop(tname)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--types", nargs="+", default=["IVF_PQ", "IVF_HNSW_SQ"])
    ap.add_argument("--big-types", nargs="+", default=["IVF_HNSW_SQ"], help="ANN types run at >= 1M rows")
    ap.add_argument("--work", default="runs/bench_index")
    ap.add_argument("--cache", default="runs/bench_cache")
    args = ap.parse_args()
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    base, queries = real_embeddings(Path(args.cache))
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    configs = {
        "IVF_PQ": [{"nprobes": 20, "refine_factor": 5}, {"nprobes": 40, "refine_factor": 10}],
        "IVF_HNSW_SQ": [{"nprobes": 10, "refine_factor": 2}, {"nprobes": 20, "refine_factor": 5}],
        "IVF_HNSW_PQ": [{"nprobes": 20, "refine_factor": 5}],
        "IVF_SQ": [{"nprobes": 20, "refine_factor": 5}],
    }
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
        "embeddings": f"real: {len(base)} sample-corpus rows + {len(queries)} held-out queries encoded with "
        f"all-MiniLM-L6-v2 (AirRep identity projection); larger tables = real rows + Gaussian jitter "
        f"({JITTER} x per-dim std), synthetic-from-real",
        "metric": "dot",
        "k": 10,
        "sizes": [],
    }
    for n in args.sizes:
        big = n >= 1_000_000
        results["sizes"].append(
            bench_size(
                work,
                n,
                base,
                queries,
                args.big_types if big else args.types,
                n_exact=20 if big else 50,
                n_ann=100,
                configs=configs,
            )
        )
        shutil.rmtree(work / f"db_{n}", ignore_errors=True)
        write_results(results)
    shutil.rmtree(work, ignore_errors=True)


def write_results(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "index.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Index benchmark (`benchmarks/bench_index.py`)",
        "",
        f"Machine: {results['machine']}.",
        f"Embeddings: {results['embeddings']}.",
        "Metric: dot product, k = 10; recall@10 against exact search.",
        "",
        "| rows | search | build s | nprobes | refine | p50 ms | p95 ms | recall@10 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["sizes"]:
        e = s["exact"]
        lines.append(
            f"| {s['rows']:,} | exact | {s['write_seconds']} (write) | - | - | {e['p50_ms']} | {e['p95_ms']} | 1.0 |"
        )
        for a in s["ann"]:
            lines.append(
                f"| {s['rows']:,} | {a['type']} | {a['build_seconds']} | {a.get('nprobes')} | "
                f"{a.get('refine_factor')} | {a['p50_ms']} | {a['p95_ms']} | {a['recall@10']} |"
            )
    (RESULTS / "index.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
