"""Indexing throughput on Ray: ``build_index`` on one machine, and with ``--ray`` on a local Ray cluster
(``ray.init(num_cpus=CPUs)``) with 1 and 2 encoder actors, on the same rows of the bundled sample.

Rows/s are those ``airsearch index`` reports (whole command: reading, encoding, writing, ANN/BM25
indexes, the Ray actors' start-up included); each run builds a new table, and the tables are checked
to hold the same ids and vectors (to 1e-5) as the single-machine one.

    python benchmarks/bench_index_ray.py [--rows 600] [--workers 1 2] [--runtime torch] [--out DIR]
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
from bench_options import RESULTS, WORK, bench_parser

from airsearch import IndexConfig, IndexStore, build_index, load_corpus, sample_corpus_path, write_rows

NOTE = (
    "On this 2-core machine Ray adds encoder processes but no CPU, so it cannot be faster than one machine "
    "here: the gap is Ray's overhead (a local cluster's worker processes importing torch and loading one model "
    "per actor, the driver's reading pass over the corpus, scheduling), and two 1-thread actors share the same "
    "2 cores as one 2-thread actor. The Ray path pays off on clusters with more machines or GPUs (one actor "
    "per GPU)."
)


def table_rows(db: Path) -> tuple[list[str], np.ndarray]:
    data = IndexStore(db).open().dataset.to_table(columns=["id", "vector"])
    return data.column("id").to_pylist(), np.stack(data.column("vector").to_numpy(zero_copy_only=False))


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS, work=WORK / "index_ray")
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument(
        "--workers", type=int, nargs="*", default=[1, 2], help="Ray encoder actors per run (none: no Ray run)"
    )
    ap.add_argument("--runtime", default="torch")
    ap.add_argument("--encoder", default=None, help="AirRep folder (default: the packaged untrained AirRep)")
    args = ap.parse_args(argv)
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    import ray

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "rows.jsonl"
    write_rows(corpus, load_corpus(sample_corpus_path()).examples[: args.rows])
    common = {"corpus": [str(corpus)], "runtime": args.runtime, "encoder": args.encoder or "default"}
    runs = []
    t0 = time.perf_counter()
    alone = build_index(IndexConfig(db=str(work / "alone"), **common))
    runs.append(
        {
            "path": "one machine",
            "workers": None,
            "seconds": alone.seconds,
            "rows_per_second": alone.rows_per_second,
        }
    )
    print(runs[-1], flush=True)
    ids, vectors = table_rows(work / "alone")
    cpus = os.cpu_count() or 1
    t_init = time.perf_counter()
    if args.workers:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    init_seconds = round(time.perf_counter() - t_init, 1)
    for w in args.workers:
        db = work / f"ray{w}"
        s = build_index(IndexConfig(db=str(db), ray="auto", workers=w, **common))
        got_ids, got = table_rows(db)
        assert got_ids == ids and np.allclose(got, vectors, atol=1e-5), "the Ray table differs"
        runs.append({"path": "Ray", "workers": w, "seconds": s.seconds, "rows_per_second": s.rows_per_second})
        print(runs[-1], flush=True)
    if args.workers:
        ray.shutdown()
    result = {
        "machine": f"{platform.machine()}, {cpus} cores (shared with other jobs)",
        "rows": args.rows,
        "corpus": f"the first {args.rows} rows of the bundled sample",
        "encoder": f"{args.encoder or 'default AirRep (all-MiniLM-L6-v2)'}, runtime {args.runtime}",
        "ray_init_seconds": init_seconds,
        "runs": runs,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index_ray.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Indexing on Ray (`benchmarks/bench_index_ray.py`)",
        "",
        f"Machine: {result['machine']}; a local Ray cluster with {cpus} CPUs (`ray.init`, {init_seconds} s, "
        f"not counted). Corpus: {result['corpus']}. Encoder: {result['encoder']}. Rows/s as `airsearch index` "
        "reports them (the whole command: reading, encoding, writing, indexes; the actors' start-up included). "
        "Every Ray table holds the single-machine table's ids in the same order and its vectors (to 1e-5).",
        "",
        "| path | encoder actors | seconds | rows/s |",
        "|---|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r['path']} | {r['workers'] or '-'} | {r['seconds']} | {r['rows_per_second']} |")
    lines += ["", NOTE]
    (args.out / "index_ray.md").write_text("\n".join(lines) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
