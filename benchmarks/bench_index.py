"""Index benchmark: build time and query p50/p95 at 10k / 100k / 1M rows, exact vs ANN, recall@10.

Embeddings are real: the bundled sample corpus (3,000 NI v1 rows) and its 200 held-out queries encoded
once with the default AirRep encoder (all-MiniLM-L6-v2) and cached. Larger tables are synthesised from
them: each row is a real corpus embedding plus Gaussian jitter (0.25 x the per-dimension std), so the
10k / 100k / 1M tables keep the real embeddings' geometry; this is said in the results. Queries are the
real held-out query embeddings. Metric: dot product (AirRep scores). Exact search streams the Lance
table in blocks (FAISS flat inner product per block); ANN goes through LanceDB with the refine step.

    python benchmarks/bench_index.py [--sizes 10000 100000 1000000] [--types IVF_PQ IVF_HNSW_SQ] [--out DIR]
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from bench_options import RESULTS, bench_parser

from airsearch import (
    AirRepEncoder,
    AnnConfig,
    Example,
    IndexStore,
    Searcher,
    TableMeta,
    build_ann_index,
    load_corpus,
    load_queries,
    sample_corpus_path,
    sample_queries_path,
)

JITTER = 0.25


def real_embeddings(
    cache: Path, encoder: str | None = None, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The sample corpus (its first ``rows``) and its held-out queries encoded with ``encoder`` (default:
    the packaged AirRep), cached in ``cache`` (the file names say which encoder and rows when not the
    defaults)."""
    cache.mkdir(parents=True, exist_ok=True)
    tag = "" if encoder is None and rows is None else f"_{Path(encoder or 'default').name}_{rows or 'all'}"
    c, q = cache / f"sample_corpus{tag}.npy", cache / f"sample_queries{tag}.npy"
    if not (c.exists() and q.exists()):
        enc = AirRepEncoder.load(encoder)
        np.save(c, enc.encode(load_corpus(sample_corpus_path()).examples[:rows]))
        np.save(q, enc.encode(load_queries(sample_queries_path()).examples[:rows]))
    return np.load(c), np.load(q)


