"""Hybrid retrieval on the evaluation harness: classification and planted tracing, vector vs BM25 vs
hybrid (reciprocal rank fusion of the two, as ``airsearch query --mode hybrid``).

* classify: the bundled sample corpus (NI v1, 20 tasks; ``--per-task`` rows each) and its held-out
  queries (``--queries-per-task`` each); top-1 / top-5 task accuracy (AirRep §7).
* trace: entity-swap (DDA §5; AUC and R@k) and PII (HAIF PII-E; top-1) on a tiny target LM built from
  the sample corpus (``--lm-steps``) and fine-tuned on the planted corpus by the harness.

The encoder is the untrained base AirRep (all-MiniLM-L6-v2, ``base``) unless ``--encoder`` names a
trained one; ``hybrid`` fuses that encoder's ranking with BM25's.

    python benchmarks/bench_hybrid.py [--per-task 50] [--queries-per-task 5] [--n-synthetic 400] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench_options import RESULTS, WORK, bench_parser


def per_task(rows: list, n: int) -> list:
    seen: dict[str, int] = defaultdict(int)
    out = []
    for r in rows:
        if seen[r.metadata["task"]] < n:
            seen[r.metadata["task"]] += 1
            out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS, work=WORK / "hybrid")
    ap.add_argument("--per-task", type=int, default=50)
    ap.add_argument("--queries-per-task", type=int, default=5)
    ap.add_argument("--n-synthetic", type=int, default=400)
    ap.add_argument("--n-people", type=int, default=40)
    ap.add_argument("--lm-steps", type=int, default=300)
    ap.add_argument("--encoder", default="", help="a trained AirRep folder (default: the base encoder)")
    ap.add_argument("--lm", type=Path, default=None, help="target LM folder (default: a tiny LM built here)")
    ap.add_argument("--trace-epochs", type=int, default=3, help="fine-tuning epochs on the planted corpus")
    args = ap.parse_args(argv)
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    import torch

    torch.set_num_threads(1)
    from airsearch import (
        EvalClassifyConfig,
        EvalTraceConfig,
        TinyLMConfig,
        build_tiny_lm,
        eval_classify,
        eval_trace,
        load_corpus,
        load_queries,
        sample_corpus_path,
        sample_queries_path,
        write_rows,
    )

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    # hybrid fuses BM25 with the trained encoder when one is given (the config's encoder), else the base
    methods = ("airrep" if args.encoder else "base", "bm25", "hybrid")
    encoder = args.encoder or None
    train = per_task(load_corpus(sample_corpus_path()).examples, args.per_task)
    queries = per_task(load_queries(sample_queries_path()).examples, args.queries_per_task)
    write_rows(work / "train.jsonl", train)
    write_rows(work / "queries.jsonl", queries)
    out: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs",
        "methods": list(methods),
        "encoder": args.encoder or "base (untrained all-MiniLM-L6-v2)",
    }
    t0 = time.perf_counter()
    cls = eval_classify(
        EvalClassifyConfig(
            corpus=[str(work / "train.jsonl")],
            queries=[str(work / "queries.jsonl")],
            methods=methods,
            encoder=encoder,
            out=str(work / "classify"),
        )
    )
    out["classify"] = {
        "rows": len(train),
        "queries": len(queries),
        "table": cls.table,
        **cls.to_dict()["methods"],
    }
    out["classify_seconds"] = round(time.perf_counter() - t0, 1)
    lm = args.lm or work / "lm"
    if not (lm / "config.json").exists():
        build_tiny_lm(load_corpus(sample_corpus_path()).examples, lm, TinyLMConfig(steps=args.lm_steps))
    for bench in ("entity-swap", "pii"):
        t0 = time.perf_counter()
        res = eval_trace(
            EvalTraceConfig(
                benchmark=bench,
                lm=str(lm),
                methods=methods,
                encoder=encoder,
                n_synthetic=args.n_synthetic,
                n_people=args.n_people,
                epochs=args.trace_epochs,
                k=max(5, args.n_synthetic // 100),
                out=str(work / "trace"),
            )
        )
        out[bench] = {"table": res.table, **res.to_dict()["methods"]}
        out[f"{bench}_seconds"] = round(time.perf_counter() - t0, 1)
    write_results(out, args)
    return 0


def write_results(out: dict, args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hybrid.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    lines = [
        "# Hybrid retrieval on the evaluation harness (`benchmarks/bench_hybrid.py`)",
        "",
        f"Machine: {out['machine']}. Encoder: {out['encoder']}. Methods: {', '.join(out['methods'])}",
        "(`hybrid`: reciprocal rank fusion, k0 = 60, of the encoder's and BM25's top-100 rows per query).",
        "",
        f"## Classification ({out['classify']['rows']} sample rows, {args.per_task} per task; "
        f"{out['classify']['queries']} held-out queries; {out['classify_seconds']} s)",
        "",
        out["classify"]["table"],
        "",
        f"## Entity-swap tracing (DDA §5; {args.n_synthetic} synthetic rows, tiny LM; {out['entity-swap_seconds']} s)",
        "",
        out["entity-swap"]["table"],
        "",
        f"## PII tracing (HAIF PII-E; {args.n_people} people, tiny LM; {out['pii_seconds']} s)",
        "",
        out["pii"]["table"],
    ]
    (args.out / "hybrid.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
