"""Method columns vs retrieve-then-rerank: recall, per-query latency, build cost (issue 25).

On the bundled sample (3,000 rows, default AirRep, tiny ~0.9M-parameter LM pre-trained on the sample),
with a grad-cos column (every parameter, sparse JL projection to ``--proj-dim``):

* recall@10 against the exact method top-10 (exact search over the column, which
  ``tests/test_method_columns.py`` shows equal to ``airsearch attribute``'s scores), for AirRep /
  BM25 / hybrid candidates reranked from the stored vectors at C in {50, 200, 1000}, and for the
  column's own ANN index. Recall counts a returned row when its exact score reaches the 10th best
  (ties with duplicate rows count as found);
* per-query latency (median over the queries) of each path at 3,000 rows and at 100,000 rows (the
  3,000 rows replicated with new ids, vectors copied: a latency table, not a recall one), split into
  the query vector (one forward + backward pass) and the search;
* today's rerank (recompute every candidate's gradient) at C=200, for the speed-up of stored vectors;
* build cost (seconds, rows/s) and bytes per row of the column (float32 and float16).

Run: ``python benchmarks/bench_method_columns.py [--out DIR]`` (writes benchmarks/results/method_columns.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from bench_options import RESULTS, WORK, bench_parser

CS = (50, 200, 1000)


def recall(found_scores: np.ndarray, exact_scores: np.ndarray) -> float:
    """Share of the top-10 returned whose exact score reaches the exact 10th best (tie-robust)."""
    bar = exact_scores[min(9, len(exact_scores) - 1)]
    tol = 1e-5 * max(abs(bar), 1e-12)
    return float(np.mean(np.asarray(found_scores[:10]) >= bar - tol))


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS, work=WORK / "method_columns")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--lm-steps", type=int, default=300)
    ap.add_argument("--proj-dim", type=int, default=2048)
    ap.add_argument("--recompute-queries", type=int, default=3)
    ap.add_argument("--big-rows", type=int, default=100_000)
    ap.add_argument(
        "--rerank-split",
        action="store_true",
        help="on the built work dir: time the stored rerank's gather + dot and the recompute of 200 train "
        "gradients (without the query vector both need) and add them to the results",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--sample-rows", type=int, default=None, help="index only the first N sample rows")
    ap.add_argument(
        "--encoder", default="default", help="AirRep folder of the index (default: the packaged one)"
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    if args.rerank_split:
        rerank_split(args)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    from airsearch import (
        ColumnSearcher,
        IndexConfig,
        IndexStore,
        MethodColumnConfig,
        Reranker,
        Searcher,
        TinyLMConfig,
        add_method_column,
        build_index,
        build_tiny_lm,
        find_column,
        load_corpus,
        load_queries,
        sample_corpus_path,
        sample_queries_path,
        write_rows,
    )

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    lm = work / "lm"
    t0 = time.perf_counter()
    sample = load_corpus(sample_corpus_path()).examples[: args.sample_rows]
    if not (lm / "config.json").exists():
        build_tiny_lm(sample, lm, TinyLMConfig(steps=args.lm_steps))
    out: dict = {
        "machine": f"{platform.machine()} 2-core AMD EPYC (avx512_bf16), CPU only, shared with other jobs",
        "lm": f"tiny Llama pre-trained on the sample ({args.lm_steps} steps)",
        "method": f"gradcos, params all, sparse JL projection to {args.proj_dim}",
        "lm_seconds": round(time.perf_counter() - t0, 1),
    }
    db = work / "db3k"
    if not (db / "corpus.lance").is_dir():  # resumes a killed build
        rows = sample_corpus_path() if args.sample_rows is None else write_rows(work / "rows.jsonl", sample)
        build_index(IndexConfig(corpus=[str(rows)], db=str(db), encoder=args.encoder, ann_threshold=-1))
    store_path = str(db)
    col = "m_gradcos"
    if col not in IndexStore(store_path).open().dataset.schema.names:
        cfg = MethodColumnConfig(
            db=store_path, method="gradcos", lm=str(lm), proj_dim=args.proj_dim, ann_threshold=1
        )
        made, secs = timed(add_method_column, cfg, show_progress=False)
        out["build"] = {
            "rows": made.column.rows,
            "seconds": round(secs, 1),
            "rows_per_second": round(made.column.rows / secs, 1),
            "ann_seconds": (made.column.ann or {}).get("build_seconds"),
            "ann": made.column.ann,
            "bytes_per_row_float32": args.proj_dim * 4,
            "bytes_per_row_float16": args.proj_dim * 2,
            "airrep_bytes_per_row": 384 * 4,
        }
    queries = load_queries(sample_queries_path()).examples[: args.queries]
    airrep = Searcher(store_path)
    exact = ColumnSearcher(store_path, None, col, str(lm), exact=True)
    annc = ColumnSearcher(store_path, None, col, str(lm), method=exact.method)
    out["small"] = measure(queries, airrep, exact, annc, args, recall_too=True)
    # today's rerank: recompute every candidate's gradient (the Reranker of query --rerank)
    recompute = Reranker(exact.method)
    times = []
    for q in queries[: args.recompute_queries]:
        found = airrep.retrieve([q], airrep.encode([q]), 200)[0]
        cands = airrep.candidates(*found)
        _, secs = timed(recompute, q, cands)
        times.append(secs)
    out["recompute_rerank_c200_ms"] = round(1000 * statistics.median(times), 1)
    write_results(out, args)  # the 3,000-row figures, before the long 100k part
    if args.big_rows <= 0:
        return 0
    big = work / "db100k"
    if not (big / "corpus.lance").is_dir():
        replicate(db, big, args.big_rows)
    spec = find_column(IndexStore(str(big)).open(), col)
    out["big_ann"] = spec.ann
    airrep_b = Searcher(str(big))
    exact_b = ColumnSearcher(str(big), None, col, str(lm), exact=True, method=exact.method)
    ann_b = ColumnSearcher(str(big), None, col, str(lm), method=exact.method)
    out["big"] = measure(queries[:10], airrep_b, exact_b, ann_b, args, recall_too=True)
    out["big"]["rows"] = IndexStore(str(big)).open().count()
    write_results(out, args)
    return 0


def measure(queries, airrep, exact, annc, args, *, recall_too: bool) -> dict:
    """Median per-query milliseconds of each path and (``recall_too``) mean recall@10."""
    lat: dict[str, list[float]] = {}
    rec: dict[str, list[float]] = {}

    def add(d, k, v):
        d.setdefault(k, []).append(v)

    for q in queries:
        qv, secs = timed(exact.encode, [q])
        add(lat, "query_vector", secs)
        (ex_scores, _), secs = timed(exact.top_k, qv, 10)
        add(lat, "column_exact_search", secs)
        (an_scores, _), secs = timed(annc.top_k, qv, 10)
        add(lat, "column_ann_search", secs)
        add(rec, "column_ann", recall(an_scores[0], ex_scores[0]))
        av, secs_enc = timed(airrep.encode, [q])
        for mode in ("vector", "bm25", "hybrid"):
            for c in CS:
                found, secs = timed(airrep.retrieve, [q], av, c, mode=mode)
                rids = found[0][1]
                t0 = time.perf_counter()
                s = exact.row_vectors(rids) @ qv[0]
                top = np.sort(s)[::-1][:10]
                gather = time.perf_counter() - t0
                name = {"vector": "airrep", "bm25": "bm25", "hybrid": "hybrid"}[mode]
                add(lat, f"{name}_rerank_c{c}_search", secs + gather + (secs_enc if mode != "bm25" else 0))
                add(rec, f"{name}_rerank_c{c}", recall(top, ex_scores[0]))
    med = {k: round(1000 * statistics.median(v), 1) for k, v in lat.items()}
    return {"latency_ms": med, "recall_at_10": {k: round(float(np.mean(v)), 3) for k, v in rec.items()}}


def rerank_split(args: argparse.Namespace) -> None:
    """The two parts of a rerank at C=200 that differ between stored and recomputed: gathering 200 row
    vectors and one product (3,000 and 100,000 rows), against 200 train gradients (median of queries)."""
    import torch

    from airsearch import ColumnSearcher, Searcher, load_queries, sample_queries_path

    torch.set_num_threads(args.threads)
    work, qs = args.work, load_queries(sample_queries_path()).examples[:5]
    exact = ColumnSearcher(str(work / "db3k"), None, "m_gradcos", str(work / "lm"), exact=True)
    split = {}
    for name in ("db3k", "db100k"):
        cs = ColumnSearcher(str(work / name), None, "m_gradcos", None, exact=True, method=exact.method)
        s, times = Searcher(str(work / name)), []
        for q in qs:
            qv = cs.encode([q])[0]
            rids = s.retrieve([q], s.encode([q]), 200)[0][1]
            _, secs = timed(lambda r=rids, v=qv, c=cs: c.row_vectors(r) @ v)
            times.append(secs)
        split[f"{name}_gather_dot_c200_ms"] = round(1000 * statistics.median(times), 2)
    s, times = Searcher(str(work / "db3k")), []
    for q in qs[:2]:
        qv = torch.from_numpy(exact.encode([q]))
        cands = [c.example() for c in s.candidates(*s.retrieve([q], s.encode([q]), 200)[0])]
        _, secs = timed(exact.method.score_against, cands, qv)
        times.append(secs)
    split["recompute_200_train_gradients_ms"] = round(1000 * statistics.median(times), 1)
    path = args.out / "method_columns.json"
    out = json.loads(path.read_text())
    out["rerank_split"] = split
    write_results(out, args)


def replicate(src: Path, dst: Path, rows: int) -> None:
    """``rows`` rows: the source table's rows, then copies with new ids (vectors copied), with the
    column's ANN index, the AirRep ANN index and the BM25 index built as ``index`` would."""
    import dataclasses

    import lancedb
    import pyarrow as pa

    from airsearch import AnnConfig, build_column_index, build_text_index, column_specs

    src_t = lancedb.connect(str(src)).open_table("corpus")
    base = src_t.to_arrow()
    parts, n, r = [base], base.num_rows, 0
    while n < rows:
        r += 1
        take = base.slice(0, min(base.num_rows, rows - n))
        ids = pa.array([f"{i}#{r}" for i in take.column("id").to_pylist()], pa.string())
        parts.append(take.set_column(take.schema.get_field_index("id"), take.schema.field("id"), ids))
        n += take.num_rows
    data = pa.concat_tables(parts)
    db = lancedb.connect(str(dst))
    table = db.create_table("corpus", data=data, schema=base.schema)
    build_text_index(table)  # AirRep's vectors stay exact (no ANN index): 100k x 384 is a ~30 ms scan
    for spec in column_specs(base.schema).values():
        build_column_index(table, dataclasses.replace(spec, rows=data.num_rows), AnnConfig(threshold=1))


