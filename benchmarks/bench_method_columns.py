"""Method columns vs retrieve-then-rerank: recall, per-query cost, build cost (issue 25).

On the bundled sample (3,000 rows, default AirRep, tiny ~0.9M-parameter LM pre-trained on the sample),
with a grad-cos column (every parameter, sparse JL projection to ``--proj-dim``):

* recall@10 against the exact method top-10 (exact search over the column, which
  ``tests/test_method_columns.py`` shows equal to ``airsearch attribute``'s scores), for AirRep /
  BM25 / hybrid candidates reranked from the stored vectors at C in {50, 200, 1000}, and for the
  column's own ANN index. Recall counts a returned row when its exact score reaches the 10th best;
* per-query cost (median CPU ms, see ``method_columns_parts``) of each path, split into the query
  vector (one forward + backward pass) and the search;
* a whole ``query --rerank`` search at C=200 per candidate source, from stored vectors against today's
  recompute (same retrieval), split by stage;
* the same on ``--big-rows`` distinct rows (the sample's rows, then rows pairing one row's prompt with
  another's response: no copies, so recall there means something);
* latency only at ``--latency-rows`` rows (100,000): the sample table's rows and stored vectors copied,
  the column's ANN over every row (``method_columns_latency``), against the goal query vector + 50 ms;
* build cost (CPU seconds, rows per CPU second) and bytes per row of the column (float32 and float16);
* ``--smollm2 DIR``: the SmolLM2-135M LoRA cost section (a converted folder, ``airsearch lm import-gguf``).

Run: ``python benchmarks/bench_method_columns.py [--big-rows N] [--parts small,big,latency]``, then
``python benchmarks/bench_method_columns.py --smollm2 DIR`` (each run adds its part to
benchmarks/results/method_columns.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from bench_options import RESULTS, WORK, bench_parser
from method_columns_latency import latency_lines, latency_part
from method_columns_parts import (
    CS,
    MODES,
    build_column,
    clocked,
    distinct_rows,
    end_to_end,
    measure,
    smollm2_section,
)

PARTS = ("small", "big", "latency")
COL = "m_gradcos"
MACHINE = (
    f"{platform.machine()} 2-core AMD EPYC (avx512_bf16), CPU only, shared with other agents and loaded by a "
    "long evaluation run"
)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS, work=WORK / "method_columns")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--lm-steps", type=int, default=300)
    ap.add_argument("--proj-dim", type=int, default=2048)
    ap.add_argument("--recompute-queries", type=int, default=3)
    ap.add_argument(
        "--big-rows", type=int, default=6000, help="rows of the large table (distinct rows; 0: skip it)"
    )
    ap.add_argument(
        "--latency-rows", type=int, default=100_000, help="rows of the latency table (copies; 0: skip it)"
    )
    ap.add_argument("--latency-queries", type=int, default=10, help="queries timed on the latency table")
    ap.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated: small (the sample table), big (--big-rows), latency (--latency-rows)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (CPU time is the clock)")
    ap.add_argument("--sample-rows", type=int, default=None, help="index only the first N sample rows")
    ap.add_argument(
        "--encoder", default="default", help="AirRep folder of the index (default: the packaged one)"
    )
    ap.add_argument(
        "--smollm2",
        type=Path,
        default=None,
        metavar="DIR",
        help="only the SmolLM2-135M LoRA cost section, on this converted model folder "
        "(airsearch lm import-gguf), added to the existing results",
    )
    ap.add_argument("--smollm2-rows", type=int, default=256)
    ap.add_argument(
        "--render",
        nargs="*",
        type=Path,
        default=None,
        metavar="JSON",
        help="only write the page again from the results JSON, after adding the SmolLM2 section of "
        "these results files (a --smollm2 run with another --out)",
    )
    args = ap.parse_args(argv)
    wanted = args.parts.split(",")
    if not set(wanted) <= set(PARTS):
        ap.error(f"--parts: choose from {', '.join(PARTS)} (comma-separated), not {args.parts!r}")
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    if args.render is not None:
        for extra in args.render:
            save({"smollm2": json.loads(extra.read_text())["smollm2"]}, args)
        save({}, args)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    if args.smollm2 is not None:
        section = smollm2_section(
            args.smollm2,
            args.work / "smollm2",
            rows=args.smollm2_rows,
            proj_dim=args.proj_dim,
            encoder=args.encoder,
        )
        save({"smollm2": section}, args)
        return 0
    from airsearch import (
        ColumnSearcher,
        IndexConfig,
        Searcher,
        TinyLMConfig,
        build_index,
        build_tiny_lm,
        load_corpus,
        load_queries,
        sample_corpus_path,
        sample_queries_path,
        write_rows,
    )

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    lm = work / "lm"
    sample = load_corpus(sample_corpus_path()).examples[: args.sample_rows]
    if not (lm / "config.json").exists():
        build_tiny_lm(sample, lm, TinyLMConfig(steps=args.lm_steps))
    queries = load_queries(sample_queries_path()).examples[: args.queries]
    out: dict = {
        "machine": MACHINE,
        "clock": "CPU seconds of the process (time.process_time), torch on "
        f"{args.threads} thread(s); wall-clock medians beside them",
        "lm": f"tiny Llama pre-trained on the sample ({args.lm_steps} steps)",
        "method": f"gradcos, params all, sparse JL projection to {args.proj_dim}",
        "queries": len(queries),
    }
    sizes = {"small": None, "big": args.big_rows, "latency": args.latency_rows}
    parts = [(name, sizes[name]) for name in PARTS if name in wanted]
    path = args.out / "method_columns.json"
    prev = json.loads(path.read_text()) if path.is_file() else {}
    out.update({k: prev[k] for k in PARTS if k not in wanted and k in prev})  # keep the parts not run
    small = work / "db3k"
    for name, rows in parts:
        if rows is not None and rows <= 0:
            continue
        if name == "latency":
            qs = queries[: args.latency_queries]
            out[name] = latency_part(small, work / f"db{rows}_copies", rows, qs, COL)
            save(out, args)
            continue
        db = small if rows is None else work / f"db{rows // 1000}k"
        if rows is None and not (db / "corpus.lance").is_dir():  # resumes a killed build
            corpus = write_rows(work / f"{db.name}.jsonl", sample)
            build_index(IndexConfig(corpus=[str(corpus)], db=str(db), encoder=args.encoder))
        if rows is None:
            build = build_column(
                db, str(lm), proj_dim=args.proj_dim, record=work / "db3k_build.json", ann_threshold=1
            )
        else:  # the small table, then distinct rows appended (AirRep + the column, as `index --append --lm`)
            build = grow(small, db, distinct_rows(sample, rows)[len(sample) :], str(lm), args)
        airrep = Searcher(str(db), fast=True)
        exact = ColumnSearcher(str(db), None, COL, str(lm), exact=True)
        annc = ColumnSearcher(str(db), None, COL, str(lm), method=exact.method)
        part = measure(queries, airrep, exact, annc)
        part["rows"], part["build"] = build["rows"], build
        part["encoder"] = type(airrep.encoder).__name__
        part["end_to_end_c200"] = end_to_end(
            airrep,
            exact,
            queries,
            stored_queries=10,
            recompute_queries=args.recompute_queries if rows is None else 1,
        )
        out[name] = part
        save(out, args)  # the 3,000-row figures, before the long large-table part
    return 0


def grow(small: Path, db: Path, extra: list, lm: str, args: argparse.Namespace) -> dict:
    """``db``: a copy of the small table (its AirRep vectors and column) with ``extra`` rows appended by
    ``index --append --lm`` (each row's AirRep vector and column vector), then the column's ANN index
    rebuilt over every row; the append's cost, kept beside the table for a rerun."""
    import dataclasses
    import shutil

    from airsearch import (
        AnnConfig,
        IndexConfig,
        IndexStore,
        build_column_index,
        build_index,
        find_column,
        write_rows,
    )

    record = db.parent / f"{db.name}_build.json"
    if record.is_file():
        return json.loads(record.read_text())
    if not (db / "corpus.lance").is_dir():
        shutil.copytree(small, db)
    corpus = write_rows(db.parent / f"{db.name}_extra.jsonl", extra)
    cfg = IndexConfig(corpus=[str(corpus)], db=str(db), encoder=args.encoder, append=True, lm=lm)
    _, cpu, wall = clocked(build_index, cfg)
    table = IndexStore(str(db)).open()
    spec = dataclasses.replace(find_column(table, COL), rows=table.count())  # the index sized for every row
    (spec, ann_cpu, _) = clocked(build_column_index, table.table, spec, AnnConfig(threshold=1))
    stats = {
        "rows": table.count(),
        "appended_rows": len(extra),
        "append_cpu_seconds": round(cpu, 1),
        "append_wall_seconds": round(wall, 1),
        "append_rows_per_cpu_second": round(len(extra) / cpu, 1),
        "ann": spec.ann,
        "ann_cpu_seconds": round(ann_cpu, 1),
    }
    record.write_text(json.dumps(stats, indent=2, default=str) + "\n")
    return stats


def save(update: dict, args: argparse.Namespace) -> None:
    """Write the results JSON and page: the main run's figures replace the file's, keeping the SmolLM2
    section; the SmolLM2 run adds its section to them."""
    path = args.out / "method_columns.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    keep = {k: v for k, v in old.items() if k == "smollm2" or "smollm2" in update or not update}
    out = {**keep, **update}
    for part in ("small", "smollm2"):  # a resumed build's rate counts the rows it computed
        build = (out.get(part) or {}).get("build") or {}
        if "cpu_seconds" in build:
            build["rows_per_cpu_second"] = rate(build)
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    if "end_to_end_c200" in out.get("small", {}):  # a page needs the main run's figures
        (args.out / "method_columns.md").write_text(render(out))


def rate(build: dict) -> float:
    """Rows per CPU second of the rows a (possibly resumed) build computed."""
    return round((build["rows"] - build.get("resumed_rows", 0)) / build["cpu_seconds"], 1)


def resumed(build: dict) -> str:
    n = build.get("resumed_rows", 0)
    return f", for the last {build['rows'] - n:,} rows: the build was resumed after {n:,}" if n else ""


def render(out: dict) -> str:
    """The Markdown page of the results JSON."""
    s, b = out["small"], out.get("big")
    lines = [
        "# Method columns vs retrieve-then-rerank (`benchmarks/bench_method_columns.py`)",
        "",
        f"Machine: {out['machine']}. Clock: {out['clock']}. LM: {out['lm']}. Column: {out['method']}.",
        f"Queries: {out['queries']} held-out sample queries; exact reference: exact search over the column "
        "(equal to `airsearch attribute`'s scores, tests/test_method_columns.py).",
        "",
    ]
    for part in [p for p in (s, b) if p]:
        lines += [
            f"## Recall@10 of the exact method top-10 ({part['rows']:,} rows)",
            "",
            "| candidates from | C=50 | C=200 | C=1000 |",
            "|---|---|---|---|",
        ]
        for name in MODES:
            r = part["recall_at_10"]
            lines.append(
                f"| {name} -> rerank | " + " | ".join(str(r[f"{name}_rerank_c{c}"]) for c in CS) + " |"
            )
        ann = (part["build"].get("ann") or {}).get("type", "?")
        lines += ["", f"Column ANN ({ann}): recall@10 **{part['recall_at_10']['column_ann']}**.", ""]
    if b:
        lines += [
            f"The {b['rows']:,}-row table: the sample's 3,000 rows, then rows pairing one sample row's prompt "
            "with another's response (seeded, no pair twice), so no two rows are copies.",
            "",
        ]
    cols = [s] + ([b] if b else [])
    lines += [
        "## Per-query latency, median CPU ms",
        "",
        "`query_vector`: the method's query vector (one forward + backward pass). `column_*_search`: the "
        "search over the column given that vector. `airrep_query_encode`: the AirRep vector of the query "
        f"({s['encoder']}). `*_rerank_cC_search`: the candidates' retrieval (with the AirRep encode for "
        "airrep / hybrid), the gather of their stored row vectors and the product; a query adds "
        "`query_vector` to any of them. CPU time is steadier than wall time here but not immune to the "
        "load (the two vCPUs share caches with the evaluation run): the same query vector measures "
        f"{s['latency_ms']['query_vector']} ms in this table and "
        f"{s['end_to_end_c200']['bm25']['stored']['query_vector_ms']}-"
        f"{s['end_to_end_c200']['airrep']['stored']['query_vector_ms']} ms in the end-to-end runs below.",
        "",
        "| path | " + " | ".join(f"{p['rows']:,} rows" for p in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for key in s["latency_ms"]:
        lines.append(f"| {key} | " + " | ".join(str(p["latency_ms"].get(key, "-")) for p in cols) + " |")
    lines += latency_lines(out)
    lines += [
        "",
        "## Rerank from stored vectors vs today's recompute, C=200, end to end",
        "",
        "A whole `Searcher.search` as `query --rerank gradcos` runs it once its models are loaded (retrieval, "
        "the candidates' rows, the rerank, the top 10), the same retrieval for both paths. Stored: the "
        "query vector + gather + dot (`StoredReranker`). Recompute: today's path on a table without the "
        "column (`Reranker`: the query gradient and 200 train gradients). Median CPU ms per query.",
        "",
        "| rows | candidates | retrieval | stored: query vector | stored: gather + dot | stored total "
        "| recompute: rerank | recompute total | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in cols:
        for name, e in p["end_to_end_c200"].items():
            st, rc = e["stored"], e["recompute"]
            lines.append(
                f"| {p['rows']:,} | {name} | {st['retrieval_ms']} | {st['query_vector_ms']} | "
                f"{st['gather_dot_ms']} | {st['total_ms']} | {rc['rerank_ms']:,} | {rc['total_ms']:,} | "
                f"**{e['speedup']}x** |"
            )
    e = s["end_to_end_c200"]
    speed = {f"{n} ({p['rows']:,} rows)": v["speedup"] for p in cols for n, v in p["end_to_end_c200"].items()}
    met = [n for n, x in speed.items() if x >= 50]
    short = {n: x for n, x in speed.items() if x < 50}
    st, enc = e["airrep"]["stored"], s["latency_ms"]["airrep_query_encode"]
    lines += [
        "",
        f"Queries per source: {st['queries']} stored; recomputed: "
        + ", ".join(
            f"{p['end_to_end_c200']['airrep']['recompute']['queries']} ({p['rows']:,} rows)" for p in cols
        )
        + f". Wall clock (same runs, a loaded machine): stored {st['wall_total_ms']:,} ms, recompute "
        f"{e['airrep']['recompute']['wall_total_ms']:,} ms from AirRep candidates ({s['rows']:,} rows).",
        "",
        f"Goal >= 50x: met from {', '.join(met) or 'no source'}"
        + ("; " + ", ".join(f"{n} {x}x" for n, x in short.items()) + " short of it" if short else "")
        + f". A stored rerank is the retrieval (the AirRep query encode alone {enc} ms for airrep / hybrid; "
        f"BM25 {e['bm25']['stored']['retrieval_ms']} ms), the query vector ({st['query_vector_ms']} ms, one "
        f"forward + backward of one example) and the gather + dot ({st['gather_dot_ms']} ms); a recompute "
        f"adds 200 train gradients ({e['airrep']['recompute']['rerank_ms']:,} ms) to the same retrieval. "
        "So the speed-up is capped by (retrieval + recompute) / (retrieval + query vector + gather): "
        "the AirRep encode and the query vector, not the stored vectors, set it. On the larger table the "
        "retrieval (an exact AirRep scan of every row, the candidates' rows taken from more fragments after "
        "the append) and the gather grow by a few ms each, and that is what takes airrep / hybrid under 50x.",
        "",
        "## Build cost and size",
        "",
    ]
    for p in cols:
        bd = p["build"]
        if "appended_rows" in bd:
            lines.append(
                f"- {bd['rows']:,}-row table: {bd['appended_rows']:,} distinct rows appended with `index --append "
                f"--lm` (each row's AirRep vector and column vector): {bd['append_rows_per_cpu_second']} rows per "
                f"CPU second ({bd['append_cpu_seconds']} CPU s, {bd['append_wall_seconds']} s wall); the column's "
                f"ANN {(bd.get('ann') or {}).get('type')} over every row: {bd['ann_cpu_seconds']} CPU s."
            )
            continue
        lines.append(
            f"- grad-cos column, {bd['rows']:,} rows: {rate(bd)} rows per CPU second ({bd['cpu_seconds']} CPU s, "
            f"{bd['wall_seconds']} s wall{resumed(bd)}), ANN {(bd.get('ann') or {}).get('type')} built in "
            f"{(bd.get('ann') or {}).get('build_seconds')} s. Bytes per row: {bd['bytes_per_row_float32']:,} "
            f"(float32) or {bd['bytes_per_row_float16']:,} (float16, `--dtype float16`); AirRep's vector: 1,536."
        )
    sm = out.get("smollm2")
    if sm:
        bd, e = sm["build"], sm["end_to_end"]["airrep"]
        lines += [
            "",
            f"## SmolLM2-135M LoRA gradients (cost only, {bd['rows']} sample rows)",
            "",
            f"LM: {sm['lm']}; grad-cos, params lora (rank 8, q_proj / v_proj), sparse JL projection to "
            f"{bd['dim']}, float32.",
            "",
            f"- Column build: **{rate(bd)} rows per CPU second** ({bd['cpu_seconds']} CPU s, "
            f"{bd['wall_seconds']} s wall{resumed(bd)}); {bd['bytes_per_row_float32']:,} bytes per row (float32), "
            f"{bd['bytes_per_row_float16']:,} (float16).",
            f"- Query vector: {sm['query_vector_ms']} ms; exact search over the column: "
            f"{sm['column_exact_search_ms']} ms.",
            f"- Rerank at C={min(200, bd['rows'])} from AirRep candidates, end to end: stored "
            f"{e['stored']['total_ms']} ms (retrieval {e['stored']['retrieval_ms']}, query vector "
            f"{e['stored']['query_vector_ms']}, gather + dot {e['stored']['gather_dot_ms']}) against recompute "
            f"{e['recompute']['total_ms']:,} ms: **{e['speedup']}x**.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