def bench_meta(dim: int) -> TableMeta:
    """The table metadata of a benchmark table of ready-made vectors (no encoder ran)."""
    return TableMeta(
        encoder_fingerprint="bench",
        encoder={"base_encoder": "default:all-MiniLM-L6-v2"},
        template="airrep-question-answer-v1",
        dim=dim,
        columns={},
    )


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
    builds: list,
    n_exact: int,
    n_ann: int,
) -> dict:
    out: dict = {"rows": n, "exact": {}, "ann": []}
    store = IndexStore(root / f"db_{n}", create=True)
    meta = bench_meta(base.shape[1])
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
    for index_type, parts, searches in builds:
        tname = f"{index_type.lower()}_{parts or 'auto'}"
        shutil.copytree(ds.uri, store.path / f"{tname}.lance")
        t = store.open(tname)
        cfg = AnnConfig(
            threshold=0, index_type=index_type, num_partitions=int(np.sqrt(n)) if parts == "sqrt" else parts
        )
        t0 = time.perf_counter()
        rec = build_ann_index(t.table, cfg)
        build = round(time.perf_counter() - t0, 2)
        t = store.open(tname)
        for params in searches:
            t.meta.ann = {**rec, **params}
            st, found = time_queries(Searcher.for_vectors(t), queries[:n_ann])
            row = {
                "type": index_type,
                "num_partitions": rec["num_partitions"],
                "build_seconds": build,
                **params,
                **st,
                "recall@10": round(recall(found, truth), 4),
                "queries": n_ann,
            }
            out["ann"].append(row)
            print(f"[{n}] {row}", flush=True)
        store.drop(tname)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS, work="runs/bench_index")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--types", nargs="+", default=["IVF_PQ", "IVF_HNSW_SQ"])
    ap.add_argument("--cache", default="runs/bench_cache")
    ap.add_argument("--encoder", default=None, help="AirRep folder (default: the packaged untrained AirRep)")
    ap.add_argument("--sample-rows", type=int, default=None, help="encode only the first N sample rows")
    ap.add_argument("--rewrite", action="store_true", help="only rewrite index.md from index.json")
    ap.add_argument(
        "--merge", action="store_true", help="add to the existing results (same sizes: more ANN rows)"
    )
    args = ap.parse_args(argv)
    if args.rewrite:
        write_results(json.loads((args.out / "index.json").read_text()), args.out)
        return 0
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    base, queries = real_embeddings(Path(args.cache), args.encoder, args.sample_rows)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    hnsw = [{"nprobes": 8, "refine_factor": r, "ef": ef} for r, ef in ((10, 150), (20, 300), (50, 500))]
    pq = [{"nprobes": p, "refine_factor": r} for p, r in ((50, 10), (100, 20))]
    plans = {  # (index type, partitions: None = the AnnConfig default, "sqrt", or a number, searches)
        "small": [
            ("IVF_HNSW_SQ", None, hnsw),
            ("IVF_HNSW_SQ", "sqrt", [{"nprobes": 50, "refine_factor": 10, "ef": 150}]),
            ("IVF_PQ", None, pq),
        ],
        "big": [
            (
                "IVF_HNSW_SQ",
                None,
                [
                    {"nprobes": 8, "refine_factor": r, "ef": ef}
                    for r, ef in ((20, 300), (100, 1000), (200, 2000))
                ],
            )
        ],
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
    previous = json.loads((args.out / "index.json").read_text()) if args.merge else {"sizes": []}
    results["sizes"] = [s for s in previous["sizes"] if s["rows"] not in args.sizes]
    for n in args.sizes:
        big = n >= 1_000_000
        plan = [b for b in plans["big" if big else "small"] if b[0] in args.types]
        results["sizes"].append(
            bench_size(work, n, base, queries, plan, n_exact=20 if big else 50, n_ann=100)
        )
        shutil.rmtree(work / f"db_{n}", ignore_errors=True)
        old = [s for s in previous["sizes"] if s["rows"] == n]
        if old:  # keep the earlier ANN rows of this size too
            key = ("type", "num_partitions", "nprobes", "refine_factor", "ef")
            new = results["sizes"][-1]["ann"]
            seen = {tuple(a.get(k) for k in key) for a in new}
            results["sizes"][-1]["ann"] = [
                a for a in old[0]["ann"] if tuple(a.get(k) for k in key) not in seen
            ] + new
        results["sizes"].sort(key=lambda s: s["rows"])
        write_results(results, args.out)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def write_results(results: dict, out: Path) -> None:
    """Write ``index.json`` and the Markdown table (``--rewrite`` regenerates it from the JSON)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Index benchmark (`benchmarks/bench_index.py`)",
        "",
        f"Machine: {results['machine']}.",
        f"Embeddings: {results['embeddings']}.",
        "Metric: dot product, k = 10; recall@10 against exact search.",
        "",
        "| rows | search | partitions | build s | nprobes | refine | ef | p50 ms | p95 ms | recall@10 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["sizes"]:
        e = s["exact"]
        lines.append(
            f"| {s['rows']:,} | exact | - | {s['write_seconds']} (write) | - | - | - | {e['p50_ms']} | "
            f"{e['p95_ms']} | 1.0 |"
        )
        for a in s["ann"]:
            lines.append(
                f"| {s['rows']:,} | {a['type']} | {a['num_partitions']} | {a['build_seconds']} | "
                f"{a.get('nprobes')} | {a.get('refine_factor')} | {a.get('ef') or '-'} | {a['p50_ms']} | "
                f"{a['p95_ms']} | {a['recall@10']} |"
            )
    lines += [
        "",
        "Exact search streams the table's vectors from Lance in 65,536-row blocks (FAISS flat inner",
        "product per block); ANN goes through LanceDB (`distance_type('dot')`, `refine_factor` re-scores",
        "`refine_factor x k` candidates with the stored float32 vectors) and the scores returned are exact dot",
        "products of the rows found. `build s` for exact is the table write (with the rows' ids); for ANN it",
        "is the index training + write on top of it. Query times are single queries, one after another.",
        "",
        "**Choice.** IVF_HNSW_SQ with few partitions (`max(4, rows / 125k)`), all probed (`nprobes 8`),",
        "and a wide refine is the default: it builds faster than IVF_PQ and, at equal latency, recalls more;",
        "IVF_PQ's 8-bit product codes lose too much on these 384-d embeddings for its refine step to recover",
        "(see the rows above). The synthetic-from-real tables are harder than real data: each real row has",
        "hundreds of jittered near-duplicates whose scores nearly tie.",
        "",
        "**Search settings by table size** (`airsearch.indexers.ann.search_defaults`): refine 20 / ef 300 below",
        "500k rows (recall@10 0.976 at 100k), refine 100 / ef 1000 from 500k rows (0.958 at 1M, p50 121 ms);",
        "refine 20 falls to 0.925 at 1M. Every real row has about 333 jittered copies in the 1M table, so",
        "its top-10 scores nearly tie; the two 1M builds (867 s, 620 s) differ only in machine load.",
        "Times were taken while other engineers' jobs shared the 2 cores (load average about 6 to 10).",
    ]
    (out / "index.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