def write_results(out: dict, args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "method_columns.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    s, b = out["small"], out.get("big") or {"rows": 0, "latency_ms": {}}
    lines = [
        "# Method columns vs retrieve-then-rerank (`benchmarks/bench_method_columns.py`)",
        "",
        f"Machine: {out['machine']}. LM: {out['lm']}. Column: {out['method']}.",
        f"Sample: 3,000 rows, {args.queries} held-out queries; exact reference: exact search over the column.",
        "",
        "## Recall@10 of the exact method top-10 (3,000 rows)",
        "",
        "| candidates from | C=50 | C=200 | C=1000 |",
        "|---|---|---|---|",
    ]
    for name in ("airrep", "bm25", "hybrid"):
        lines.append(
            f"| {name} -> rerank | "
            + " | ".join(str(s["recall_at_10"][f"{name}_rerank_c{c}"]) for c in CS)
            + " |"
        )
    lines += [
        "",
        f"Column ANN ({(out.get('build') or {}).get('ann', {}).get('type', '?')}): recall@10 "
        f"**{s['recall_at_10']['column_ann']}** at 3,000 rows.",
        "",
        "## Per-query latency, median ms",
        "",
        "`query_vector`: the method's query vector (one forward + backward pass). `column_*_search`: the "
        "search over the column given that vector. `*_rerank_cC_search`: the candidates' retrieval (with "
        "the AirRep encode of the query for airrep / hybrid), the gather of their stored row vectors and "
        "the product; a query adds `query_vector` to any of them. AirRep's vectors are searched exactly "
        "at both sizes (no ANN index on the replicated table).",
        "",
        "| path | 3,000 rows | "
        + (f"{b['rows']:,} rows (replicated) |" if b["rows"] else "100k (not run) |"),
        "|---|---|---|",
    ]
    for key in s["latency_ms"]:
        lines.append(f"| {key} | {s['latency_ms'][key]} | {b['latency_ms'].get(key, '-')} |")
    qv = s["latency_ms"]["query_vector"]
    lines += [
        "",
        f"A method-column query costs the query vector ({qv} ms) plus the search. Today's rerank "
        f"(recompute every candidate's gradient) at C=200: {out['recompute_rerank_c200_ms']} ms per query; "
        f"from stored vectors (AirRep retrieval + gather + dot): {s['latency_ms']['airrep_rerank_c200_search']} ms "
        f"+ the query vector: **{out['recompute_rerank_c200_ms'] / (qv + s['latency_ms']['airrep_rerank_c200_search']):.0f}x** faster.",
        "",
    ]
    if out.get("rerank_split"):
        sp = out["rerank_split"]
        lines += [
            "The rerank step alone (what differs; both paths need the query vector): gather 200 stored row "
            f"vectors and one product, {sp['db3k_gather_dot_c200_ms']} ms at 3,000 rows and "
            f"{sp['db100k_gather_dot_c200_ms']} ms at 100,000, against "
            f"{sp['recompute_200_train_gradients_ms']:,} ms to recompute 200 train gradients "
            f"(**{sp['recompute_200_train_gradients_ms'] / sp['db3k_gather_dot_c200_ms']:,.0f}x**; "
            "measured later under another load, `--rerank-split`).",
            "",
            "At 100,000 rows the rows are copies (33 of each), so recall there is not meaningful (ties of "
            "copies); the 100k figures are latencies. The query vector (one forward + backward of one "
            f"example) costs as much as {qv / (sp['recompute_200_train_gradients_ms'] / 200):.1f} batched "
            "train gradients, and the AirRep retrieval (an encode and a search) about as much again: "
            "together they cap the whole-query speed-up of stored reranking.",
            "",
        ]
    if out.get("build"):
        bd = out["build"]
        lines += [
            "## Build cost and size",
            "",
            f"grad-cos column, {bd['rows']:,} rows: {bd['seconds']} s ({bd['rows_per_second']} rows/s), "
            f"ANN index {bd['ann_seconds']} s. Bytes per row: {bd['bytes_per_row_float32']:,} (float32), "
            f"{bd['bytes_per_row_float16']:,} (float16); AirRep's vector: {bd['airrep_bytes_per_row']:,}.",
            f"100k-row column ANN ({(out.get('big_ann') or {}).get('type')}): built in "
            f"{(out.get('big_ann') or {}).get('build_seconds')} s.",
            "",
        ]
    (args.out / "method_columns.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
